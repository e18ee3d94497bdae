//! `tandem eval cache`: how often the semantic cache serves a wrong answer, per threshold, on a
//! labelled set of question pairs (`tandem_route::cache_eval`), and the threshold chosen on a
//! calibration part to bound the wrong-hit rate, reported on the held-out part.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tandem_eval::dataset::gsm::{GsmSymbolic, Prompt};
use tandem_eval::Dataset;
use tandem_fetch::Fetcher;
use tandem_route::cache::cosine;
use tandem_route::cache_eval::{
    choose_threshold, gsm_pairs, is_calibration, row, template_pairs, Judged, Pair,
};
use tandem_route::literals::literals;

#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// The catalog embedding model the cache compares questions with
    #[arg(long, default_value = "all-minilm-l6-v2")]
    embedder: String,
    /// GSM-symbolic pairs of each kind (same generator, changed number, reworded)
    #[arg(long, default_value_t = 200)]
    gsm_pairs: usize,
    /// Highest wrong-hit rate (its 95% upper bound on the calibration part) the chosen
    /// threshold may have
    #[arg(long, default_value_t = 0.01)]
    target: f64,
    /// Also write the labelled pairs here (JSON lines)
    #[arg(long)]
    write_set: Option<PathBuf>,
}

/// Thresholds reported in the table; the chosen one is searched on a finer grid.
const SHOWN: &[f32] = &[0.70, 0.75, 0.80, 0.85, 0.90, 0.95];

pub async fn run(args: CacheArgs, cache_dir: &Path) -> Result<()> {
    let fetcher = Fetcher::new(cache_dir.to_path_buf());
    let embedder = crate::embed::load_from_catalog(&fetcher, &args.embedder).await?;
    let gsm = GsmSymbolic::load(cache_dir, Prompt::FinalLine)
        .await
        .context("cannot load the gsm-symbolic problems")?;
    let problems: Vec<String> = gsm
        .items()
        .iter()
        .filter_map(|item| item.messages.first()?.content.text())
        .collect();
    let mut pairs = template_pairs();
    pairs.extend(gsm_pairs(&problems, args.gsm_pairs));
    if let Some(path) = &args.write_set {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        for pair in &pairs {
            writeln!(out, "{}", serde_json::to_string(pair)?)?;
        }
        out.flush()?;
    }

    let mut texts: Vec<String> = pairs
        .iter()
        .flat_map(|p| [p.stored.clone(), p.asked.clone()])
        .collect();
    texts.sort();
    texts.dedup();
    eprintln!(
        "embedding {} questions of {} pairs",
        texts.len(),
        pairs.len()
    );
    let vectors = tokio::task::spawn_blocking(move || {
        embedder.embed(&texts).map(|e| {
            texts
                .into_iter()
                .zip(e.vectors)
                .collect::<HashMap<String, Vec<f32>>>()
        })
    })
    .await??;
    let judge = |pair: &Pair| Judged {
        same: pair.same,
        similarity: cosine(&vectors[&pair.stored], &vectors[&pair.asked]),
        literals_match: literals(&pair.stored) == literals(&pair.asked),
    };
    let (calibration, held_out): (Vec<&Pair>, Vec<&Pair>) =
        pairs.iter().partition(|p| is_calibration(&p.group));
    let judged = |part: &[&Pair]| part.iter().map(|p| judge(p)).collect::<Vec<_>>();
    let (calibration_judged, held_out_judged) = (judged(&calibration), judged(&held_out));

    let grid: Vec<f32> = (50..=100).map(|i| i as f32 / 100.0).collect();
    let chosen = choose_threshold(&calibration_judged, &grid, args.target);

    println!(
        "Semantic cache on {} labelled pairs ({} want the same answer), embedder {}; \
         calibration {} pairs, held-out {} pairs.\n",
        pairs.len(),
        pairs.iter().filter(|p| p.same).count(),
        args.embedder,
        calibration.len(),
        held_out.len()
    );
    match chosen {
        Some(t) => println!(
            "Chosen threshold (calibration, 95% upper bound of wrong hits <= {:.1}%): {t:.2}\n",
            args.target * 100.0
        ),
        None => println!(
            "No threshold keeps the 95% upper bound of wrong hits under {:.1}% on the \
             calibration part.\n",
            args.target * 100.0
        ),
    }
    println!("Held-out part:\n");
    println!("| threshold | hit rate (paraphrases) | wrong-hit rate (near-duplicates) | wrong share of hits | wrong-hit rate, cosine alone |");
    println!("|---|---|---|---|---|");
    let mut shown: Vec<f32> = SHOWN.to_vec();
    if let Some(t) = chosen {
        if !shown.iter().any(|s| (s - t).abs() < 1e-6) {
            shown.push(t);
            shown.sort_by(f32::total_cmp);
        }
    }
    for t in shown {
        let with = row(&held_out_judged, t, true);
        let without = row(&held_out_judged, t, false);
        let mark = if chosen.is_some_and(|c| (c - t).abs() < 1e-6) {
            " (chosen)"
        } else {
            ""
        };
        println!(
            "| {t:.2}{mark} | {:.1}% | {:.2}% ({} of {}) | {:.2}% | {:.1}% |",
            with.hit_rate * 100.0,
            with.wrong_hit_rate * 100.0,
            with.wrong_hits,
            with.different_pairs,
            with.wrong_share_of_hits * 100.0,
            without.wrong_hit_rate * 100.0,
        );
    }
    if let Some(t) = chosen {
        println!("\nHeld-out, per kind of pair, at {t:.2}:\n");
        println!("| kind | pairs | hits | literal check refused |");
        println!("|---|---|---|---|");
        let mut kinds: Vec<&str> = held_out.iter().map(|p| p.kind).collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let of_kind: Vec<Judged> = held_out
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| judge(p))
                .collect();
            let hits = of_kind
                .iter()
                .filter(|j| j.similarity >= t && j.literals_match)
                .count();
            let refused = of_kind
                .iter()
                .filter(|j| j.similarity >= t && !j.literals_match)
                .count();
            println!("| {kind} | {} | {hits} | {refused} |", of_kind.len());
        }
    }
    Ok(())
}
