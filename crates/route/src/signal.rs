//! Confidence signals computed from a small model's answer, each a score in [0, 1] where higher
//! means the answer is more likely right. A cascade escalates when the score is under its
//! threshold.
//!
//! - `mean_logprob`: the geometric mean of the answer's token probabilities, `exp(mean logprob)`.
//! - `min_logprob`: the probability of the answer's least likely token, `exp(min logprob)`.
//! - `self_check`: the small model is shown its answer and asked whether it is correct; the score
//!   is its probability of "yes" against "no" for the first token of its reply.
//! - `agreement`: the small model answers again `samples` times with sampling; the score is the
//!   share of those answers that agree with the first one (same final answer: the last `\boxed{}`,
//!   else the last number, else the whole text with spacing and case normalised; numbers compare
//!   as numbers, so `\boxed{\$12.50}` agrees with `12.5`).
//! - `shown_examples`: for code, the share of the examples the request itself shows (doctest lines,
//!   `f(x) ➞ y` lines, in any message's text) that the answer's code passes, run in a sandbox by
//!   an [`ExampleCheck`] (the `tandem` binary's runs them in the evaluation harness's sandbox).
//!   A request that shows no example gets the cascade's `no_examples_score`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tandem_core::logprobs::{one_token_question, yes_share};
use tandem_core::number::normalize_number;
use tandem_core::openai::{ChatCompletionRequest, Message, Role, TokenLogprob};
use tandem_core::{ChatModel, ChatOutput, ModelError};

/// Which signal a cascade uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    MeanLogprob,
    MinLogprob,
    SelfCheck,
    Agreement,
    ShownExamples,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MeanLogprob => "mean_logprob",
            Signal::MinLogprob => "min_logprob",
            Signal::SelfCheck => "self_check",
            Signal::Agreement => "agreement",
            Signal::ShownExamples => "shown_examples",
        }
    }
}

/// How an answer fared on the examples its request shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExamplesPassed {
    pub passed: usize,
    /// At least 1.
    pub total: usize,
}

impl ExamplesPassed {
    /// The share passed, in [0, 1].
    pub fn share(self) -> f64 {
        self.passed as f64 / self.total.max(1) as f64
    }
}

/// Runs an answer's code on the examples its request shows, for the `shown_examples` signal.
/// Model-written code must never run in Tandem's process: an implementation runs it in a sandbox
/// (the `tandem` binary's uses the evaluation harness's), where the answer cannot forge the
/// results.
#[async_trait]
pub trait ExampleCheck: Send + Sync {
    /// `Ok(None)` when the request shows no example an answer could be run on (not a code task).
    /// An `Err` is a failure of the sandbox, never a wrong answer.
    async fn check(
        &self,
        request: &ChatCompletionRequest,
        answer: &str,
    ) -> Result<Option<ExamplesPassed>, ModelError>;
}

/// The texts a request's examples are looked for in: the system (and developer) messages, then
/// the last user message; a message that is not all text is left out.
pub fn example_texts(request: &ChatCompletionRequest) -> Vec<String> {
    let system = request
        .messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer));
    let last_user = request.messages.iter().rev().find(|m| m.role == Role::User);
    system
        .chain(last_user)
        .filter_map(|m| m.content.text())
        .collect()
}

/// `exp(mean logprob)` of the answer's tokens; 0 for an empty answer (nothing to trust).
pub fn mean_token_probability(tokens: &[TokenLogprob]) -> f64 {
    if tokens.is_empty() {
        return 0.0;
    }
    let sum: f64 = tokens.iter().map(|t| f64::from(t.logprob)).sum();
    (sum / tokens.len() as f64).exp()
}

/// `exp(min logprob)` of the answer's tokens; 0 for an empty answer.
pub fn min_token_probability(tokens: &[TokenLogprob]) -> f64 {
    tokens
        .iter()
        .map(|t| f64::from(t.logprob))
        .reduce(f64::min)
        .map_or(0.0, f64::exp)
}

