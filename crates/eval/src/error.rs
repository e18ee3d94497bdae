//! [`EvalError`]: every way the harness itself can fail (as opposed to a model failing an item,
//! which is an outcome, not an error). Each variant says what failed and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Fetch(#[from] tandem_fetch::FetchError),
    #[error("I/O error at {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("outcome store {}: {source}", .path.display())]
    Store {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("dataset `{dataset}`: {message}")]
    Dataset { dataset: String, message: String },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    /// A helper program (python, pip, unshare) could not be started or failed.
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    /// The sandbox itself could not be set up (not the sandboxed code failing).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A report was asked for a selection the store has no outcomes for.
    #[error("no outcomes in {} for this selection; `tandem eval run` stores them", .store.display())]
    NoOutcomes { store: PathBuf },
    #[error("plot {}: {message}", .path.display())]
    Plot { path: PathBuf, message: String },
}

impl EvalError {
    /// An [`EvalError::Io`] for `path`, for use with `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.into();
        move |source| EvalError::Io { path, source }
    }

    pub(crate) fn dataset(dataset: &str, message: impl Into<String>) -> EvalError {
        EvalError::Dataset {
            dataset: dataset.to_string(),
            message: message.into(),
        }
    }
}
