//! [`NameJudge`]: a local model judges the capitalised words the rules left unexplained.
//!
//! Rules find names from lists, honorifics and cue phrases; a name from nowhere ("Okonkwo is
//! late", "during 1971, Cloudspyre invested") slips past them. Each such run of capitalised words
//! ([`crate::detect::language::unexplained_capitalised`]) is put to a local model as a lettered
//! question (a person, an organisation, a place, something else) about the text around it, and
//! the probabilities of its one answer token decide, never its text: a person or an organisation
//! at or above the threshold is a finding with that probability as its confidence. Each distinct
//! value is asked about once per request, and every occurrence of it is then found.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tandem_core::logprobs::{letter_shares, one_token_question};
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatModel, ModelError};

use crate::detect::language::unexplained_capitalised;
use crate::detect::Finding;
use crate::kind::Kind;
use crate::normalize::canonical;
use crate::PrivacyError;

/// The `names` table of a privacy pipeline: which local model judges, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameJudgeConfig {
    /// A local model (or a pipeline over local models only): what it reads never leaves.
    pub model: String,
    /// A person or an organisation at or above this probability is a finding.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// The most distinct values asked about per request; the rest are left to the rules, and
    /// their number is reported.
    #[serde(default = "default_max_questions")]
    pub max_questions: usize,
}

fn default_threshold() -> f32 {
    0.5
}

fn default_max_questions() -> usize {
    32
}

/// Bytes of text on either side of a value that the model reads with it.
const CONTEXT_BYTES: usize = 300;
/// Questions in flight at once; a local engine batches them.
const CONCURRENCY: usize = 4;

const SYSTEM: &str = "You label words in a text. Answer with one letter.";

pub struct NameJudge {
    model: Arc<dyn ChatModel>,
    threshold: f32,
    max_questions: usize,
}

/// What one request cost the judge, for the stage's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Judged {
    /// Distinct values asked about.
    pub asked: usize,
    /// Of those, the ones found to be a person or an organisation.
    pub found: usize,
    /// Distinct values left unasked, over `max_questions`.
    pub unasked: usize,
}

impl NameJudgeConfig {
    /// Refuses a threshold outside [0, 1] and `max_questions = 0`; the message names the key
    /// under the `names` table ("names.threshold ...").
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(format!(
                "names.threshold must be between 0 and 1, not {}",
                self.threshold
            ));
        }
        if self.max_questions == 0 {
            return Err(
                "names.max_questions must be at least 1; leave `names` out to judge none".into(),
            );
        }
        Ok(())
    }
}

impl NameJudge {
    pub fn new(config: &NameJudgeConfig, model: Arc<dyn ChatModel>) -> Result<Self, PrivacyError> {
        config.check().map_err(PrivacyError::Config)?;
        Ok(NameJudge {
            model,
            threshold: config.threshold,
            max_questions: config.max_questions,
        })
    }

