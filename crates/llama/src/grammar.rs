//! [`Constraint`] with llama.cpp's grammar sampler: the grammars of [`tandem_core::grammar`] and
//! [`tandem_core::tools`], evaluated against this model's vocabulary.

use std::sync::Arc;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use tandem_core::constraint::Constraint;
use tandem_core::{ModelError, TokenId};

use crate::LoadedModel;

pub(crate) struct GrammarConstraint {
    sampler: LlamaSampler,
    /// Every token with its logit, reused across masks.
    candidates: Vec<LlamaTokenData>,
    /// The sampler reads this model's vocabulary; declared after it, so dropped after it.
    _model: Arc<LoadedModel>,
}

impl GrammarConstraint {
    /// A constraint to `grammar` (GBNF, starting at `root`). A grammar llama.cpp cannot parse is
    /// an internal error: Tandem wrote it.
    pub(crate) fn new(model: &Arc<LoadedModel>, grammar: &str) -> Result<Self, ModelError> {
        let sampler = LlamaSampler::grammar(&model.model, grammar, "root").map_err(|e| {
            ModelError::Internal(format!(
                "llama.cpp rejected the output grammar ({e}): {grammar}"
            ))
        })?;
        Ok(GrammarConstraint {
            sampler,
            candidates: Vec::new(),
            _model: Arc::clone(model),
        })
    }
}

impl Constraint for GrammarConstraint {
    fn allows(&mut self, token: TokenId) -> bool {
        let mut one = LlamaTokenDataArray::new(
            vec![LlamaTokenData::new(LlamaToken(token), 0.0, 0.0)],
            false,
        );
        self.sampler.apply(&mut one);
        one.data[0].logit() != f32::NEG_INFINITY
    }

    fn mask(&mut self, logits: &mut [f32]) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        candidates.extend(
            logits
                .iter()
                .enumerate()
                .map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id as TokenId), logit, 0.0)),
        );
        let mut array = LlamaTokenDataArray::new(candidates, false);
        self.sampler.apply(&mut array);
        // The grammar sampler only lowers logits, in place.
        for candidate in &array.data {
            logits[candidate.id().0 as usize] = candidate.logit();
        }
        self.candidates = array.data;
    }

    fn accept(&mut self, token: TokenId) {
        self.sampler.accept(LlamaToken(token));
    }
}
