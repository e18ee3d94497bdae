//! What a sequence may generate next, beyond what its logits say: a grammar that keeps structured
//! output well-formed. The sampler ([`crate::sampling::Sampler`]) consults a [`Constraint`] before
//! it draws each token, so every token it returns is one the constraint allowed.
//!
//! Implementations live with the engine that can evaluate them (`tandem-llama` implements one
//! with llama.cpp's grammar sampler); [`crate::grammar`] writes the grammars.

use crate::model::TokenId;

/// A per-sequence limit on the next token.
pub trait Constraint: Send {
    /// Whether `token` may come next. Cheaper than [`Constraint::mask`] when the model's own
    /// choice is usually allowed, which is how the sampler uses it.
    fn allows(&mut self, token: TokenId) -> bool;
    /// Sets the logit of every token that may not come next to negative infinity.
    fn mask(&mut self, logits: &mut [f32]);
    /// Advances past `token`, which [`Constraint::allows`] or [`Constraint::mask`] allowed.
    fn accept(&mut self, token: TokenId);
}
