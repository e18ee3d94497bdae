//! Calibrating a confidence: [`Platt`] scaling (a logistic regression on the score's logit) and
//! [`Isotonic`] regression (pool adjacent violators), both fitted on held-out outcomes, and the
//! expected calibration error with its reliability bins, and the error a perfectly calibrated
//! confidence would show on a sample of the same size ([`ece_if_calibrated`]).
//!
//! ```
//! use tandem_trust::calibration::{ece, Isotonic};
//! let scores = [0.9, 0.8, 0.7, 0.2];
//! let correct = [true, false, true, false];
//! let iso = Isotonic::fit(&scores, &correct);
//! assert!(ece(&scores.map(|s| iso.apply(s)), &correct, 10) <= ece(&scores, &correct, 10));
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classifier::{logit, sigmoid};
use crate::error::{file_error, load_json, save_json, TrustError};
use crate::verify::Confidence;

/// A fitted calibration map, stored as JSON with the confidence it was fitted on (`tandem eval
/// trust --calibrate` writes one for each; the verify stage's `calibration` key reads it, and
/// refuses a map of the other confidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibration {
    Platt(Platt),
    Isotonic(Isotonic),
}

impl Calibration {
    pub fn apply(&self, score: f64) -> f64 {
        match self {
            Calibration::Platt(platt) => platt.apply(score),
            Calibration::Isotonic(isotonic) => isotonic.apply(score),
        }
    }

    /// Stores the map, fitted on `confidence`, at `path`.
    pub fn save(&self, confidence: Confidence, path: &Path) -> Result<(), TrustError> {
        save_json(
            &Stored {
                confidence: Some(confidence),
                map: self.clone(),
            },
            path,
        )
    }

    /// Reads the map at `path`, which must have been fitted on `confidence`.
    pub fn load(path: &Path, confidence: Confidence) -> Result<Calibration, TrustError> {
        let stored: Stored = load_json(path)?;
        let refuse = |message: String| file_error(path, message);
        match stored.confidence {
            Some(fitted) if fitted == confidence => Ok(stored.map),
            Some(fitted) => Err(refuse(format!(
                "the map was fitted on the `{}` confidence, and the stage reports `{}`: use \
                 the map of that confidence, or set `confidence = \"{}\"`",
                fitted.name(),
                confidence.name(),
                fitted.name()
            ))),
            None => Err(refuse(
                "the map does not say which confidence it was fitted on (written before maps \
                 recorded it): run `tandem eval trust --calibrate` again"
                    .to_string(),
            )),
        }
    }
}

/// A [`Calibration`] as stored: the map's fields and the confidence it was fitted on (absent in
/// maps written before it was recorded).
#[derive(Serialize, Deserialize)]
struct Stored {
    confidence: Option<Confidence>,
    #[serde(flatten)]
    map: Calibration,
}

/// `sigmoid(a * logit(score) + b)`, fitted by Newton's method on the log loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Platt {
    pub fn fit(scores: &[f64], correct: &[bool]) -> Platt {
        let xs: Vec<f64> = scores.iter().map(|&s| logit(s)).collect();
        // Platt's targets: the labels pulled off 0 and 1 by the class counts, so a separable
        // sample does not drive the slope to infinity.
        let positives = correct.iter().filter(|&&c| c).count() as f64;
        let negatives = correct.len() as f64 - positives;
        let high = (positives + 1.0) / (positives + 2.0);
        let low = 1.0 / (negatives + 2.0);
        let ys: Vec<f64> = correct
            .iter()
            .map(|&c| if c { high } else { low })
            .collect();
        // Newton's method with a backtracking line search, from the flat fit at the base rate
        // (Lin, Lin and Weng, "A note on Platt's probabilistic outputs"): full Newton steps from
        // an arbitrary start diverge when the scores' logits are large and weakly informative.
        let loss = |a: f64, b: f64| -> f64 {
            xs.iter()
                .zip(&ys)
                .map(|(x, y)| {
                    let z = a * x + b;
                    // -(y ln p + (1-y) ln(1-p)) with p = sigmoid(z), without overflow.
                    z.max(0.0) - y * z + (-z.abs()).exp().ln_1p()
                })
                .sum()
        };
        let (mut a, mut b) = (0.0, ((positives + 1.0) / (negatives + 1.0)).ln());
        let mut current = loss(a, b);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
            for (x, y) in xs.iter().zip(&ys) {
                let p = sigmoid(a * x + b);
                let w = p * (1.0 - p);
                ga += (p - y) * x;
                gb += p - y;
                haa += w * x * x;
                hab += w * x;
                hbb += w;
            }
            if ga.abs() < 1e-9 && gb.abs() < 1e-9 {
                break;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = -(hbb * ga - hab * gb) / det;
            let db = -(haa * gb - hab * ga) / det;
            let slope = ga * da + gb * db;
            let mut step = 1.0;
            while step >= 1e-10 {
                let next = loss(a + step * da, b + step * db);
                if next <= current + 1e-4 * step * slope {
                    a += step * da;
                    b += step * db;
                    current = next;
                    break;
                }
                step /= 2.0;
            }
            if step < 1e-10 {
                break;
            }
        }
        Platt { a, b }
    }

    pub fn apply(&self, score: f64) -> f64 {
        sigmoid(self.a * logit(score) + self.b)
    }
}

