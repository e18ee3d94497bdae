//! `tandem eval privacy`: precision and recall per kind of Tandem's detector on a labelled set
//! generated with a fixed seed from presidio-evaluator's templates and fake identities plus
//! Tandem's own templates, optionally beside Microsoft Presidio's analyzer on the same set; then
//! leakage through `redact`, and on request whether answers survive the stages, judged
//! ([`quality`]) or checked against the private value a question asks for ([`questions`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use tandem_fetch::Fetcher;
use tandem_privacy::detect::context::standalone;
use tandem_privacy::eval::labelled::{self, PresidioData, Sample};
use tandem_privacy::eval::score::{errors, score, table, Spans};
use tandem_privacy::names::{Judged, NameJudge, NameJudgeConfig};
use tandem_privacy::stage::Guard;
use tandem_privacy::{Detector, DetectorConfig, Finding, Kind};

use crate::eval::ModelProvider;

mod memo;
mod quality;
mod questions;

/// Sentences detected at once: a name judge's questions to a local engine batch.
const SENTENCES_AT_ONCE: usize = 4;

/// The presidio-evaluator release whose data the set is built from.
const PRESIDIO_EVALUATOR: (&str, &str) = ("presidio-evaluator", "0.3.2");

#[derive(Debug, Clone, clap::Args)]
pub struct PrivacyArgs {
    /// Sentences in the labelled set
    #[arg(long, default_value_t = 2400)]
    count: usize,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// A Python with `presidio-analyzer` and a spaCy English model installed: runs Presidio's
    /// analyzer on the same set, side by side
    #[arg(long)]
    presidio_python: Option<PathBuf>,
    /// The spaCy model Presidio loads
    #[arg(long, default_value = "en_core_web_sm")]
    spacy_model: String,
    /// Print up to N missed values and N wrong findings per kind to stderr, and up to N values
    /// per kind that leaked in the leakage pass
    #[arg(long, default_value_t = 0)]
    show_errors: usize,
    /// Also write the labelled set here (JSON lines: text, spans, source)
    #[arg(long)]
    write_set: Option<PathBuf>,
    /// A local model of the configuration that judges the capitalised words the rules left, as a
    /// privacy pipeline's `names.model` does
    #[arg(long)]
    names_model: Option<String>,
    /// The name judge's threshold (`names.threshold`)
    #[arg(long, default_value_t = 0.5)]
    names_threshold: f32,
    /// Requests whose answers through `redact` (and `rewrite`) are judged against the answer the
    /// large model gives with the full prompt; 0 skips the quality pass
    #[arg(long, default_value_t = 0)]
    quality: usize,
    /// Requests that end with a question whose answer is one of their private values, answered
    /// with the full prompt and through `redact` (and `rewrite`) and checked against that value;
    /// 0 skips the questions pass
    #[arg(long, default_value_t = 0)]
    questions: usize,
    /// The large model of the quality and questions passes: it answers, behind the stages and
    /// without them, and judges the quality pass
    #[arg(long)]
    quality_model: Option<String>,
    /// A local model that rewrites and composes for the `rewrite` policy; without it the quality
    /// pass judges `redact` alone
    #[arg(long)]
    quality_local: Option<String>,
    /// Tokens per answer in the quality pass
    #[arg(long, default_value_t = 128)]
    quality_max_tokens: u32,
    /// Also write the quality pass's requests, answers and verdicts here (JSON lines)
    #[arg(long)]
    write_quality: Option<PathBuf>,
    /// Also write the questions pass's requests, values and answers here (JSON lines)
    #[arg(long)]
    write_questions: Option<PathBuf>,
}

impl PrivacyArgs {
    /// Refuses a quality or questions pass without its model, and each pass's flags without it.
    pub fn check(&self) -> Result<()> {
        for (flag, count) in [("--quality", self.quality), ("--questions", self.questions)] {
            if count > 0 && self.quality_model.is_none() {
                bail!("{flag} needs --quality-model, the large model that answers");
            }
        }
        if self.quality == 0 && self.questions == 0 {
            for (flag, given) in [
                ("--quality-model", self.quality_model.is_some()),
                ("--quality-local", self.quality_local.is_some()),
            ] {
                if given {
                    bail!(
                        "{flag} is used only by the quality and questions passes: add --quality N \
                         or --questions N (requests)"
                    );
                }
            }
        }
        for (flag, given, pass) in [
            (
                "--write-quality",
                self.write_quality.is_some() && self.quality == 0,
                "--quality",
            ),
            (
                "--write-questions",
                self.write_questions.is_some() && self.questions == 0,
                "--questions",
            ),
        ] {
            if given {
                bail!("{flag} writes the answers of a pass that does not run: add {pass} N");
            }
        }
        Ok(())
    }

