//! The privacy pipeline stages, each a [`ChatModel`] wrapping other `ChatModel`s:
//! - [`Redact`]: pseudonymise every text field, send, restore the answer (streamed or not).
//! - [`KeepLocal`]: answer with a local model when a request's sensitivity passes a threshold.
//! - [`Rewrite`]: the local model asks the remote one without the private context, then answers
//!   with both (PAPILLON).
//!
//! Both write an [`EgressRecord`] before anything leaves the machine (when an audit store is
//! configured): a stage that cannot write its audit record sends nothing. Each adds an entry to the
//! response's report with the kinds of data found and their counts, never a value.

mod keep_local;
mod redact;
mod rewrite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tandem_core::openai::{ChatCompletionRequest, Content, Message, Role};
use tandem_core::{ChatModel, ModelError};
use tandem_store::{EgressRecord, Store};

pub use keep_local::KeepLocal;
pub use redact::Redact;
pub use rewrite::Rewrite;

use crate::detect::Finding;
use crate::fields;
use crate::kind::Kind;
use crate::names::{Judged, NameJudge};
use crate::vault::{Placeholders, Vault};
use crate::Detector;

/// The most bytes of text a privacy stage inspects in one request, unless configured otherwise.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 1 << 20;

/// What every privacy stage shares: its pipeline name, the detector (and the local model that
/// judges the names the rules leave, when configured), the audit and the size limit.
#[derive(Clone)]
pub struct Guard {
    pub pipeline: String,
    pub detector: Arc<Detector>,
    pub names: Option<Arc<NameJudge>>,
    /// Where egress records go; `None` records nothing.
    pub audit: Option<Arc<dyn Store>>,
    /// Requests with more text than this are refused rather than inspected.
    pub max_text_bytes: usize,
    /// Tags or realistic stand-ins.
    pub placeholders: Placeholders,
}

impl Guard {
    pub fn new(pipeline: impl Into<String>, detector: Detector) -> Guard {
        Guard {
            pipeline: pipeline.into(),
            detector: Arc::new(detector),
            names: None,
            audit: None,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            placeholders: Placeholders::default(),
        }
    }

    pub fn with_name_judge(mut self, judge: NameJudge) -> Guard {
        self.names = Some(Arc::new(judge));
        self
    }

    pub fn with_audit(mut self, store: Arc<dyn Store>) -> Guard {
        self.audit = Some(store);
        self
    }

    /// Refuses requests a privacy stage cannot vouch for: too much text to inspect, or log
    /// probabilities, whose tokens would be those of the pseudonymised text.
    fn check(&self, request: &ChatCompletionRequest) -> Result<Vec<fields::TextField>, ModelError> {
        if request.logprobs == Some(true) || request.top_logprobs.is_some() {
            return Err(ModelError::invalid(
                "logprobs",
                format!(
                    "pipeline `{}` protects private data, and log probabilities through it would be those of the pseudonymised text; leave `logprobs` out",
                    self.pipeline
                ),
            ));
        }
        let texts = fields::texts(request)?;
        let bytes: usize = texts.iter().map(|t| t.text.len()).sum();
        if bytes > self.max_text_bytes {
            return Err(ModelError::invalid(
                "messages",
                format!(
                    "the request holds {bytes} bytes of text, more than pipeline `{}` inspects for private data ({} bytes); shorten it",
                    self.pipeline, self.max_text_bytes
                ),
            ));
        }
        Ok(texts)
    }

    /// The findings of each text of one conversation: the rules', the name judge's, each value
    /// found everywhere it occurs.
    pub async fn findings(
        &self,
        texts: &[&str],
    ) -> Result<(Vec<Vec<Finding>>, Judged), ModelError> {
        let mut found: Vec<Vec<Finding>> = texts.iter().map(|t| self.detector.detect(t)).collect();
        let mut judged = Judged::default();
        if let Some(names) = &self.names {
            // The judge looks only where the rules found nothing; what it adds passes the kinds
            // and the allow-list, its threshold standing in for `min_confidence`.
            let by_rules: Vec<usize> = found.iter().map(Vec::len).collect();
            judged = names.add_findings(texts, &mut found).await?;
            for ((text, found), by_rules) in texts.iter().zip(&mut found).zip(by_rules) {
                let added = found.split_off(by_rules);
                found.extend(added.into_iter().filter(|f| self.detector.wants(text, f)));
            }
        }
        Ok((self.detector.spread(texts, found), judged))
    }