/// A non-decreasing step function of the score: each step's value is the share correct among the
/// fitted scores it pools; scores between steps take the nearer step's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isotonic {
    /// (highest score of the step, value), by score.
    pub steps: Vec<(f64, f64)>,
}

impl Isotonic {
    pub fn fit(scores: &[f64], correct: &[bool]) -> Isotonic {
        let mut pairs: Vec<(f64, f64)> = scores
            .iter()
            .zip(correct)
            .map(|(&s, &c)| (s, f64::from(u8::from(c))))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks of (lowest score, highest score, sum, count), merged while a block's mean is
        // above the next one's.
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
        for (s, y) in pairs {
            match blocks.last_mut() {
                // Equal scores must get one value.
                Some(last) if last.1 == s => {
                    last.2 += y;
                    last.3 += 1.0;
                }
                _ => blocks.push((s, s, y, 1.0)),
            }
            while blocks.len() >= 2 {
                let n = blocks.len();
                let (prev, last) = (blocks[n - 2], blocks[n - 1]);
                if prev.2 / prev.3 < last.2 / last.3 {
                    break;
                }
                blocks[n - 2] = (prev.0, last.1, prev.2 + last.2, prev.3 + last.3);
                blocks.pop();
            }
        }
        Isotonic {
            steps: blocks.iter().map(|b| (b.1, b.2 / b.3)).collect(),
        }
    }

    pub fn apply(&self, score: f64) -> f64 {
        match self.steps.iter().position(|&(high, _)| score <= high) {
            Some(i) => self.steps[i].1,
            None => self.steps.last().map_or(score, |s| s.1),
        }
    }
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    pub low: f64,
    pub high: f64,
    pub count: usize,
    /// Mean confidence of the bin's items; the bin's middle when empty.
    pub confidence: f64,
    /// Share correct of the bin's items; 0 when empty.
    pub accuracy: f64,
}

