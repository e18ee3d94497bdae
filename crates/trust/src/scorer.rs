//! [`InputScorer`]: the input guard's score when a trained [`TrustModel`] is configured: the
//! guard model's probability, the embedding classifier's and the nearest jailbreak template's
//! similarity, combined by the model's stacked regression; and, when the model has one, the
//! jailbreak classifier, which blocks on its own.

use std::sync::Arc;

use tandem_core::ModelError;
use tandem_embed::Embedder;

use crate::classifier::TrustModel;
use crate::error::TrustError;
use crate::judge::{Judge, Judgement};
use crate::policy::Side;
use crate::verdict::JAILBREAK_CATEGORY;

pub struct InputScorer {
    embedder: Arc<Embedder>,
    model: TrustModel,
}

impl InputScorer {
    /// Refuses a model trained on vectors of another size than the embedder's.
    pub fn new(embedder: Arc<Embedder>, model: TrustModel) -> Result<Self, TrustError> {
        if model.embedding.dimensions() != embedder.dimensions() {
            return Err(TrustError::Incompatible(format!(
                "it was trained on {}-dimensional vectors of `{}`, the embedder gives {}",
                model.embedding.dimensions(),
                model.embedding_model,
                embedder.dimensions()
            )));
        }
        if let Some(jailbreak) = &model.jailbreak {
            if jailbreak.classifier.dimensions() != embedder.dimensions() {
                return Err(TrustError::Incompatible(format!(
                    "its jailbreak classifier reads {}-dimensional vectors, the embedder gives {}",
                    jailbreak.classifier.dimensions(),
                    embedder.dimensions()
                )));
            }
        }
        Ok(InputScorer { embedder, model })
    }

    pub async fn judge(&self, judge: &Judge, text: &str) -> Result<Judgement, ModelError> {
        let (model_score, report) = judge.model_score(Side::Input, text, None).await?;
        let embedder = Arc::clone(&self.embedder);
        let owned = text.to_string();
        let embedding = tokio::task::spawn_blocking(move || embedder.embed(&[owned]))
            .await
            .map_err(|e| ModelError::Internal(format!("the embedder stopped: {e}")))?
            .map_err(|e| ModelError::Internal(format!("cannot embed the request: {e}")))?;
        let vector = &embedding.vectors[0];
        let score = self.model.combine(
            self.model.embedding_probability(vector),
            model_score,
            self.model.template_similarity(vector),
        );
        let mut judgement = judge
            .decide(
                Side::Input,
                text,
                None,
                score,
                Some(model_score),
                vec![report],
            )
            .await?;
        if let Some((probability, fires)) = self.model.jailbreak(vector) {
            let verdict = &mut judgement.verdict;
            verdict.jailbreak = Some(probability);
            if fires && !verdict.blocked {
                verdict.blocked = true;
                verdict.category = Some(JAILBREAK_CATEGORY.to_string());
                verdict.category_probability = None;
            }
        }
        Ok(judgement)
    }
}
