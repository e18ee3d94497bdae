//! The trained part of the input guard: a classifier on sentence embeddings (all-MiniLM-L6-v2): a
//! perceptron with one hidden layer ([`Mlp`]; files written before it hold a [`Logistic`]
//! regression, still read), and a three-weight combiner that stacks its probability with the
//! guard model's and the similarity to the nearest known jailbreak template; and a second
//! perceptron that tells jailbreak prompts from benign ones ([`JailbreakClassifier`]), which blocks
//! on its own at a threshold fitted to a false-positive budget.
//!
//! Trained by `tandem eval trust` on the training split of the public harmful and benign sets
//! (see [`crate::data`]) and stored as one JSON file that the guard's configuration names.

use std::path::Path;

use serde::{Deserialize, Serialize};

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

/// The stored classifier: the embedding regression, the combiner, and the templates' embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustModel {
    /// The embedding model the regression was trained on; the guard refuses another.
    pub embedding_model: String,
    /// The guard model whose probabilities the combiner was fitted to.
    pub guard_model: String,
    pub embedding: EmbeddingClassifier,
    /// Weights of [logit(embedding probability), logit(guard model probability), template
    /// similarity].
    pub combiner: Logistic,
    /// Unit-length embeddings of the known jailbreak templates.
    pub templates: Vec<Vec<f32>>,
    /// Items of each training set, for the record.
    pub trained_on: Vec<(String, usize)>,
    /// Blocks jailbreak prompts on its own; files written before it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailbreak: Option<JailbreakClassifier>,
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

impl TrustModel {
    /// The embedding classifier's probability that a prompt is harmful.
    pub fn embedding_probability(&self, embedding: &[f32]) -> f64 {
        let row: Vec<f64> = embedding.iter().map(|&x| f64::from(x)).collect();
        self.embedding.probability(&row)
    }

    /// The jailbreak classifier's probability, and whether it reaches its threshold; `None` when
    /// the model has no jailbreak classifier.
    pub fn jailbreak(&self, embedding: &[f32]) -> Option<(f64, bool)> {
        let row: Vec<f64> = embedding.iter().map(|&x| f64::from(x)).collect();
        Some(self.jailbreak.as_ref()?.judge(&row))
    }

    /// Cosine similarity to the nearest template (embeddings are unit length); 0 without templates.
    pub fn template_similarity(&self, embedding: &[f32]) -> f64 {
        nearest_similarity(&self.templates, embedding)
    }

    /// The combined probability that a prompt should be blocked.
    pub fn combine(
        &self,
        embedding_probability: f64,
        model_probability: f64,
        similarity: f64,
    ) -> f64 {
        self.combiner.probability(&combiner_features(
            embedding_probability,
            model_probability,
            similarity,
        ))
    }

    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        save_json(self, path)
    }

    pub fn load(path: &Path) -> Result<TrustModel, TrustError> {
        load_json(path)
    }
}

pub fn combiner_features(
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
    fn a_file_with_a_logistic_embedding_classifier_still_reads() {
        let text = r#"{"embedding_model":"e","guard_model":"g","embedding":{"weights":[1.0],"bias":0.0},"combiner":{"weights":[1.0,1.0,1.0],"bias":0.0},"templates":[],"trained_on":[]}"#;
        let model: TrustModel = serde_json::from_str(text).unwrap();
        assert!(matches!(model.embedding, EmbeddingClassifier::Logistic(_)));
        assert!((model.embedding_probability(&[0.0]) - 0.5).abs() < 1e-12);
        assert!(model.jailbreak.is_none() && model.jailbreak(&[0.0]).is_none());
    }

    #[test]
    fn a_stored_model_reads_back_equal() {
        let model = TrustModel {
            embedding_model: "e".into(),
            guard_model: "g".into(),
            embedding: EmbeddingClassifier::Logistic(Logistic {
                weights: vec![0.5, -1.0],
                bias: 0.1,
            }),
            combiner: Logistic {
                weights: vec![1.0, 1.0, 2.0],
                bias: -1.0,
            },
            templates: vec![vec![1.0, 0.0]],
            trained_on: vec![("advbench".into(), 3)],
            jailbreak: Some(JailbreakClassifier {
                classifier: EmbeddingClassifier::Logistic(Logistic {
                    weights: vec![2.0, 0.0],
                    bias: 0.0,
                }),
                threshold: 0.7,
                budget: 0.01,
            }),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        model.save(&path).unwrap();
        assert_eq!(TrustModel::load(&path).unwrap(), model);
        assert!((model.template_similarity(&[0.6, 0.8]) - 0.6).abs() < 1e-6);
        // sigmoid(2 * 0.6) = 0.769 passes 0.7; sigmoid(2 * 0.3) = 0.646 does not.
        let (p, fires) = model.jailbreak(&[0.6, 0.8]).unwrap();
        assert!((p - 0.768_524_783_499_018).abs() < 1e-6 && fires, "{p}");
        assert!(!model.jailbreak(&[0.3, 0.95]).unwrap().1);
        let missing = TrustModel::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(missing.to_string().contains("nope.json"));
    }
}