    /// Adds to `found` (the rules' findings of each text, disjoint and in order as
    /// [`crate::Detector::detect`] gives them) the people and organisations the model finds
    /// among the capitalised words the rules left. A failed call fails the whole: a stage
    /// that cannot vouch for a request sends nothing.
    pub async fn add_findings(
        &self,
        texts: &[&str],
        found: &mut [Vec<Finding>],
    ) -> Result<Judged, ModelError> {
        // Each distinct value, with where it occurs; the first occurrence is the one asked about.
        let mut values: BTreeMap<String, Vec<(usize, Range<usize>)>> = BTreeMap::new();
        let mut order = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            for span in unexplained_capitalised(text, &found[i]) {
                let value = canonical(&text[span.clone()]);
                let places = values.entry(value.clone()).or_default();
                if places.is_empty() {
                    order.push(value);
                }
                places.push((i, span));
            }
        }
        let unasked = order.len().saturating_sub(self.max_questions);
        order.truncate(self.max_questions);
        let firsts: Vec<(usize, Range<usize>)> =
            order.iter().map(|value| values[value][0].clone()).collect();
        let verdicts: Vec<Option<(Kind, f32)>> = futures::stream::iter(firsts)
            .map(|(i, span)| self.judge(texts[i], span))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut judged = Judged {
            asked: order.len(),
            unasked,
            ..Judged::default()
        };
        for (value, verdict) in order.iter().zip(verdicts) {
            let Some((kind, confidence)) = verdict else {
                continue;
            };
            judged.found += 1;
            for (i, span) in &values[value] {
                found[*i].push(Finding::new(kind, span.clone(), confidence));
            }
        }
        Ok(judged)
    }

    /// The model's verdict on the value at `span` of `text`: a person or an organisation with its
    /// probability, or `None` (a place, something else, unsure, or no letter among its tokens).
    async fn judge(
        &self,
        text: &str,
        span: Range<usize>,
    ) -> Result<Option<(Kind, f32)>, ModelError> {
        let question = ChatCompletionRequest {
            model: self.model.name().to_string(),
            ..one_token_question(vec![
                Message::new(Role::System, SYSTEM),
                Message::new(Role::User, question(text, span)),
            ])
        };
        let reply = self.model.complete(question).await?;
        let Some(shares) = reply
            .logprobs
            .as_deref()
            .and_then(<[_]>::first)
            .and_then(|token| letter_shares(token, 4))
        else {
            return Ok(None);
        };
        let (kind, p) = if shares[0] >= shares[1] {
            (Kind::Person, shares[0])
        } else {
            (Kind::Organization, shares[1])
        };
        Ok((p as f32 >= self.threshold).then_some((kind, p as f32)))
    }
}

