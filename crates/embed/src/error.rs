//! Everything that can go wrong loading a model or embedding text.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The directory describes a model this crate would embed wrongly, so it refuses it.
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("cannot load the tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot load the weights {path}: {source}")]
    Weights {
        path: PathBuf,
        source: candle_core::Error,
    },
    #[error(transparent)]
    Fetch(#[from] tandem_fetch::FetchError),
    #[error("there is no text to embed")]
    NoInput,
    #[error("text {index} is empty; every text to embed needs at least one character")]
    EmptyText { index: usize },
    #[error("tokenizing text {index} failed: {message}")]
    Tokenize { index: usize, message: String },
    #[error("running the model failed: {0}")]
    Model(#[from] candle_core::Error),
}
