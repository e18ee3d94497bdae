//! Reading a model's one-token answers from their log probabilities (`logprobs` +
//! `top_logprobs`), never from their text: the yes/no questions of cascades and guards.

use crate::openai::TokenLogprob;

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