/// `bins` equal-width bins over [0, 1]; a confidence of exactly 1 falls in the last.
pub fn reliability(confidence: &[f64], correct: &[bool], bins: usize) -> Vec<Bin> {
    let bins = bins.max(1);
    let mut out: Vec<Bin> = (0..bins)
        .map(|i| Bin {
            low: i as f64 / bins as f64,
            high: (i + 1) as f64 / bins as f64,
            count: 0,
            confidence: 0.0,
            accuracy: 0.0,
        })
        .collect();
    for (&c, &ok) in confidence.iter().zip(correct) {
        let i = ((c.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        out[i].count += 1;
        out[i].confidence += c;
        out[i].accuracy += f64::from(u8::from(ok));
    }
    for bin in &mut out {
        if bin.count > 0 {
            bin.confidence /= bin.count as f64;
            bin.accuracy /= bin.count as f64;
        } else {
            bin.confidence = (bin.low + bin.high) / 2.0;
        }
    }
    out
}

/// Expected calibration error: the count-weighted mean of |accuracy - confidence| over
/// `bins` equal-width bins.
pub fn ece(confidence: &[f64], correct: &[bool], bins: usize) -> f64 {
    let n = confidence.len().max(1) as f64;
    reliability(confidence, correct, bins)
        .iter()
        .map(|b| b.count as f64 / n * (b.accuracy - b.confidence).abs())
        .sum()
}

/// What the ECE of a perfectly calibrated confidence is on a sample like this one: the answers'
/// outcomes are drawn `draws` times, each answer right with the probability its confidence says,
/// and the ECE of each draw is taken. Returns the mean of those ECEs (the floor that sampling
/// alone puts under the measured value) and the share of draws with an ECE of at least `observed`
/// (the p-value of "this confidence is calibrated": a small one says the gap is more than chance).
/// Seeded, so a report regenerates exactly.
pub fn ece_if_calibrated(
    confidence: &[f64],
    observed: f64,
    bins: usize,
    draws: usize,
    seed: u64,
) -> (f64, f64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let draws = draws.max(1);
    let (mut sum, mut at_least) = (0.0, 0usize);
    for _ in 0..draws {
        let outcomes: Vec<bool> = confidence
            .iter()
            .map(|&c| rng.random::<f64>() < c.clamp(0.0, 1.0))
            .collect();
        let e = ece(confidence, &outcomes, bins);
        sum += e;
        if e >= observed - 1e-12 {
            at_least += 1;
        }
    }
    (sum / draws as f64, at_least as f64 / draws as f64)
}

/// Out-of-fold calibrated confidences: item `i` is calibrated by a map fitted on every item not
/// in its fold (`i % folds`), so no item's own outcome shapes its calibrated value.
pub fn cross_fitted(
    scores: &[f64],
    correct: &[bool],
    folds: usize,
    fit_apply: impl Fn(&[f64], &[bool], f64) -> f64,
) -> Vec<f64> {
    let folds = folds.max(2);
    (0..scores.len())
        .map(|i| {
            let (mut s, mut c) = (Vec::new(), Vec::new());
            for j in (0..scores.len()).filter(|j| j % folds != i % folds) {
                s.push(scores[j]);
                c.push(correct[j]);
            }
            fit_apply(&s, &c, scores[i])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_is_zero_when_confidence_matches_accuracy_and_counts_the_gap() {
        let confidence = [0.25, 0.25, 0.25, 0.25, 0.95, 0.95];
        let correct = [true, false, false, false, true, true];
        let e = ece(&confidence, &correct, 10);
        // Bin 0.2-0.3: 0.25 vs 0.25; bin 0.9-1.0: 0.95 vs 1.0, weight 2/6.
        assert!((e - 0.05 / 3.0).abs() < 1e-12, "{e}");
        let bins = reliability(&[1.0, 0.0], &[true, false], 4);
        assert_eq!((bins[0].count, bins[3].count), (1, 1));
    }

    #[test]
    fn a_calibrated_confidence_shows_a_sampling_floor_and_a_miscalibrated_one_a_small_p_value() {
        // 164 answers (HumanEval's size) with confidences between 0.5 and 0.9.
        let confidence: Vec<f64> = (0..164).map(|i| 0.5 + 0.4 * f64::from(i) / 163.0).collect();
        let (floor, _) = ece_if_calibrated(&confidence, 0.0, 10, 400, 7);
        // Sampling alone puts a floor of several points under the ECE at this size.
        assert!((0.03..0.08).contains(&floor), "{floor}");
        // Outcomes that follow the confidence: consistent with calibration.
        let fair: Vec<bool> = confidence
            .iter()
            .enumerate()
            .map(|(i, &c)| ((i * 7919) % 100) as f64 / 100.0 < c)
            .collect();
        let (_, p) = ece_if_calibrated(&confidence, ece(&confidence, &fair, 10), 10, 400, 7);
        assert!(p > 0.05, "{p}");
        // Every answer right: an ECE of about 0.3, which no calibrated draw reaches.
        let all = vec![true; confidence.len()];
        let (_, p) = ece_if_calibrated(&confidence, ece(&confidence, &all, 10), 10, 400, 7);
        assert_eq!(p, 0.0);
        // Seeded: the same call gives the same answer.
        assert_eq!(
            ece_if_calibrated(&confidence, 0.05, 10, 50, 3),
            ece_if_calibrated(&confidence, 0.05, 10, 50, 3)
        );
    }

    #[test]
    fn isotonic_pools_violators_into_a_non_decreasing_map() {
        let iso = Isotonic::fit(&[0.1, 0.2, 0.3, 0.4], &[false, true, false, true]);
        assert_eq!(iso.steps, [(0.1, 0.0), (0.3, 0.5), (0.4, 1.0)]);
        assert_eq!(iso.apply(0.25), 0.5);
        assert_eq!(iso.apply(0.05), 0.0);
        assert_eq!(iso.apply(0.9), 1.0);
    }

    #[test]
    fn platt_recovers_an_overconfident_score() {
        // True probability sigmoid(0.5 * logit(s)): the score is overconfident, the slope 0.5.
        let mut scores = Vec::new();
        let mut correct = Vec::new();
        for i in 1..100 {
            let s = f64::from(i) / 100.0;
            let p = sigmoid(0.5 * logit(s));
            for k in 0..100 {
                scores.push(s);
                correct.push(f64::from(k) < p * 100.0);
            }
        }
        let platt = Platt::fit(&scores, &correct);
        assert!(
            (platt.a - 0.5).abs() < 0.05 && platt.b.abs() < 0.05,
            "{platt:?}"
        );
        let before = ece(&scores, &correct, 10);
        let after = ece(
            &scores.iter().map(|&s| platt.apply(s)).collect::<Vec<_>>(),
            &correct,
            10,
        );
        assert!(after < before / 3.0, "{before} -> {after}");
    }

    #[test]
    fn platt_converges_on_large_weakly_informative_logits() {
        // Scores crowded near 1 (logits 3 to 9) that barely tell right from wrong, as a model's
        // own token probabilities on code: undamped Newton steps from slope 1 diverged here and
        // calibrated every held-out answer to 0 or 1.
        let mut scores = Vec::new();
        let mut correct = Vec::new();
        for i in 0..60 {
            let s = 1.0 - 0.05 * 0.9f64.powi(i % 30);
            scores.push(s);
            correct.push(i % 4 != 0 || i % 7 == 0);
        }
        let platt = Platt::fit(&scores, &correct);
        assert!(platt.a.is_finite() && platt.b.is_finite(), "{platt:?}");
        // At the maximum-likelihood fit the mean prediction equals the mean target.
        let positives = correct.iter().filter(|&&c| c).count() as f64;
        let n = correct.len() as f64;
        let (high, low) = (
            (positives + 1.0) / (positives + 2.0),
            1.0 / (n - positives + 2.0),
        );
        let target = (positives * high + (n - positives) * low) / n;
        let mean = scores.iter().map(|&s| platt.apply(s)).sum::<f64>() / n;
        assert!(
            (mean - target).abs() < 1e-6,
            "{platt:?}: {mean} vs {target}"
        );
    }

    #[test]
    fn a_stored_calibration_reads_back_and_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let stored = Calibration::Isotonic(Isotonic::fit(&[0.2, 0.8], &[false, true]));
        stored.save(Confidence::Answer, &path).unwrap();
        let read = Calibration::load(&path, Confidence::Answer).unwrap();
        assert_eq!(read, stored);
        assert_eq!((read.apply(0.1), read.apply(0.9)), (0.0, 1.0));
        let error =
            |path: &Path, confidence| Calibration::load(path, confidence).unwrap_err().to_string();
        assert!(error(&dir.path().join("nope.json"), Confidence::Answer).contains("nope.json"));
        // A map of the other confidence would turn one confidence's scale into another's.
        let wrong = error(&path, Confidence::Verifier);
        assert!(
            wrong.contains("fitted on the `answer` confidence"),
            "{wrong}"
        );
        // A map written before maps recorded their confidence is refused, with what to do.
        let old = dir.path().join("old.json");
        std::fs::write(&old, r#"{"method":"platt","a":1.0,"b":0.0}"#).unwrap();
        let unknown = error(&old, Confidence::Verifier);
        assert!(unknown.contains("eval trust --calibrate"), "{unknown}");
    }

    #[test]
    fn cross_fitting_leaves_each_item_out() {
        let seen = cross_fitted(&[0.0, 1.0, 2.0, 3.0], &[true; 4], 2, |s, _, x| {
            assert!(!s.contains(&x));
            s.iter().sum()
        });
        assert_eq!(seen, [4.0, 2.0, 4.0, 2.0]);
    }
}
