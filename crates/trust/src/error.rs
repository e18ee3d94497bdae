//! The crate's errors, and the JSON files its fitted models are kept in.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
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
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes a fitted model (a classifier, a calibration map, a grounding model) as JSON.
pub(crate) fn save_json<T: Serialize>(value: &T, path: &Path) -> Result<(), TrustError> {
    let text = serde_json::to_string(value).map_err(|e| file_error(path, e))?;
    std::fs::write(path, text).map_err(|e| file_error(path, e))
}

/// Reads a fitted model written by [`save_json`].
pub(crate) fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, TrustError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| file_error(path, e))
}

pub(crate) fn file_error(path: &Path, e: impl std::fmt::Display) -> TrustError {
    TrustError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