/// The question of the self-check, asked after the answer as a new user turn.
pub const SELF_CHECK_QUESTION: &str =
    "Is the answer above correct and complete? Reply with one word: yes or no.";

/// The request that asks the model to judge `answer` to `request`: one token, greedy, with enough
/// alternatives to find both "yes" and "no".
pub fn self_check_request(request: &ChatCompletionRequest, answer: &str) -> ChatCompletionRequest {
    let mut messages = request.messages.clone();
    messages.push(Message::new(Role::Assistant, answer));
    messages.push(Message::new(Role::User, SELF_CHECK_QUESTION));
    ChatCompletionRequest {
        model: request.model.clone(),
        ..one_token_question(messages)
    }
}

/// The `agreement` score of `answer` to `request`: `samples` more answers from `model`, each
/// `request` sampled at `temperature` and seeded by the request's seed and its number, asked for
/// all at once so that a local engine decodes them in one batch; with those answers, whose usage
/// and reports the caller pays for.
pub async fn sampled_agreement(
    model: &dyn ChatModel,
    request: &ChatCompletionRequest,
    answer: &str,
    samples: u32,
    temperature: f32,
) -> Result<(f64, Vec<ChatOutput>), ModelError> {
    let sampled = futures::future::try_join_all((0..samples).map(|k| {
        model.complete(ChatCompletionRequest {
            temperature: Some(temperature),
            seed: Some(request.seed.unwrap_or(0).wrapping_add(u64::from(k) + 1)),
            logprobs: None,
            top_logprobs: None,
            ..request.clone()
        })
    }))
    .await?;
    let texts: Vec<String> = sampled.iter().map(|s| s.text.clone()).collect();
    Ok((agreement(answer, &texts), sampled))
}

/// [`yes_share`] of the first token of the reply; 0 when there is no token or neither word is
/// among its alternatives (the model did not answer: nothing to trust).
pub fn yes_probability(first_token: Option<&TokenLogprob>) -> f64 {
    first_token.and_then(yes_share).unwrap_or(0.0)
}

