//! Reading a model's one-token answers from their log probabilities (`logprobs` +
//! `top_logprobs`), never from their text: the yes/no questions of cascades and guards, and the
//! lettered choices of guards and the privacy stages' name judge.

use crate::openai::{ChatCompletionRequest, Message, TokenLogprob};
use crate::validate::MAX_TOP_LOGPROBS;

/// A question the model answers in one token: greedy, with as many alternatives as a request may
/// ask for, enough to find both "yes" and "no" or every letter of a choice. The model is left for
/// the caller to name.
pub fn one_token_question(messages: Vec<Message>) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages,
        temperature: Some(0.0),
        max_tokens: Some(1),
        logprobs: Some(true),
        top_logprobs: Some(MAX_TOP_LOGPROBS),
        ..ChatCompletionRequest::default()
    }
}

/// Every (token, probability) the model reported for one position: the alternatives, or the
/// chosen token alone when no alternatives came back.
pub fn alternatives(token: &TokenLogprob) -> Vec<(&str, f64)> {
    if token.top_logprobs.is_empty() {
        return vec![(token.token.as_str(), f64::from(token.logprob).exp())];
    }
    token
        .top_logprobs
        .iter()
        .map(|alt| (alt.token.as_str(), f64::from(alt.logprob).exp()))
        .collect()
}

/// P(yes) / (P(yes) + P(no)), adding every spelling of each word (" Yes", "yes", "YES"); `None`
/// when neither word is among the alternatives (the model did not answer the question).
pub fn yes_share(token: &TokenLogprob) -> Option<f64> {
    let (mut yes, mut no) = (0.0, 0.0);
    for (text, p) in alternatives(token) {
        match text.trim().to_lowercase().as_str() {
            "yes" => yes += p,
            "no" => no += p,
            _ => {}
        }
    }
    (yes + no > 0.0).then(|| yes / (yes + no))
}

/// The probability of each of the first `count` capital letters, normalised over those letters;
/// `None` when no letter is among the alternatives.
pub fn letter_shares(token: &TokenLogprob, count: usize) -> Option<Vec<f64>> {
    let mut shares = vec![0.0; count];
    for (text, p) in alternatives(token) {
        let text = text.trim();
        let mut chars = text.chars();
        if let (Some(c @ 'A'..='Z'), None) = (chars.next(), chars.next()) {
            let index = (c as u8 - b'A') as usize;
            if index < count {
                shares[index] += p;
            }
        }
    }
    let total: f64 = shares.iter().sum();
    (total > 0.0).then(|| shares.iter().map(|p| p / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::TopLogprob;

    fn token(alternatives: &[(&str, f32)]) -> TokenLogprob {
        TokenLogprob {
            token: alternatives[0].0.into(),
            logprob: alternatives[0].1,
            bytes: None,
            top_logprobs: alternatives
                .iter()
                .map(|(t, l)| TopLogprob {
                    token: (*t).into(),
                    logprob: *l,
                    bytes: None,
                })
                .collect(),
        }
    }

    #[test]
    fn yes_share_adds_spellings_and_ignores_other_words() {
        let t = token(&[
            ("No", 0.5f32.ln()),
            (" yes", 0.2f32.ln()),
            ("Yes", 0.1f32.ln()),
            ("Maybe", 0.2f32.ln()),
        ]);
        assert!((yes_share(&t).unwrap() - 0.3 / 0.8).abs() < 1e-6);
        assert_eq!(yes_share(&token(&[("Hmm", -0.1)])), None);
    }

    #[test]
    fn letter_shares_normalise_over_the_policys_letters() {
        let t = token(&[
            ("B", 0.6f32.ln()),
            (" A", 0.2f32.ln()),
            ("Z", 0.1f32.ln()),
            ("AB", 0.1f32.ln()),
        ]);
        let shares = letter_shares(&t, 3).unwrap();
        assert!((shares[0] - 0.25).abs() < 1e-6 && (shares[1] - 0.75).abs() < 1e-6);
        assert_eq!(shares[2], 0.0);
        assert_eq!(letter_shares(&token(&[("ok", -0.1)]), 3), None);
    }
}
