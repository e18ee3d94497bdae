//! The crate's errors.

use tandem_core::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("invalid guard policy: {0}")]
    Policy(String),
    #[error("the classifier does not fit the embedder: {0}")]
    Incompatible(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Embed(#[from] tandem_embed::EmbedError),
    #[error(transparent)]
    Fetch(#[from] tandem_fetch::FetchError),
    #[error("cannot read {what}: {message}")]
    Data { what: String, message: String },
    #[error("classifier file {path}: {message}")]
    Classifier { path: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
