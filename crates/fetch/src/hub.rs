//! `hf:` model specs: a GGUF file in a Hugging Face-style hub repository.
//!
//! The spec is `hf:OWNER/REPO/FILE` with an optional `@REVISION` (branch, tag or commit; `main`
//! when absent). `FILE` may name a file in a subfolder (`hf:o/r/sub/model.gguf`) but may not contain
//! `@`. The file is served by the hub at `{hub_base}/OWNER/REPO/resolve/REVISION/FILE`.

use std::path::{Path, PathBuf};

use crate::FetchError;

/// A parsed `hf:OWNER/REPO/FILE[@REVISION]` spec.
///
/// ```
/// let spec = tandem_fetch::HubSpec::parse("hf:acme/tiny-GGUF/tiny.Q4_0.gguf@v2").unwrap();
/// assert_eq!(spec.url("https://huggingface.co"),
///            "https://huggingface.co/acme/tiny-GGUF/resolve/v2/tiny.Q4_0.gguf");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpec {
    pub owner: String,
    pub repo: String,
    /// Path of the file inside the repository, `/`-separated.
    pub file: String,
    /// `None` means the default branch, `main`.
    pub revision: Option<String>,
}

impl HubSpec {
    /// Parses a spec; the `hf:` prefix is required.
    pub fn parse(spec: &str) -> Result<HubSpec, FetchError> {
        let bad = |reason| FetchError::BadSpec {
            spec: spec.to_string(),
            reason,
        };
        let rest = spec
            .strip_prefix("hf:")
            .ok_or_else(|| bad("hub specs start with `hf:`"))?;
        let (path, revision) = match rest.split_once('@') {
            Some((path, revision)) => (path, Some(revision)),
            None => (rest, None),
        };
        let mut pieces = path.splitn(3, '/');
        let (Some(owner), Some(repo), Some(file)) = (pieces.next(), pieces.next(), pieces.next())
        else {
            return Err(bad("expected hf:OWNER/REPO/FILE[@REVISION]"));
        };
        if !is_plain_path(owner) || !is_plain_path(repo) {
            return Err(bad("OWNER and REPO must be plain names"));
        }
        if !is_plain_path(file) {
            return Err(bad(
                "FILE must be a relative path without empty, `.` or `..` parts",
            ));
        }
        if let Some(revision) = revision {
            if !is_plain_path(revision) {
                return Err(bad(
                    "REVISION must be non-empty, without empty, `.` or `..` parts",
                ));
            }
        }
        Ok(HubSpec {
            owner: owner.to_string(),
            repo: repo.to_string(),
            file: file.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// The revision as it goes into a URL path segment: `main` by default, with `/` (as in
    /// `refs/pr/1`) percent-encoded, as the hub expects.
    fn revision_segment(&self) -> String {
        self.revision
            .as_deref()
            .unwrap_or("main")
            .replace('/', "%2F")
    }

    /// The download URL under `hub_base` (e.g. `https://huggingface.co`, no trailing slash).
    pub fn url(&self, hub_base: &str) -> String {
        format!(
            "{hub_base}/{}/{}/resolve/{}/{}",
            self.owner,
            self.repo,
            self.revision_segment(),
            self.file
        )
    }

    /// Where the file is cached under `models_dir`: `hf/OWNER/REPO/FILE`, or
    /// `hf/OWNER/REPO@REVISION/FILE` for an explicit revision, so that two revisions never share a
    /// cached file (repository names cannot contain `@`).
    pub fn cache_path(&self, models_dir: &Path) -> PathBuf {
        let repo_dir = match &self.revision {
            None => self.repo.clone(),
            Some(_) => format!("{}@{}", self.repo, self.revision_segment()),
        };
        let mut path = models_dir.join("hf").join(&self.owner).join(repo_dir);
        for piece in self.file.split('/') {
            path.push(piece);
        }
        path
    }
}

fn is_plain_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|piece| !piece.is_empty() && piece != "." && piece != "..")
}

/// The sha256 an `ETag`-like header value carries, if it is one: the hub sends the LFS object's
/// sha256 as `X-Linked-Etag` (or `ETag`), quoted and possibly weak (`W/"…"`). Other etags (git blob
/// sha1s, CDN hashes) yield `None`.
pub fn sha256_from_etag(value: &str) -> Option<String> {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    let value = value.trim_matches('"');
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(value.to_ascii_lowercase())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_revision() {
        let spec = HubSpec::parse("hf:acme/tiny-GGUF/tiny.Q4_0.gguf").unwrap();
        assert_eq!(
            spec,
            HubSpec {
                owner: "acme".into(),
                repo: "tiny-GGUF".into(),
                file: "tiny.Q4_0.gguf".into(),
                revision: None,
            }
        );
        assert_eq!(
            spec.url("http://hub"),
            "http://hub/acme/tiny-GGUF/resolve/main/tiny.Q4_0.gguf"
        );
        assert_eq!(
            spec.cache_path(Path::new("/c/models")),
            Path::new("/c/models/hf/acme/tiny-GGUF/tiny.Q4_0.gguf")
        );

        let spec = HubSpec::parse("hf:acme/tiny/q4/tiny.gguf@refs/pr/1").unwrap();
        assert_eq!(spec.file, "q4/tiny.gguf");
        assert_eq!(spec.revision.as_deref(), Some("refs/pr/1"));
        assert_eq!(
            spec.url("http://hub"),
            "http://hub/acme/tiny/resolve/refs%2Fpr%2F1/q4/tiny.gguf"
        );
        assert_eq!(
            spec.cache_path(Path::new("/c/models")),
            Path::new("/c/models/hf/acme/tiny@refs%2Fpr%2F1/q4/tiny.gguf")
        );
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        for spec in [
            "acme/tiny/tiny.gguf",
            "hf:acme/tiny",
            "hf:acme//tiny.gguf",
            "hf:/tiny/tiny.gguf",
            "hf:acme/tiny/../../etc/passwd",
            "hf:acme/tiny/./x.gguf",
            "hf:acme/tiny/x.gguf@",
            "hf:acme/tiny/x.gguf@..",
            "hf:acme/tiny/dir/",
        ] {
            let err = HubSpec::parse(spec).unwrap_err();
            assert!(matches!(err, FetchError::BadSpec { .. }), "{spec}: {err}");
            assert!(err.to_string().contains(spec), "{err}");
        }
    }

    #[test]
    fn only_sha256_etags_count() {
        let sha = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
        assert_eq!(
            sha256_from_etag(&format!("\"{sha}\"")).as_deref(),
            Some(sha)
        );
        assert_eq!(
            sha256_from_etag(&format!("W/\"{sha}\"")).as_deref(),
            Some(sha)
        );
        assert_eq!(
            sha256_from_etag(&sha.to_ascii_uppercase()).as_deref(),
            Some(sha)
        );
        assert_eq!(
            sha256_from_etag("\"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3\""),
            None
        );
        assert_eq!(sha256_from_etag(&format!("\"{}\"", &sha[..63])), None);
        assert_eq!(sha256_from_etag(&format!("\"{}z\"", &sha[..63])), None);
    }
}
