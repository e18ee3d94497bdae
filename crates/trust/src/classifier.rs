//! The trained part of the input guard, on sentence embeddings (all-MiniLM-L6-v2): a harm
//! classifier (a perceptron with one hidden layer, [`Mlp`], or a [`Logistic`] regression), a
//! jailbreak classifier of the same kind ([`JailbreakClassifier`]), and the rule the guard serves
//! ([`TrustModel::decide`]: either one passing its threshold blocks). Thresholds are fitted to a
//! false-positive budget ([`bounded_threshold`]).
//!
//! Trained by `tandem eval trust` on the training split of the public harmful and benign sets
//! (see [`crate::data`]) and stored as one JSON file that the guard's configuration names.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tandem_core::stats::wilson;

use crate::error::{load_json, save_json, TrustError};

/// Logistic regression: `sigmoid(w . x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl Logistic {
    pub fn probability(&self, features: &[f64]) -> f64 {
        sigmoid(self.logit(features))
    }

    pub fn logit(&self, features: &[f64]) -> f64 {
        self.weights
            .iter()
            .zip(features)
            .map(|(w, x)| w * x)
            .sum::<f64>()
            + self.bias
    }

    /// Fits by full-batch gradient descent on the mean log loss plus `l2 / 2 * |w|^2`, with the
    /// classes weighted so each counts as much as the other (the sets differ in size).
    pub fn fit(rows: &[Vec<f64>], labels: &[bool], l2: f64, epochs: usize, rate: f64) -> Logistic {
        let dims = rows.first().map_or(0, Vec::len);
        let positives = labels.iter().filter(|&&l| l).count().max(1) as f64;
        let negatives = labels.iter().filter(|&&l| !l).count().max(1) as f64;
        let n = labels.len() as f64;
        let class_weight = |label: bool| {
            if label {
                n / (2.0 * positives)
            } else {
                n / (2.0 * negatives)
            }
        };
        let mut model = Logistic {
            weights: vec![0.0; dims],
            bias: 0.0,
        };
        let mut gradient = vec![0.0; dims];
        for _ in 0..epochs {
            gradient.iter_mut().for_each(|g| *g = 0.0);
            let mut bias_gradient = 0.0;
            for (row, &label) in rows.iter().zip(labels) {
                let error =
                    (model.probability(row) - f64::from(u8::from(label))) * class_weight(label);
                for (g, x) in gradient.iter_mut().zip(row) {
                    *g += error * x;
                }
                bias_gradient += error;
            }
            for (w, g) in model.weights.iter_mut().zip(&gradient) {
                *w -= rate * (g / n + l2 * *w);
            }
            model.bias -= rate * bias_gradient / n;
        }
        model
    }
}

/// A perceptron with one hidden layer of rectified linear units and a logistic output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    /// One row of input weights per hidden unit.
    pub hidden: Vec<Vec<f64>>,
    pub hidden_bias: Vec<f64>,
    pub output: Vec<f64>,
    pub output_bias: f64,
}

/// How an [`Mlp`] is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpOptions {
    pub hidden: usize,
    /// Full-batch Adam steps.
    pub epochs: usize,
    pub rate: f64,
    /// Weight decay on the weights (not the biases).
    pub l2: f64,
    /// Seeds the initial weights: a fit is reproducible.
    pub seed: u64,
}

impl Default for MlpOptions {
    fn default() -> Self {
        MlpOptions {
            hidden: 64,
            epochs: 300,
            rate: 0.01,
            l2: 1e-4,
            seed: 0,
        }
    }
}

impl Mlp {
    pub fn probability(&self, features: &[f64]) -> f64 {
        let mut z = self.output_bias;
        for ((row, bias), out) in self.hidden.iter().zip(&self.hidden_bias).zip(&self.output) {
            z += out * (dot(row, features) + bias).max(0.0);
        }
        sigmoid(z)
    }