    /// The models of the configuration this run loads.
    pub fn models(&self) -> Vec<String> {
        let mut names: Vec<String> = [&self.names_model, &self.quality_model, &self.quality_local]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

pub async fn run(args: PrivacyArgs, models: &dyn ModelProvider, cache_dir: &Path) -> Result<()> {
    args.check()?;
    let fetcher = Fetcher::new(cache_dir.to_path_buf());
    let (package, version) = PRESIDIO_EVALUATOR;
    let wheel = fetcher
        .wheel(package, Some(version))
        .await
        .with_context(|| format!("cannot fetch {package} {version}"))?;
    let member = |name: &str| -> Result<String> {
        let mut bytes = Vec::new();
        tandem_fetch::extract_member(&wheel, name, &mut bytes)?;
        String::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8"))
    };
    let data = PresidioData::parse(
        &member(labelled::PRESIDIO_TEMPLATES)?,
        &member(labelled::PRESIDIO_IDENTITIES)?,
        &member(labelled::PRESIDIO_ORGANIZATIONS)?,
    )?;
    let samples = labelled::generate(&data, args.count, args.seed);
    if let Some(path) = &args.write_set {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        for sample in &samples {
            writeln!(out, "{}", serde_json::to_string(sample)?)?;
        }
        out.flush()?;
    }
    let mut guard = Guard::new("eval", Detector::new(&DetectorConfig::default())?);
    // The later passes ask the judge again about the same sentences: they replay its answers.
    let mut judge_memo = None;
    if let Some(name) = &args.names_model {
        let config = NameJudgeConfig {
            model: name.clone(),
            threshold: args.names_threshold,
            max_questions: usize::MAX,
        };
        let memo = Arc::new(memo::Memo::new(models.model(name)?));
        guard = guard.with_name_judge(NameJudge::new(&config, memo.clone())?);
        judge_memo = Some(memo);
    }
    let started = Instant::now();
    // By index: a closure over each sample's reference would not be `Send` for every lifetime.
    let judged: Vec<(Vec<Finding>, Judged)> = futures::stream::iter(0..samples.len())
        .map(|i| {
            let (guard, text) = (&guard, samples[i].text.as_str());
            async move {
                let (mut found, judged) = guard.findings(&[text]).await?;
                Ok::<_, tandem_core::ModelError>((found.remove(0), judged))
            }
        })
        .buffered(SENTENCES_AT_ONCE)
        .try_collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.names_model.is_some() {
        let asked: usize = judged.iter().map(|(_, j)| j.asked).sum();
        let named: usize = judged.iter().map(|(_, j)| j.found).sum();
        eprintln!(
            "name judge: {asked} questions, {named} found a person or an organisation, {:.1} s for \
             {} sentences",
            started.elapsed().as_secs_f64(),
            samples.len()
        );
    }
    let found: Vec<Spans> = judged
        .into_iter()
        .map(|(found, _)| found.into_iter().map(|f| (f.kind, f.span)).collect())
        .collect();
    let ours = score(&samples, &found);
    if args.show_errors > 0 {
        let (missed, wrong) = errors(&samples, &found);
        for (label, list) in [("missed", missed), ("wrong", wrong)] {
            let mut shown: BTreeMap<Kind, usize> = BTreeMap::new();
            for (kind, value, sentence) in list {
                let n = shown.entry(kind).or_default();
                *n += 1;
                if *n <= args.show_errors {
                    eprintln!("{label} {kind}: {value:?} in {sentence:?}");
                }
            }
        }
    }
    let theirs = match &args.presidio_python {
        Some(python) => Some(score(
            &samples,
            &presidio(python, &args.spacy_model, &samples)?,
        )),
        None => None,
    };
    let sources: BTreeMap<&str, usize> = samples.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.source).or_default() += 1;
        m
    });
    println!(
        "{} sentences (seed {}, {package} {version}): {}\n",
        samples.len(),
        args.seed,
        sources
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print!("{}", table(&ours, theirs.as_ref().map(|t| ("Presidio", t))));
    let replayed = judge_memo.as_ref().map_or(0, |m| m.replayed());
    leakage(&samples, args.seed, &guard, args.show_errors).await?;
    if let Some(memo) = &judge_memo {
        eprintln!(
            "name judge: {} questions of the leakage pass answered from the detection pass's",
            memo.replayed() - replayed
        );
    }
    if let Some(large) = args.quality_model.as_deref() {
        let large = models.model(large)?;
        let local = args
            .quality_local
            .as_deref()
            .map(|name| models.model(name))
            .transpose()?;
        let pass = |count, write| quality::QualityRun {
            samples: &samples,
            seed: args.seed,
            count,
            guard: &guard,
            large: Arc::clone(&large),
            local: local.clone(),
            max_tokens: args.quality_max_tokens,
            write,
        };
        if args.quality > 0 {
            pass(args.quality, args.write_quality.as_deref())
                .run()
                .await?;
        }
        if args.questions > 0 {
            pass(args.questions, args.write_questions.as_deref())
                .run_questions()
                .await?;
        }
    }
    Ok(())
}

