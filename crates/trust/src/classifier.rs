//! The trained part of the input guard: logistic regression on sentence embeddings
//! (all-MiniLM-L6-v2), and a three-weight combiner that stacks its probability with the guard
//! model's and the similarity to the nearest known jailbreak template.
//!
//! Trained by `tandem trust train` on the training split of the public harmful and benign sets
//! (see [`crate::data`]) and stored as one JSON file that the guard's configuration names.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TrustError;

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
    pub embedding: Logistic,
    /// Weights of [logit(embedding probability), logit(guard model probability), template
    /// similarity].
    pub combiner: Logistic,
    /// Unit-length embeddings of the known jailbreak templates.
    pub templates: Vec<Vec<f32>>,
    /// Items of each training set, for the record.
    pub trained_on: Vec<(String, usize)>,
}

impl TrustModel {
    /// The embedding regression's probability that a prompt is harmful.
    pub fn embedding_probability(&self, embedding: &[f32]) -> f64 {
        let row: Vec<f64> = embedding.iter().map(|&x| f64::from(x)).collect();
        self.embedding.probability(&row)
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
        let text = serde_json::to_string(self).map_err(|e| classifier_error(path, e))?;
        std::fs::write(path, text).map_err(|e| classifier_error(path, e))
    }

    pub fn load(path: &Path) -> Result<TrustModel, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| classifier_error(path, e))?;
        serde_json::from_str(&text).map_err(|e| classifier_error(path, e))
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

fn classifier_error(path: &Path, e: impl std::fmt::Display) -> TrustError {
    TrustError::Classifier {
        path: path.display().to_string(),
        message: e.to_string(),
    }
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
    fn a_stored_model_reads_back_equal() {
        let model = TrustModel {
            embedding_model: "e".into(),
            guard_model: "g".into(),
            embedding: Logistic {
                weights: vec![0.5, -1.0],
                bias: 0.1,
            },
            combiner: Logistic {
                weights: vec![1.0, 1.0, 2.0],
                bias: -1.0,
            },
            templates: vec![vec![1.0, 0.0]],
            trained_on: vec![("advbench".into(), 3)],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        model.save(&path).unwrap();
        assert_eq!(TrustModel::load(&path).unwrap(), model);
        assert!((model.template_similarity(&[0.6, 0.8]) - 0.6).abs() < 1e-6);
        let missing = TrustModel::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(missing.to_string().contains("nope.json"));
    }
}
