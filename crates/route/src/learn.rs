//! Routers learned from stored outcomes: which prompts the large model is needed for.
//!
//! An [`Example`] is one prompt's sentence embedding with its label: 1 when routing it to the large
//! model pays (the small model failed it and the large one passed), else 0. A [`LearnedRouter`]
//! predicts that label's probability for a new embedding:
//!
//! - `knn`: the similarity-weighted mean label of the `k` most similar training prompts (cosine
//!   similarity of normalised embeddings, negative similarities count as zero);
//! - `logistic`: logistic regression on the embedding, fitted by full-batch gradient descent with
//!   L2 regularisation (the data sets here have hundreds of prompts, so this takes milliseconds).

use serde::{Deserialize, Serialize};

/// One training prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub embedding: Vec<f32>,
    /// 1.0 when the large model should answer this prompt, else 0.0.
    pub label: f32,
}

/// Which learner to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Learner {
    Knn,
    Logistic,
}

/// A fitted router: everything needed to score a prompt's embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LearnedRouter {
    Knn { k: usize, examples: Vec<Example> },
    Logistic { weights: Vec<f32>, bias: f32 },
}

/// Neighbours the `knn` router weighs.
pub const DEFAULT_K: usize = 10;
const LOGISTIC_STEPS: usize = 2_000;
const LOGISTIC_RATE: f32 = 0.5;
const LOGISTIC_L2: f32 = 1e-3;

impl LearnedRouter {
    /// Fits `learner` to `examples`. All embeddings must have one length.
    pub fn fit(learner: Learner, examples: &[Example]) -> Result<LearnedRouter, String> {
        let Some(first) = examples.first() else {
            return Err("no training examples".into());
        };
        let dims = first.embedding.len();
        if let Some(bad) = examples.iter().find(|e| e.embedding.len() != dims) {
            return Err(format!(
                "embeddings differ in length ({dims} and {})",
                bad.embedding.len()
            ));
        }
        Ok(match learner {
            Learner::Knn => LearnedRouter::Knn {
                k: DEFAULT_K.min(examples.len()),
                examples: examples
                    .iter()
                    .map(|e| Example {
                        embedding: normalised(&e.embedding),
                        label: e.label,
                    })
                    .collect(),
            },
            Learner::Logistic => fit_logistic(examples, dims),
        })
    }

    /// The probability that the large model is needed for a prompt with this embedding.
    pub fn predict(&self, embedding: &[f32]) -> f64 {
        match self {
            LearnedRouter::Knn { k, examples } => {
                let query = normalised(embedding);
                let mut scored: Vec<(f32, f32)> = examples
                    .iter()
                    .map(|e| (dot(&query, &e.embedding), e.label))
                    .collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                let (mut weighted, mut total) = (0.0f64, 0.0f64);
                for &(similarity, label) in scored.iter().take(*k) {
                    let weight = f64::from(similarity.max(0.0));
                    weighted += weight * f64::from(label);
                    total += weight;
                }
                if total == 0.0 {
                    // No similar prompt: the training base rate.
                    let n = examples.len().max(1) as f64;
                    examples.iter().map(|e| f64::from(e.label)).sum::<f64>() / n
                } else {
                    weighted / total
                }
            }
            LearnedRouter::Logistic { weights, bias } => {
                f64::from(sigmoid(dot(weights, embedding) + bias))
            }
        }
    }
}

fn fit_logistic(examples: &[Example], dims: usize) -> LearnedRouter {
    let mut weights = vec![0.0f32; dims];
    let mut bias = 0.0f32;
    let n = examples.len() as f32;
    let mut gradient = vec![0.0f32; dims];
    for _ in 0..LOGISTIC_STEPS {
        gradient.iter_mut().for_each(|g| *g = 0.0);
        let mut bias_gradient = 0.0f32;
        for example in examples {
            let error = sigmoid(dot(&weights, &example.embedding) + bias) - example.label;
            for (g, x) in gradient.iter_mut().zip(&example.embedding) {
                *g += error * x;
            }
            bias_gradient += error;
        }
        for (w, g) in weights.iter_mut().zip(&gradient) {
            *w -= LOGISTIC_RATE * (g / n + LOGISTIC_L2 * *w);
        }
        bias -= LOGISTIC_RATE * bias_gradient / n;
    }
    LearnedRouter::Logistic { weights, bias }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(embedding: &[f32], label: f32) -> Example {
        Example {
            embedding: embedding.to_vec(),
            label,
        }
    }

    #[test]
    fn knn_weighs_the_most_similar_prompts() {
        let examples = [
            example(&[1.0, 0.0], 1.0),
            example(&[0.9, 0.1], 1.0),
            example(&[0.0, 1.0], 0.0),
            example(&[0.1, 0.9], 0.0),
        ];
        let mut router = LearnedRouter::fit(Learner::Knn, &examples).unwrap();
        if let LearnedRouter::Knn { k, .. } = &mut router {
            *k = 2;
        }
        assert!(router.predict(&[2.0, 0.1]) > 0.99);
        assert!(router.predict(&[0.05, 1.0]) < 0.01);
        // Opposite of everything: no positive similarity, so the base rate.
        assert!((router.predict(&[-1.0, -1.0]) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn logistic_regression_separates_a_separable_set() {
        let examples: Vec<Example> = (0..40)
            .map(|i| {
                let x = i as f32 / 40.0;
                example(&[x, 1.0 - x], if x > 0.5 { 1.0 } else { 0.0 })
            })
            .collect();
        let router = LearnedRouter::fit(Learner::Logistic, &examples).unwrap();
        assert!(router.predict(&[0.95, 0.05]) > 0.8);
        assert!(router.predict(&[0.05, 0.95]) < 0.2);
    }

    #[test]
    fn bad_training_sets_are_refused() {
        assert!(LearnedRouter::fit(Learner::Knn, &[]).is_err());
        let mixed = [example(&[1.0], 1.0), example(&[1.0, 2.0], 0.0)];
        assert!(LearnedRouter::fit(Learner::Logistic, &mixed)
            .unwrap_err()
            .contains("differ in length"));
    }
}