    /// Fits by full-batch Adam on the mean log loss, the classes weighted so each counts as much
    /// as the other, plus `l2 / 2 * |w|^2` on the weights.
    pub fn fit(rows: &[Vec<f64>], labels: &[bool], options: MlpOptions) -> Mlp {
        use rand::{Rng, SeedableRng};
        let dims = rows.first().map_or(0, Vec::len);
        let units = options.hidden;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
        // Uniform with the variance of N(0, 1 / fan-in).
        let mut init = |fan_in: usize| {
            let a = (3.0 / fan_in.max(1) as f64).sqrt();
            rng.random_range(-a..a)
        };
        let mut model = Mlp {
            hidden: (0..units)
                .map(|_| (0..dims).map(|_| init(dims)).collect())
                .collect(),
            hidden_bias: vec![0.0; units],
            output: (0..units).map(|_| init(units)).collect(),
            output_bias: 0.0,
        };
        let n = labels.len().max(1) as f64;
        let positives = labels.iter().filter(|&&l| l).count().max(1) as f64;
        let negatives = labels.iter().filter(|&&l| !l).count().max(1) as f64;
        let mut adam = Adam::new(units * dims + 2 * units + 1);
        let mut gradient = vec![0.0; units * dims + 2 * units + 1];
        let mut pre = vec![0.0; units];
        for _ in 0..options.epochs {
            gradient.iter_mut().for_each(|g| *g = 0.0);
            let (hidden_g, rest) = gradient.split_at_mut(units * dims);
            let (bias_g, rest) = rest.split_at_mut(units);
            let (output_g, output_bias_g) = rest.split_at_mut(units);
            for (row, &label) in rows.iter().zip(labels) {
                let mut z = model.output_bias;
                for (j, (weights, bias)) in model.hidden.iter().zip(&model.hidden_bias).enumerate()
                {
                    pre[j] = dot(weights, row) + bias;
                    z += model.output[j] * pre[j].max(0.0);
                }
                let weight = if label {
                    n / (2.0 * positives)
                } else {
                    n / (2.0 * negatives)
                };
                let error = (sigmoid(z) - f64::from(u8::from(label))) * weight / n;
                output_bias_g[0] += error;
                for j in 0..units {
                    if pre[j] <= 0.0 {
                        continue;
                    }
                    output_g[j] += error * pre[j];
                    let back = error * model.output[j];
                    bias_g[j] += back;
                    for (g, x) in hidden_g[j * dims..(j + 1) * dims].iter_mut().zip(row) {
                        *g += back * x;
                    }
                }
            }
            for (j, weights) in model.hidden.iter().enumerate() {
                for (g, w) in hidden_g[j * dims..(j + 1) * dims].iter_mut().zip(weights) {
                    *g += options.l2 * w;
                }
            }
            for (g, w) in output_g.iter_mut().zip(&model.output) {
                *g += options.l2 * w;
            }
            let mut params = model
                .hidden
                .iter_mut()
                .flatten()
                .chain(model.hidden_bias.iter_mut())
                .chain(model.output.iter_mut())
                .chain(std::iter::once(&mut model.output_bias));
            adam.step(&mut params, &gradient, options.rate);
        }
        model
    }
}

/// Adam's moment estimates (Kingma and Ba), one per parameter.
struct Adam {
    first: Vec<f64>,
    second: Vec<f64>,
    steps: i32,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;

    fn new(parameters: usize) -> Adam {
        Adam {
            first: vec![0.0; parameters],
            second: vec![0.0; parameters],
            steps: 0,
        }
    }

    fn step<'a>(
        &mut self,
        params: &mut impl Iterator<Item = &'a mut f64>,
        gradient: &[f64],
        rate: f64,
    ) {
        self.steps += 1;
        let (c1, c2) = (
            1.0 - Self::BETA1.powi(self.steps),
            1.0 - Self::BETA2.powi(self.steps),
        );
        for (((p, g), m), v) in params
            .zip(gradient)
            .zip(&mut self.first)
            .zip(&mut self.second)
        {
            *m = Self::BETA1 * *m + (1.0 - Self::BETA1) * g;
            *v = Self::BETA2 * *v + (1.0 - Self::BETA2) * g * g;
            *p -= rate * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
        }
    }
}

/// The input guard's classifier on embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingClassifier {
    Mlp(Mlp),
    Logistic(Logistic),
}

impl EmbeddingClassifier {
    /// The length of the embeddings it reads.
    pub fn dimensions(&self) -> usize {
        match self {
            EmbeddingClassifier::Mlp(mlp) => mlp.hidden.first().map_or(0, Vec::len),
            EmbeddingClassifier::Logistic(logistic) => logistic.weights.len(),
        }
    }