/// Groups the sentences into multi-message requests (two to six messages, every role, a seeded
/// draw), sends each through the `redact` stage's pseudonymisation, and counts the requests in
/// which a labelled value still appears in what would be sent: as written whatever the case, as
/// a whole word ("Eva" is not in "relevant"), or (for values of six letters and digits or more)
/// with other spacing and separators. Prints up to
/// `show` leaked values per kind to stderr, each with the request's message count.
async fn leakage(samples: &[Sample], seed: u64, guard: &Guard, show: usize) -> Result<()> {
    use rand::{Rng, SeedableRng};
    use tandem_core::openai::{ChatCompletionRequest, Message, Role};
    use tandem_privacy::normalize::canonical;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let roles = [
        Role::System,
        Role::User,
        Role::Assistant,
        Role::Tool,
        Role::User,
    ];
    let (mut requests, mut leaked, mut structured_leaked) = (0usize, 0usize, 0usize);
    let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut shown: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut at = 0;
    while at < samples.len() {
        let n = rng.random_range(2..=6).min(samples.len() - at);
        let group = &samples[at..at + n];
        at += n;
        let request = ChatCompletionRequest {
            model: "eval".into(),
            messages: group
                .iter()
                .enumerate()
                .map(|(i, s)| Message::new(roles[i % roles.len()], s.text.clone()))
                .collect(),
            ..Default::default()
        };
        let sent = guard
            .pseudonymise(&request)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .request;
        // Words are looked for in the texts as sent (in the JSON body a line's first word
        // follows the `n` of `\\n`), the squeezed forms in the whole body.
        let body = serde_json::to_string(&sent)?;
        let sent_texts =
            tandem_privacy::fields::texts(&sent).map_err(|e| anyhow::anyhow!("{e}"))?;
        let lower = sent_texts
            .iter()
            .map(|t| t.text.to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        let squeezed = canonical(&body);
        let mut kinds = Vec::new();
        for sample in group {
            for (kind, span) in &sample.spans {
                let value = &sample.text[span.clone()];
                let bare = canonical(value);
                if contains_word(&lower, &value.to_lowercase())
                    || bare.chars().count() >= 6 && squeezed.contains(&bare)
                {
                    kinds.push(*kind);
                    let n = shown.entry(*kind).or_default();
                    *n += 1;
                    if *n <= show {
                        eprintln!(
                            "leaked {kind} ({} messages): {value:?} in {:?}",
                            group.len(),
                            sample.text
                        );
                    }
                }
            }
        }
        requests += 1;
        if !kinds.is_empty() {
            leaked += 1;
        }
        if kinds.iter().any(|k| k.is_structured()) {
            structured_leaked += 1;
        }
        for kind in kinds {
            *by_kind.entry(kind).or_default() += 1;
        }
    }
    let share = |n: usize| 100.0 * n as f64 / requests.max(1) as f64;
    println!(
        "\nLeakage through `redact`: {requests} requests of 2-6 messages; a labelled value reached \
         the upstream in {leaked} ({:.1}%), a structured one (cards, IBANs, ids, e-mails, phones, \
         keys, credential URLs, IPs) in {structured_leaked} ({:.1}%).",
        share(leaked),
        share(structured_leaked)
    );
    println!(
        "Values leaked by kind: {}",
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Whether `needle` occurs in `haystack` with no letter or digit right before or after it.
fn contains_word(haystack: &str, needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .match_indices(needle)
            .any(|(at, _)| standalone(haystack, at, at + needle.len()))
}

/// Presidio's entity types, as Tandem's kinds; the others are left out of its scores.
const PRESIDIO_KINDS: &[(&str, Kind)] = &[
    ("EMAIL_ADDRESS", Kind::Email),
    ("PHONE_NUMBER", Kind::Phone),
    ("CREDIT_CARD", Kind::CreditCard),
    ("IBAN_CODE", Kind::Iban),
    ("US_SSN", Kind::NationalId),
    ("UK_NINO", Kind::NationalId),
    ("IP_ADDRESS", Kind::IpAddress),
    ("URL", Kind::CredentialUrl),
    ("DATE_TIME", Kind::DateOfBirth),
    ("LOCATION", Kind::StreetAddress),
    ("PERSON", Kind::Person),
    ("ORGANIZATION", Kind::Organization),
];

const PRESIDIO_SCRIPT: &str = r#"
import json, sys
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
provider = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
    "models": [{"lang_code": "en", "model_name": sys.argv[1]}]})
analyzer = AnalyzerEngine(nlp_engine=provider.create_engine())
for line in sys.stdin:
    text = json.loads(line)
    found = [[r.entity_type, r.start, r.end] for r in analyzer.analyze(text=text, language="en")]
    print(json.dumps(found), flush=True)
"#;

/// Presidio's findings for every sample, as byte spans.
fn presidio(python: &Path, model: &str, samples: &[Sample]) -> Result<Vec<Spans>> {
    let mut input = String::new();
    for sample in samples {
        input.push_str(&serde_json::to_string(&sample.text)?);
        input.push('\n');
    }
    let mut child = Command::new(python)
        .args(["-c", PRESIDIO_SCRIPT, model])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output()?;
    writer.join().expect("the writer does not panic")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "Presidio failed ({}): {}",
            output.status,
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    let lines: Vec<&str> = stdout.lines().collect();
    if lines.len() != samples.len() {
        bail!(
            "Presidio answered {} of {} sentences",
            lines.len(),
            samples.len()
        );
    }
    let mut all = Vec::with_capacity(samples.len());
    for (sample, line) in samples.iter().zip(lines) {
        let found: Vec<(String, usize, usize)> = serde_json::from_str(line)?;
        // Python counts code points; spans here are bytes.
        let bytes: Vec<usize> = sample
            .text
            .char_indices()
            .map(|(i, _)| i)
            .chain([sample.text.len()])
            .collect();
        all.push(
            found
                .into_iter()
                .filter_map(|(kind, start, end)| {
                    let kind = PRESIDIO_KINDS.iter().find(|(k, _)| *k == kind)?.1;
                    Some((kind, *bytes.get(start)?..*bytes.get(end)?))
                })
                .collect(),
        );
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_leaks_only_as_a_whole_word() {
        assert!(contains_word("write to eva today", "eva"));
        assert!(contains_word("eva's reply.", "eva"));
        assert!(contains_word("(ana) and eva", "eva"));
        assert!(!contains_word("a relevant reply", "eva"));
        assert!(!contains_word("eva2 is a robot", "eva"));
        assert!(
            contains_word("eva2 or eva", "eva"),
            "a later whole-word match counts"
        );
        assert!(!contains_word("anything", ""));
    }

    #[test]
    fn each_pass_needs_its_model_and_each_flag_its_pass() {
        #[derive(clap::Parser)]
        struct Line {
            #[command(flatten)]
            args: PrivacyArgs,
        }
        let check = |flags: &[&str]| {
            let line = <Line as clap::Parser>::try_parse_from(["privacy"].iter().chain(flags))
                .expect("flags parse");
            line.args.check().map_err(|e| e.to_string())
        };
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(check(&["--questions", "5", "--quality-model", "m"]), Ok(()));
        assert_eq!(
            check(&[
                "--quality",
                "5",
                "--quality-model",
                "m",
                "--write-quality",
                "q.jsonl"
            ]),
            Ok(())
        );
        let refused = [
            (
                &["--questions", "5"][..],
                "--questions needs --quality-model",
            ),
            (&["--quality", "5"][..], "--quality needs --quality-model"),
            (
                &["--quality-local", "s"][..],
                "--quality-local is used only by",
            ),
            (
                &[
                    "--questions",
                    "5",
                    "--quality-model",
                    "m",
                    "--write-quality",
                    "q",
                ][..],
                "--write-quality writes the answers of a pass that does not run: add --quality N",
            ),
            (
                &[
                    "--quality",
                    "5",
                    "--quality-model",
                    "m",
                    "--write-questions",
                    "q",
                ][..],
                "add --questions N",
            ),
        ];
        for (flags, message) in refused {
            let error = check(flags).expect_err("refused");
            assert!(error.contains(message), "{flags:?}: {error}");
        }
    }
}
