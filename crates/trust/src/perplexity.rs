//! Prompt perplexity under the small model, the jailbreak signal NeMo Guardrails uses against
//! optimised adversarial suffixes: gibberish that steers a model is improbable text, so its
//! perplexity, and above all that of its last tokens, is high.
//!
//! The prompt is evaluated on a sequence handle of the engine (batched with everything else the
//! engine runs) by [`tandem_llama::SequenceHandle::token_losses`], in chunks.

use serde::Serialize;
use tandem_core::ModelError;
use tandem_llama::LlamaEngine;

/// Perplexities of one prompt: whole, first `window` tokens, last `window` tokens, and the
/// highest of any `window` tokens in a row (steps of half a window).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PromptPerplexity {
    pub tokens: usize,
    pub whole: f64,
    pub prefix: f64,
    pub suffix: f64,
    pub max_window: f64,
}

/// Measures `text` (cut to the engine's context) with windows of `window` tokens.
pub async fn prompt_perplexity(
    engine: &LlamaEngine,
    text: &str,
    window: usize,
) -> Result<PromptPerplexity, ModelError> {
    let mut handle = engine.open_sequence().await?;
    let mut tokens = handle.model().tokenize(text, true);
    tokens.truncate(handle.context_size());
    if tokens.len() < 2 {
        return Err(ModelError::invalid(
            "text",
            "perplexity needs a text of at least one token",
        ));
    }
    let losses = handle.token_losses(&tokens).await?;
    Ok(perplexities(&losses, window.max(1)))
}

/// The perplexities of a prompt from its tokens' losses (natural log).
pub fn perplexities(losses: &[f64], window: usize) -> PromptPerplexity {
    let mean_exp = |part: &[f64]| (part.iter().sum::<f64>() / part.len().max(1) as f64).exp();
    let window = window.min(losses.len()).max(1);
    let step = (window / 2).max(1);
    let mut max_window = mean_exp(&losses[losses.len() - window..]);
    let mut start = 0;
    while start + window <= losses.len() {
        max_window = max_window.max(mean_exp(&losses[start..start + window]));
        start += step;
    }
    PromptPerplexity {
        tokens: losses.len() + 1,
        whole: mean_exp(losses),
        prefix: mean_exp(&losses[..window]),
        suffix: mean_exp(&losses[losses.len() - window..]),
        max_window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_take_the_ends_and_the_worst_stretch() {
        let losses = [1.0, 1.0, 3.0, 3.0, 1.0, 1.0];
        let p = perplexities(&losses, 2);
        assert!((p.prefix - 1f64.exp()).abs() < 1e-9);
        assert!((p.suffix - 1f64.exp()).abs() < 1e-9);
        assert!((p.max_window - 3f64.exp()).abs() < 1e-9);
        assert!((p.whole - (10.0f64 / 6.0).exp()).abs() < 1e-9);
        assert_eq!(p.tokens, 7);
        let short = perplexities(&[2.0], 20);
        assert!((short.suffix - 2f64.exp()).abs() < 1e-9);
    }
}
