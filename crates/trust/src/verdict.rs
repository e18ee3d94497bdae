//! Scores read from the guard model's one-token answers: the probabilities of its first token and
//! of that token's alternatives (`logprobs` + `top_logprobs`), never its text.

use serde::Serialize;
use tandem_core::logprobs::alternatives;
use tandem_core::openai::TokenLogprob;

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

/// A guard's judgement of one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The probability that the text is unsafe, in [0, 1].
    pub score: f64,
    /// Whether the score reached the guard's threshold.
    pub blocked: bool,
    /// The most likely category (asked only when blocked), with its probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_probability: Option<f64>,
    /// The guard model's own probability, when a trained classifier was combined with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_score: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::logprobs::yes_share;
    use tandem_core::openai::TopLogprob;

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