/// What two answers must share to agree: the last `\boxed{...}` (its number where it holds only
/// one, so that `\boxed{\$12.50}` agrees with `\boxed{12.5}`), else the last number, else the text
/// with whitespace collapsed and lower-cased. Numbers are compared in one form: no thousands
/// separators, no trailing fractional zeros.
pub fn answer_key(text: &str) -> String {
    if let Some(start) = text.rfind("\\boxed{") {
        let inner = &text[start + "\\boxed{".len()..];
        let mut depth = 1;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        let boxed = &inner[..i];
                        return lone_number(boxed).unwrap_or_else(|| normalise(boxed));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(number) = last_number(text) {
        return number;
    }
    normalise(text)
}

fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The number that `boxed` holds with nothing else but a dollar or percent sign, spacing, and
/// LaTeX's escaped signs and thin spaces (`\$`, `\%`, `\!`, `\,`): "\$1,200.50" is "1200.5".
fn lone_number(boxed: &str) -> Option<String> {
    let mut bare = boxed.to_string();
    for marker in ["\\$", "\\%", "\\!", "\\,", "$", "%"] {
        bare = bare.replace(marker, "");
    }
    normalize_number(&bare)
}

/// The last number in `text`, in [`normalize_number`]'s form ("1,200." is "1200", "2.50" is
/// "2.5"); one it cannot read ("1.2.3") as written, without thousands separators.
fn last_number(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    while end > 0 && !bytes[end - 1].is_ascii_digit() {
        end -= 1;
    }
    if end == 0 {
        return None;
    }
    let mut start = end;
    while start > 0 {
        let c = bytes[start - 1];
        let separator_between_digits =
            matches!(c, b',' | b'.') && start >= 2 && bytes[start - 2].is_ascii_digit();
        if c.is_ascii_digit() || separator_between_digits {
            start -= 1;
        } else {
            break;
        }
    }
    if start > 0 && bytes[start - 1] == b'-' {
        start -= 1;
    }
    let number = &text[start..end];
    Some(normalize_number(number).unwrap_or_else(|| number.replace(',', "")))
}

/// The share of `samples` whose [`answer_key`] equals `answer`'s; 0 with no samples.
pub fn agreement(answer: &str, samples: &[String]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let key = answer_key(answer);
    let agreeing = samples.iter().filter(|s| answer_key(s) == key).count();
    agreeing as f64 / samples.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::openai::TopLogprob;

    fn token(text: &str, logprob: f32, top: &[(&str, f32)]) -> TokenLogprob {
        TokenLogprob {
            token: text.into(),
            logprob,
            bytes: None,
            top_logprobs: top
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
    fn token_probability_scores() {
        let tokens = [token("a", -0.1, &[]), token("b", -2.0, &[])];
        assert!((mean_token_probability(&tokens) - (-1.05f64).exp()).abs() < 1e-6);
        assert!((min_token_probability(&tokens) - (-2.0f64).exp()).abs() < 1e-6);
        assert_eq!(mean_token_probability(&[]), 0.0);
        assert_eq!(min_token_probability(&[]), 0.0);
    }

    #[test]
    fn yes_probability_adds_every_spelling_and_ignores_other_words() {
        let first = token(
            "Yes",
            (0.5f32).ln(),
            &[
                ("Yes", (0.5f32).ln()),
                (" yes", (0.1f32).ln()),
                ("No", (0.2f32).ln()),
                ("Maybe", (0.2f32).ln()),
            ],
        );
        assert!((yes_probability(Some(&first)) - 0.6 / 0.8).abs() < 1e-6);
        assert_eq!(
            yes_probability(Some(&token("Hmm", -0.1, &[("Hmm", -0.1)]))),
            0.0
        );
        assert_eq!(yes_probability(None), 0.0);
    }

    #[test]
    fn answers_agree_on_their_final_answer() {
        assert_eq!(
            answer_key("so x = 3 and \\boxed{\\frac{1}{2}}."),
            "\\frac{1}{2}"
        );
        assert_eq!(answer_key("It costs 1,200 dollars."), "1200");
        assert_eq!(answer_key("Total: -4.5"), "-4.5");
        assert_eq!(answer_key("Total: 4.50 dollars"), "4.5");
        assert_eq!(answer_key("so \\boxed{\\$1,200.00}"), "1200");
        assert_eq!(answer_key("so \\boxed{ 37.50\\% }"), "37.5");
        assert_eq!(answer_key("so \\boxed{x = 3}"), "x = 3");
        assert_eq!(answer_key("so \\boxed{2, 3}"), "2, 3");
        assert_eq!(
            answer_key("  Paris\n is the   CAPITAL "),
            "paris is the capital"
        );
        let samples = [
            "The answer is 12.".to_string(),
            "12".to_string(),
            "I think 13".to_string(),
            "\\boxed{12}".to_string(),
        ];
        assert!((agreement("We get 12.", &samples) - 0.75).abs() < 1e-12);
        assert_eq!(agreement("12", &[]), 0.0);
    }

    #[test]
    fn examples_are_looked_for_in_the_system_messages_and_the_last_question() {
        let request = ChatCompletionRequest {
            messages: vec![
                Message::new(Role::System, "rules"),
                Message::new(Role::User, "an earlier question"),
                Message::new(Role::Assistant, "an earlier answer"),
                Message::new(Role::Developer, "more rules"),
                Message::new(Role::User, "the question"),
            ],
            ..ChatCompletionRequest::default()
        };
        assert_eq!(
            example_texts(&request),
            ["rules", "more rules", "the question"]
        );
        let share = ExamplesPassed {
            passed: 2,
            total: 3,
        };
        assert!((share.share() - 2.0 / 3.0).abs() < 1e-12);
    }
}