    pub fn probability(&self, features: &[f64]) -> f64 {
        match self {
            EmbeddingClassifier::Mlp(mlp) => mlp.probability(features),
            EmbeddingClassifier::Logistic(logistic) => logistic.probability(features),
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `ln(p / (1 - p))`, with p kept off 0 and 1 so the result is finite.
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// The stored classifier and the rule the input guard serves: a request is blocked when the harm
/// classifier's probability passes `threshold`, or when the jailbreak classifier's passes its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustModel {
    /// The embedding model the classifiers were trained on; the guard refuses another.
    pub embedding_model: String,
    /// The harm classifier: harmful against benign requests.
    pub embedding: EmbeddingClassifier,
    /// Blocks a request whose harm probability is above it. Set by `tandem eval trust` so that
    /// the 95% Wilson upper bound of the served false-positive rate (either classifier firing) on
    /// the benign training prompts, out of fold, is at most `budget`.
    pub threshold: f64,
    /// The false-positive budget that set `threshold`.
    pub budget: f64,
    /// Items of each training set, for the record.
    pub trained_on: Vec<(String, usize)>,
    /// Blocks jailbreak prompts on its own.
    pub jailbreak: JailbreakClassifier,
}

/// A classifier of jailbreak prompts (known templates, bare and filled with harmful behaviours)
/// against benign prompts, on the same embeddings, and the threshold at which it blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JailbreakClassifier {
    pub classifier: EmbeddingClassifier,
    /// Set on out-of-fold probabilities of the benign training prompts, at `budget`.
    pub threshold: f64,
    /// The share of benign training prompts allowed over the threshold.
    pub budget: f64,
}

impl JailbreakClassifier {
    /// The probability that the embedded prompt is a jailbreak, and whether it passes the
    /// threshold.
    pub fn judge(&self, embedding: &[f64]) -> (f64, bool) {
        let p = self.classifier.probability(embedding);
        (p, p > self.threshold)
    }
}

/// The served rule's reading of one embedded request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputDecision {
    /// The harm classifier's probability, and whether it passed [`TrustModel::threshold`].
    pub harmful: f64,
    pub harmful_fires: bool,
    /// The jailbreak classifier's probability, and whether it passed its threshold.
    pub jailbreak: f64,
    pub jailbreak_fires: bool,
}

impl InputDecision {
    pub fn blocks(&self) -> bool {
        self.harmful_fires || self.jailbreak_fires
    }
}

impl TrustModel {
    /// The served rule on one request's embedding.
    pub fn decide(&self, embedding: &[f64]) -> InputDecision {
        let harmful = self.embedding.probability(embedding);
        let (jailbreak, jailbreak_fires) = self.jailbreak.judge(embedding);
        InputDecision {
            harmful,
            harmful_fires: harmful > self.threshold,
            jailbreak,
            jailbreak_fires,
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        save_json(self, path)
    }

    /// Reads a file written by `tandem eval trust`; one written before the served threshold was
    /// stored in it is refused with a message that says so.
    pub fn load(path: &Path) -> Result<TrustModel, TrustError> {
        load_json(path).map_err(|e| match e {
            TrustError::File { path, message } if message.contains("missing field") => {
                TrustError::File {
                    path,
                    message: format!(
                        "{message}: this classifier was written by an earlier `tandem eval trust`, \
                         which stored no served threshold; run `tandem eval trust` again"
                    ),
                }
            }
            other => other,
        })
    }
}

/// The lowest threshold on `benign` scores (a request is flagged above it) at which the 95% Wilson
/// upper bound of the share of benign requests flagged, by their score or already (`flagged`,
/// e.g. by another classifier), stays at most `budget`. A bound on held-out data rather than the
/// empirical rate: a threshold at the empirical quantile exceeds the budget on new data about
/// half the time. 1 (nothing flagged by score) when no threshold keeps the bound.
pub fn bounded_threshold(benign: &[f64], flagged: &[bool], budget: f64) -> f64 {
    let n = benign.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| benign[b].total_cmp(&benign[a]));
    let mut count = flagged.iter().filter(|&&f| f).count();
    // Above every score nothing is flagged by score; the bound grows with the count, so when the
    // others alone break it the loop stops at once.
    let mut threshold = order.first().map_or(1.0, |&i| benign[i].max(1.0));
    let mut i = 0;
    while i < n {
        // Lowering the threshold under this score flags every request that has it.
        let score = benign[order[i]];
        let mut j = i;
        let mut added = 0;
        while j < n && benign[order[j]] == score {
            added += usize::from(!flagged[order[j]]);
            j += 1;
        }
        if wilson(count + added, n).1 > budget {
            break;
        }
        count += added;
        threshold = order.get(j).map_or(score - 1.0, |&k| benign[k]);
        i = j;
    }
    threshold
}