/// The lettered question about the value at `span`, with up to [`CONTEXT_BYTES`] of text on
/// either side of it.
fn question(text: &str, span: Range<usize>) -> String {
    let mut start = span.start.saturating_sub(CONTEXT_BYTES);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (span.end + CONTEXT_BYTES).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    format!(
        "Text: \"\"\"{}\"\"\"\n\nIn this text, what is \"{}\"?\nA. the name of a person\n\
         B. the name of an organisation or company\nC. a place\nD. something else\n\
         Answer with the letter only.",
        &text[start..end],
        &text[span]
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use tandem_core::openai::{TokenLogprob, TopLogprob};
    use tandem_core::report::{Report, Stage};
    use tandem_core::{ChatEvent, ChatStream, Completion};

    use super::*;

    /// Answers each question with the letter probabilities `answer` gives the value asked about;
    /// fails on values it gives none. The judge's mechanics, which no model decides.
    struct Lettered {
        answer: fn(&str) -> Option<[f32; 4]>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl ChatModel for Lettered {
        fn name(&self) -> &str {
            "lettered"
        }

        async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let asked = request.messages[1].content.text().unwrap();
            let value = asked
                .split("what is \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let Some(letters) = (self.answer)(value) else {
                return Err(ModelError::Overloaded("lettered".into()));
            };
            let top: Vec<TopLogprob> = ["A", "B", "C", "D"]
                .iter()
                .zip(letters)
                .map(|(l, p)| TopLogprob {
                    token: (*l).into(),
                    logprob: p.ln(),
                    bytes: None,
                })
                .collect();
            let token = TokenLogprob {
                token: top[0].token.clone(),
                logprob: top[0].logprob,
                bytes: None,
                top_logprobs: top,
            };
            let stage = Stage::unpriced_local("lettered", 1, 1, 1.0);
            let events = vec![
                Ok(ChatEvent::Delta {
                    text: "A".into(),
                    logprobs: vec![token],
                }),
                Ok(ChatEvent::Done(Completion {
                    finish_reason: tandem_core::openai::FinishReason::Length,
                    usage: Default::default(),
                    report: Report::single(stage),
                })),
            ];
            Ok(futures::stream::iter(events).boxed())
        }
    }

    fn judge(
        answer: fn(&str) -> Option<[f32; 4]>,
        max_questions: usize,
    ) -> (NameJudge, Arc<Lettered>) {
        let model = Arc::new(Lettered {
            answer,
            calls: AtomicUsize::new(0),
        });
        let config = NameJudgeConfig {
            model: "lettered".into(),
            threshold: 0.5,
            max_questions,
        };
        (NameJudge::new(&config, model.clone()).unwrap(), model)
    }

    fn by_value(value: &str) -> Option<[f32; 4]> {
        match value {
            "Okonkwo" => Some([0.8, 0.1, 0.05, 0.05]),
            "Veltrix" => Some([0.2, 0.7, 0.05, 0.05]),
            "Tromsø" => Some([0.3, 0.1, 0.55, 0.05]),
            _ => None,
        }
    }

    #[tokio::test]
    async fn each_value_is_asked_once_and_found_wherever_it_occurs() {
        let (judge, model) = judge(by_value, 8);
        let texts = [
            "Ask Okonkwo about Veltrix Labs on Monday.",
            "Okonkwo flew to Tromsø. Mail a@b.io",
        ];
        let mut found = vec![Vec::new(), Vec::new()];
        let judged = judge.add_findings(&texts, &mut found).await.unwrap();
        assert_eq!(
            judged,
            Judged {
                asked: 3,
                found: 2,
                unasked: 0
            }
        );
        assert_eq!(model.calls.load(Ordering::SeqCst), 3);
        let values: Vec<Vec<(Kind, &str, f32)>> = found
            .iter()
            .zip(texts)
            .map(|(f, t)| {
                f.iter()
                    .map(|f| (f.kind, &t[f.span.clone()], (f.confidence * 100.0).round()))
                    .collect()
            })
            .collect();
        assert_eq!(
            values,
            [
                vec![
                    (Kind::Person, "Okonkwo", 80.0),
                    (Kind::Organization, "Veltrix", 70.0)
                ],
                vec![(Kind::Person, "Okonkwo", 80.0)],
            ]
        );
    }

    #[tokio::test]
    async fn values_over_the_limit_are_counted_unasked_and_a_failed_call_fails_all() {
        let (judge, model) = judge(by_value, 1);
        let mut found = vec![Vec::new()];
        let text = "Okonkwo flew to Tromsø.";
        let judged = judge.add_findings(&[text], &mut found).await.unwrap();
        assert_eq!((judged.asked, judged.unasked), (1, 1));
        assert_eq!(model.calls.load(Ordering::SeqCst), 1);

        let (judge, _) = judge_failing();
        let mut found = vec![Vec::new()];
        assert!(judge
            .add_findings(&["Ask Zyborin now."], &mut found)
            .await
            .is_err());
    }

    fn judge_failing() -> (NameJudge, Arc<Lettered>) {
        judge(|_| None, 8)
    }

    #[test]
    fn a_threshold_outside_zero_to_one_is_refused() {
        let config = NameJudgeConfig {
            model: "m".into(),
            threshold: 1.5,
            max_questions: 1,
        };
        let model: Arc<dyn ChatModel> = judge(by_value, 1).1;
        assert!(NameJudge::new(&config, model).is_err());
    }

    #[test]
    fn the_question_quotes_the_value_in_a_window_on_character_boundaries() {
        let text = format!("{}Okonkwo is late{}", "é".repeat(400), "ü".repeat(400));
        let start = 800;
        let q = question(&text, start..start + 7);
        assert!(q.contains("what is \"Okonkwo\"?"));
        let quoted = q.split("\"\"\"").nth(1).unwrap();
        assert!(quoted.starts_with('é') && quoted.ends_with('ü'));
        assert!(quoted.len() <= 2 * CONTEXT_BYTES + 7 + 2);
    }
}
