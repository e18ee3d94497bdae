//! Why a remote model could not be built. Failures of requests are [`tandem_core::ModelError`]s.

/// A configuration problem found by [`crate::RemoteModel::new`], naming the model and the setting.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote model `{upstream}`: the environment variable `{var}` that should hold its API key is not set or is empty")]
    MissingApiKey { upstream: String, var: String },
    #[error("remote model `{upstream}`: the API key in the environment variable `{var}` {reason}")]
    InvalidApiKey {
        upstream: String,
        var: String,
        reason: String,
    },
    #[error("remote model `{upstream}`: base_url `{url}` {reason}")]
    InvalidBaseUrl {
        upstream: String,
        url: String,
        reason: String,
    },
    #[error("remote model `{upstream}`: could not build the HTTP client: {source}")]
    Client {
        upstream: String,
        #[source]
        source: reqwest::Error,
    },
}