pub fn nearest_similarity(templates: &[Vec<f32>], embedding: &[f32]) -> f64 {
    templates
        .iter()
        .map(|t| {
            t.iter()
                .zip(embedding)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum::<f64>()
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_regression_separates_separable_points() {
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![f64::from(i) / 10.0 - 2.0, 1.0])
            .collect();
        let labels: Vec<bool> = (0..40).map(|i| i >= 20).collect();
        let model = Logistic::fit(&rows, &labels, 1e-4, 2000, 1.0);
        for (row, &label) in rows.iter().zip(&labels) {
            assert_eq!(model.probability(row) >= 0.5, label, "{row:?}");
        }
    }

    #[test]
    fn the_perceptron_learns_what_a_line_cannot() {
        // XOR of the signs of two coordinates: no logistic regression separates it.
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let x = f64::from(i % 20) / 10.0 - 0.95;
                let y = f64::from(i / 20) / 5.0 - 0.9;
                vec![x, y]
            })
            .collect();
        let labels: Vec<bool> = rows.iter().map(|r| (r[0] > 0.0) != (r[1] > 0.0)).collect();
        let accuracy = |p: &dyn Fn(&[f64]) -> f64| {
            rows.iter()
                .zip(&labels)
                .filter(|(r, &l)| (p(r) >= 0.5) == l)
                .count() as f64
                / rows.len() as f64
        };
        let line = Logistic::fit(&rows, &labels, 1e-4, 2000, 1.0);
        let options = MlpOptions {
            hidden: 16,
            epochs: 2000,
            rate: 0.02,
            ..MlpOptions::default()
        };
        let mlp = Mlp::fit(&rows, &labels, options);
        assert!(accuracy(&|r| line.probability(r)) < 0.8);
        let got = accuracy(&|r| mlp.probability(r));
        assert!(
            got > 0.95,
            "{got} vs line {}",
            accuracy(&|r| line.probability(r))
        );
        assert_eq!(
            Mlp::fit(&rows, &labels, options),
            mlp,
            "a fit is reproducible"
        );
    }

    #[test]
    fn a_file_from_before_the_served_threshold_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        std::fs::write(&path, r#"{"embedding_model":"e","guard_model":"g","embedding":{"weights":[1.0],"bias":0.0},"combiner":{"weights":[1.0,1.0,1.0],"bias":0.0},"templates":[],"trained_on":[]}"#).unwrap();
        let error = TrustModel::load(&path).unwrap_err().to_string();
        assert!(error.contains("old.json"), "{error}");
        assert!(error.contains("run `tandem eval trust` again"), "{error}");
    }

    #[test]
    fn a_stored_model_reads_back_equal_and_decides_by_either_classifier() {
        let model = TrustModel {
            embedding_model: "e".into(),
            embedding: EmbeddingClassifier::Logistic(Logistic {
                weights: vec![0.0, 4.0],
                bias: 0.0,
            }),
            threshold: 0.9,
            budget: 0.05,
            trained_on: vec![("advbench".into(), 3)],
            jailbreak: JailbreakClassifier {
                classifier: EmbeddingClassifier::Logistic(Logistic {
                    weights: vec![2.0, 0.0],
                    bias: 0.0,
                }),
                threshold: 0.7,
                budget: 0.01,
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        model.save(&path).unwrap();
        assert_eq!(TrustModel::load(&path).unwrap(), model);
        // sigmoid(2 * 0.6) = 0.769 passes the jailbreak threshold 0.7; sigmoid(4 * 0.8) = 0.961
        // passes the harm threshold 0.9.
        let both = model.decide(&[0.6, 0.8]);
        assert!(
            (both.jailbreak - 0.768_524_783_499_018).abs() < 1e-6,
            "{both:?}"
        );
        assert!(both.jailbreak_fires && both.harmful_fires && both.blocks());
        let harm_only = model.decide(&[0.3, 0.95]);
        assert!(harm_only.harmful_fires && !harm_only.jailbreak_fires && harm_only.blocks());
        let jailbreak_only = model.decide(&[0.6, 0.1]);
        assert!(!jailbreak_only.harmful_fires && jailbreak_only.blocks());
        assert!(!model.decide(&[0.1, 0.1]).blocks());
        let missing = TrustModel::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(missing.to_string().contains("nope.json"));
    }

    /// The most benign requests that may be flagged in `n` with the bound kept, by brute force.
    fn most_flagged(n: usize, budget: f64) -> usize {
        (0..=n)
            .take_while(|&k| wilson(k, n).1 <= budget)
            .last()
            .unwrap()
    }

    #[test]
    fn the_bounded_threshold_flags_as_many_as_the_bound_allows_and_fewer_than_the_budget() {
        let scores: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        let none = vec![false; scores.len()];
        let t = bounded_threshold(&scores, &none, 0.05);
        let flagged = scores.iter().filter(|&&s| s > t).count();
        assert_eq!(flagged, most_flagged(1000, 0.05));
        assert!(flagged < 50 && flagged > 30, "{flagged}");

        // Requests another classifier flags already use up the budget first, whatever their score.
        let other: Vec<bool> = (0..1000).map(|i| i < 20).collect();
        let t = bounded_threshold(&scores, &other, 0.05);
        let union = (0..1000).filter(|&i| scores[i] > t || other[i]).count();
        assert_eq!(union, most_flagged(1000, 0.05));

        // Tied scores are flagged together or not at all.
        let tied = vec![0.5; 100];
        let t = bounded_threshold(&tied, &[false; 100], 0.05);
        assert!(tied.iter().all(|&s| s <= t));
        // Nothing can be flagged when the others already break the bound.
        let t = bounded_threshold(&scores, &vec![true; 1000], 0.05);
        assert!(scores.iter().all(|&s| s <= t));
    }
}
