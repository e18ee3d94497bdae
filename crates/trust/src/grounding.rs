//! Grounding a claim in its context without a model, and the fitted combination of that with the
//! verifier's probability.
//!
//! - [`unsupported_words`]: the claim's content words (lower-cased word characters, function words
//!   left out) that occur neither in the context nor in the question. A claim that names a year,
//!   a person or a place the context never mentions asserts something the context cannot support;
//!   a claim that restates the question and the context asserts nothing new.
//! - [`GroundingModel`]: a logistic regression over the verifier's P(supported) (as a logit) and
//!   `ln(1 + unsupported words)`, fitted by `tandem eval trust --verify` on the fit part of
//!   HaluEval QA and stored as JSON for the verify stage's `grounding` key. Its weights are
//!   those of one verifier's probabilities and of one kind of answer: HaluEval's right answers
//!   are short spans of the knowledge, so a fitted model punishes every unsupported word hard,
//!   which a paraphrasing answerer would feel. The README says so beside the measurements.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classifier::{logit, Logistic};
use crate::error::{load_json, save_json, TrustError};

/// English function words: never counted as content, whether or not the context has them.
const FUNCTION_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "between", "both", "but", "by", "can", "could", "did",
    "do", "does", "during", "each", "either", "for", "from", "had", "has", "have", "he", "her",
    "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "me", "more", "most", "my", "no", "nor", "not", "of", "on", "one", "only", "or",
    "other", "our", "out", "over", "own", "s", "same", "she", "should", "so", "some", "such", "t",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "us", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "whose", "why", "will", "with", "would",
    "yes", "you", "your",
];

/// The words of `text`: maximal runs of alphanumeric characters, lower-cased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The distinct content words of `claim` (first occurrence order) that none of `sources` holds
/// as a word.
pub fn unsupported_words(claim: &str, sources: &[&str]) -> Vec<String> {
    let known: HashSet<String> = sources.iter().flat_map(|s| words(s)).collect();
    let mut seen = HashSet::new();
    words(claim)
        .filter(|w| !FUNCTION_WORDS.contains(&w.as_str()) && !known.contains(w))
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

/// How many [`features`] the combiner weighs.
const FEATURES: usize = 2;

/// The combiner's features: [logit(verifier's P(supported)), ln(1 + unsupported words)].
pub fn features(model_probability: f64, unsupported: usize) -> Vec<f64> {
    vec![logit(model_probability), (unsupported as f64).ln_1p()]
}

/// A fitted combination of the verifier's probability and the unsupported words (see the module
/// documentation), stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundingModel {
    /// The verifier whose probabilities the weights were fitted to; the verify stage refuses
    /// another.
    pub verifier: String,
    /// Weights of [`features`].
    pub combiner: Logistic,
    /// What it was fitted on, for the record.
    pub fitted_on: String,
}

impl GroundingModel {
    /// P(supported) of a claim from the verifier's probability and its unsupported words.
    pub fn probability(&self, model_probability: f64, unsupported: usize) -> f64 {
        self.combiner
            .probability(&features(model_probability, unsupported))
    }

    /// Fits the combiner on labelled claims: (verifier's probability, unsupported words,
    /// supported?).
    pub fn fit(verifier: &str, fitted_on: &str, claims: &[(f64, usize, bool)]) -> GroundingModel {
        let rows: Vec<Vec<f64>> = claims.iter().map(|&(p, u, _)| features(p, u)).collect();
        let labels: Vec<bool> = claims.iter().map(|c| c.2).collect();
        GroundingModel {
            verifier: verifier.to_string(),
            combiner: Logistic::fit(&rows, &labels, 1e-4, 3000, 1.0),
            fitted_on: fitted_on.to_string(),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        save_json(self, path)
    }

    /// Reads a model written by [`Self::save`]; refuses one whose combiner does not weigh
    /// exactly the two [`features`].
    pub fn load(path: &Path) -> Result<GroundingModel, TrustError> {
        let model: GroundingModel = load_json(path)?;
        let weights = model.combiner.weights.len();
        if weights != FEATURES {
            return Err(TrustError::File {
                path: path.display().to_string(),
                message: format!("the combiner has {weights} weights, not {FEATURES}"),
            });
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_words_are_the_claims_new_content_words() {
        let context = "The Danish Girl is a 2015 film based on the 2000 novel by David Ebershoff.";
        let question = "In what year was the novel released?";
        assert_eq!(
            unsupported_words("The novel was released in 2000.", &[context, question]),
            Vec::<String>::new(),
            "restating the question with a value of the context asserts nothing new"
        );
        assert_eq!(
            unsupported_words(
                "2003, three years after the film, and 2003 again.",
                &[context, question]
            ),
            ["2003", "three", "years", "again"],
            "each new word once, in order; function words never count"
        );
        assert_eq!(
            unsupported_words("EBERSHOFF wrote it", &[context]),
            ["wrote"],
            "case is ignored"
        );
        // Words are whole: "Dan" is not in "Danish".
        assert_eq!(unsupported_words("Dan", &[context]), ["dan"]);
        assert_eq!(unsupported_words("Zoë in Zürich", &["zoë"]), ["zürich"]);
    }

    #[test]
    fn a_fitted_model_learns_that_unsupported_words_mean_unsupported() {
        // The verifier's probability is uninformative (0.6 everywhere); the words decide.
        let claims: Vec<(f64, usize, bool)> = (0..40)
            .map(|i| (0.6, if i % 2 == 0 { 0 } else { 1 + i % 3 }, i % 2 == 0))
            .collect();
        let model = GroundingModel::fit("v", "test", &claims);
        assert!(model.probability(0.6, 0) > 0.5);
        assert!(model.probability(0.6, 1) < 0.5);
        assert!(model.probability(0.6, 3) < model.probability(0.6, 1));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        model.save(&path).unwrap();
        assert_eq!(GroundingModel::load(&path).unwrap(), model);
        let error = GroundingModel::load(&dir.path().join("none.json")).unwrap_err();
        assert!(error.to_string().contains("none.json"));
        // A file whose combiner weighs another number of features is refused, not half-applied.
        let mut three = model.clone();
        three.combiner.weights.push(1.0);
        three.save(&path).unwrap();
        let error = GroundingModel::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("3 weights, not 2") && error.contains("g.json"),
            "{error}"
        );
    }
}