    /// The request with every finding replaced by a placeholder (a tag or a stand-in, as
    /// `placeholders` says).
    pub async fn pseudonymise(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<Pseudonymised, ModelError> {
        let texts = self.check(request)?;
        let texts: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
        let (findings, judged) = self.findings(&texts).await?;
        let mut vault = Vault::for_texts(self.placeholders, texts.iter().copied());
        let mut index = 0;
        let redacted = fields::map_texts(request, |_, text| {
            // `map_texts` visits the fields in the order `texts` listed them.
            let found = &findings[index];
            index += 1;
            (!found.is_empty()).then(|| vault.pseudonymise(text, found))
        })?;
        let redacted = with_placeholder_note(redacted, &vault);
        Ok(Pseudonymised {
            request: redacted,
            vault,
            judged,
        })
    }

    /// The highest confidence of any finding in the request, 0 when there is none, with the
    /// kinds found and their counts.
    async fn sensitivity(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<(f32, BTreeMap<Kind, u32>, Judged), ModelError> {
        let mut highest = 0.0f32;
        let mut kinds = BTreeMap::new();
        let texts = self.check(request)?;
        let texts: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
        let (findings, judged) = self.findings(&texts).await?;
        for finding in findings.into_iter().flatten() {
            highest = highest.max(finding.confidence);
            *kinds.entry(finding.kind).or_default() += 1;
        }
        Ok((highest, kinds, judged))
    }

    /// Records what a stage found: /metrics counts the values by kind (replaced or found) and the
    /// name judge's questions and findings, and the stage's report details get the judge's entry,
    /// when a judge is configured.
    fn record(
        &self,
        strategy: &'static str,
        kinds: &BTreeMap<Kind, u32>,
        judged: Judged,
        details: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        for (kind, n) in kinds {
            metrics::counter!(
                "tandem_privacy_values_total",
                "pipeline" => self.pipeline.clone(),
                "strategy" => strategy,
                "kind" => kind.as_str()
            )
            .increment(u64::from(*n));
        }
        if self.names.is_some() {
            metrics::counter!("tandem_privacy_name_questions_total", "pipeline" => self.pipeline.clone())
                .increment(judged.asked as u64);
            metrics::counter!("tandem_privacy_names_found_total", "pipeline" => self.pipeline.clone())
                .increment(judged.found as u64);
            details.insert(
                "name_judge".into(),
                serde_json::to_value(judged).expect("counts serialise"),
            );
        }
    }

    /// Writes the egress record of `request` about to be sent to `model`; an error means the
    /// request must not be sent.
    async fn audit(
        &self,
        strategy: &str,
        model: &dyn ChatModel,
        request: &ChatCompletionRequest,
        redacted: &BTreeMap<Kind, u32>,
    ) -> Result<(), ModelError> {
        let Some(store) = self.audit.clone() else {
            return Ok(());
        };
        let body = serde_json::to_vec(request)
            .map_err(|e| ModelError::Internal(format!("cannot serialise a request: {e}")))?;
        let record = EgressRecord {
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            pipeline: self.pipeline.clone(),
            strategy: strategy.to_string(),
            model: model.name().to_string(),
            sha256: hex(&Sha256::digest(&body)),
            bytes: body.len() as u64,
            redacted: redacted
                .iter()
                .map(|(k, n)| (k.as_str().to_string(), *n))
                .collect(),
        };
        tokio::task::spawn_blocking(move || store.record_egress(&record))
            .await
            .map_err(|e| ModelError::Internal(format!("the egress audit failed: {e}")))?
            .map_err(|e| {
                ModelError::Internal(format!(
                    "cannot write the egress audit, so nothing was sent: {e}"
                ))
            })
    }
}

/// A request with its private values replaced, the vault that restores them, and what the name
/// judge did.
pub struct Pseudonymised {
    pub request: ChatCompletionRequest,
    pub vault: Vault,
    pub judged: Judged,
}

/// Tells the model what the tags are: without it, a small model refuses more often, leaves the
/// tags out of summaries and makes up tags of its own (`tandem eval privacy --quality`).
fn placeholder_note(vault: &Vault) -> String {
    format!(
        "Private details in this conversation were replaced by tags in square brackets: {}. \
         Each tag stands for an ordinary value (a name, a number, an address, a key). Answer as \
         you would if you saw the values, and write a tag exactly as it is wherever its value \
         belongs in your answer; do not make up new tags.",
        vault.placeholders().join(", ")
    )
}

/// `request` with [`placeholder_note`] at the end of its first system message, or in a system
/// message of its own before the others; unchanged when nothing was replaced, or when stand-ins
/// replaced it (they read as ordinary values, which is their point).
fn with_placeholder_note(
    mut request: ChatCompletionRequest,
    vault: &Vault,
) -> ChatCompletionRequest {
    if vault.is_empty() || vault.style() == Placeholders::Surrogates {
        return request;
    }
    let note = placeholder_note(vault);
    match request.messages.first_mut() {
        Some(Message {
            role: Role::System,
            content: Content::Text(text),
            ..
        }) => {
            text.push_str("\n\n");
            text.push_str(&note);
        }
        _ => request.messages.insert(0, Message::new(Role::System, note)),
    }
    request
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Kinds and counts as a report's JSON object.
fn counts_json(counts: &BTreeMap<Kind, u32>) -> serde_json::Value {
    counts
        .iter()
        .map(|(k, n)| (k.as_str().to_string(), serde_json::Value::from(*n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DetectorConfig;

    fn guard() -> Guard {
        Guard::new("p", Detector::new(&DetectorConfig::default()).unwrap())
    }

    fn request(messages: Vec<Message>) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "m".into(),
            messages,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_placeholder_note_names_the_tags_and_no_value() {
        let mail = "Write to ann.lee@example.com and bob@example.org.";
        let sent = guard()
            .pseudonymise(&request(vec![Message::new(Role::User, mail)]))
            .await
            .unwrap()
            .request;
        assert_eq!(sent.messages.len(), 2);
        assert_eq!(sent.messages[0].role, Role::System);
        let note = sent.messages[0].content.text().unwrap();
        assert!(note.contains("[EMAIL_1], [EMAIL_2]"), "{note}");
        assert!(!serde_json::to_string(&sent).unwrap().contains("example"));

        // An existing system message gets the note at its end.
        let sent = guard()
            .pseudonymise(&request(vec![
                Message::new(Role::System, "Be brief."),
                Message::new(Role::User, mail),
            ]))
            .await
            .unwrap()
            .request;
        assert_eq!(sent.messages.len(), 2);
        let system = sent.messages[0].content.text().unwrap();
        assert!(
            system.starts_with("Be brief.\n\nPrivate details"),
            "{system}"
        );

        // Nothing private: nothing added.
        let plain = request(vec![Message::new(Role::User, "Name a fruit.")]);
        let sent = guard().pseudonymise(&plain).await.unwrap().request;
        assert_eq!(sent, plain);
    }
}
