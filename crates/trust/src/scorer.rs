//! [`InputScorer`]: the input guard's verdict when a trained [`TrustModel`] is configured. The
//! model's rule decides (the harm classifier or the jailbreak classifier passing its threshold);
//! the guard model is asked only for the category of a request the harm classifier blocks, so an
//! allowed request costs one embedding and no model call.

use std::sync::Arc;

use tandem_core::ModelError;
use tandem_embed::Embedder;

use crate::classifier::TrustModel;
use crate::error::TrustError;
use crate::judge::{Judge, Judgement};
use crate::policy::Side;
use crate::verdict::{Verdict, JAILBREAK_CATEGORY};

pub struct InputScorer {
    embedder: Arc<Embedder>,
    model: TrustModel,
}

impl InputScorer {
    /// Refuses a model trained on vectors of another size than the embedder's.
    pub fn new(embedder: Arc<Embedder>, model: TrustModel) -> Result<Self, TrustError> {
        for (what, dimensions) in [
            ("harm classifier", model.embedding.dimensions()),
            (
                "jailbreak classifier",
                model.jailbreak.classifier.dimensions(),
            ),
        ] {
            if dimensions != embedder.dimensions() {
                return Err(TrustError::Incompatible(format!(
                    "its {what} reads {dimensions}-dimensional vectors of `{}`, the embedder gives {}",
                    model.embedding_model,
                    embedder.dimensions()
                )));
            }
        }
        Ok(InputScorer { embedder, model })
    }

    pub async fn judge(&self, judge: &Judge, text: &str) -> Result<Judgement, ModelError> {
        let embedder = Arc::clone(&self.embedder);
        let owned = text.to_string();
        let embedding = tokio::task::spawn_blocking(move || embedder.embed(&[owned]))
            .await
            .map_err(|e| ModelError::Internal(format!("the embedder stopped: {e}")))?
            .map_err(|e| ModelError::Internal(format!("cannot embed the request: {e}")))?;
        let vector: Vec<f64> = embedding.vectors[0].iter().map(|&x| f64::from(x)).collect();
        let decision = self.model.decide(&vector);
        let mut verdict = Verdict {
            score: decision.harmful,
            threshold: self.model.threshold,
            blocked: decision.blocks(),
            category: None,
            category_probability: None,
            jailbreak: Some(decision.jailbreak),
        };
        let mut reports = Vec::new();
        if decision.harmful_fires {
            reports.push(
                judge
                    .name_category(Side::Input, text, None, &mut verdict)
                    .await?,
            );
        } else if decision.jailbreak_fires {
            verdict.category = Some(JAILBREAK_CATEGORY.to_string());
        }
        Ok(Judgement { verdict, reports })
    }
}
