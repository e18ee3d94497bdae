//! [`Verdict`]: a guard's judgement of one text, scored from its model's token probabilities
//! (`tandem_core::logprobs`), never from its text.

use serde::Serialize;

/// A guard's judgement of one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The probability that the text is unsafe, in [0, 1].
    pub score: f64,
    /// The score's threshold: the guard's, or a trained classifier's.
    pub threshold: f64,
    /// Whether the text was blocked: the score passed the threshold, or the jailbreak classifier
    /// fired.
    pub blocked: bool,
    /// The most likely category (asked only when blocked), with its probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_probability: Option<f64>,
    /// The jailbreak classifier's probability, when the trained model has one. Reaching its own
    /// threshold blocks the text, in the category `jailbreak` unless the score blocked it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jailbreak: Option<f64>,
}

/// The category of a text blocked by the jailbreak classifier alone.
pub const JAILBREAK_CATEGORY: &str = "jailbreak";
