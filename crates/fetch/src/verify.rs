//! Checks on bytes: sha256 while writing or of a whole file, sizes, and the GGUF magic.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::FetchError;

/// The first four bytes of every GGUF file.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0x0f), 16).unwrap_or('0'));
    }
    out
}

/// Whether `value` is a sha256 in hex: 64 hex digits.
pub(crate) fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A writer that hashes and counts everything written through it, so a file is verified in the
/// same pass that writes it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the byte count and the lowercase hex sha256.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.written, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The lowercase hex sha256 of a whole file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(FetchError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(FetchError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// `Ok` when `actual` equals `expected` (case-insensitive hex), otherwise a
/// [`FetchError::ChecksumMismatch`] naming `what`.
pub fn check_sha256(what: &str, expected: &str, actual: &str) -> Result<(), FetchError> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(FetchError::ChecksumMismatch {
            what: what.to_string(),
            expected: expected.to_ascii_lowercase(),
            actual: actual.to_ascii_lowercase(),
        })
    }
}

pub(crate) fn check_size(what: &str, expected: u64, actual: u64) -> Result<(), FetchError> {
    if expected == actual {
        Ok(())
    } else {
        Err(FetchError::SizeMismatch {
            what: what.to_string(),
            expected,
            actual,
        })
    }
}

/// `Ok` when the file at `path` starts with `GGUF`.
pub fn check_gguf_magic(path: &Path) -> Result<(), FetchError> {
    let mut file = File::open(path).map_err(FetchError::io(path))?;
    let mut head = Vec::with_capacity(4);
    (&mut file)
        .take(4)
        .read_to_end(&mut head)
        .map_err(FetchError::io(path))?;
    if head == GGUF_MAGIC {
        Ok(())
    } else {
        Err(FetchError::BadMagic {
            path: path.to_path_buf(),
            found: head,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("abc"), FIPS 180-2 appendix B.1.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hashing_writer_hashes_and_counts() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"a").unwrap();
        writer.write_all(b"bc").unwrap();
        let (inner, written, sha) = writer.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(written, 3);
        assert_eq!(sha, ABC);
    }

    #[test]
    fn checksum_mismatch_is_detected_and_reported() {
        assert!(check_sha256("x", ABC, &ABC.to_ascii_uppercase()).is_ok());
        let tampered = format!("{}0", &ABC[..63]);
        let err = check_sha256("model.gguf", ABC, &tampered).unwrap_err();
        match &err {
            FetchError::ChecksumMismatch {
                what,
                expected,
                actual,
            } => {
                assert_eq!(what, "model.gguf");
                assert_eq!(expected, ABC);
                assert_eq!(actual, &tampered);
            }
            other => panic!("wrong error: {other}"),
        }
        let message = err.to_string();
        assert!(
            message.contains(ABC) && message.contains(&tampered),
            "{message}"
        );
    }

    #[test]
    fn file_hash_magic_and_size_checks() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.gguf");
        std::fs::write(&good, b"GGUF\x03\0\0\0rest").unwrap();
        let bad = dir.path().join("bad.gguf");
        std::fs::write(&bad, b"PK").unwrap();
        let abc = dir.path().join("abc");
        std::fs::write(&abc, b"abc").unwrap();

        assert_eq!(sha256_file(&abc).unwrap(), ABC);
        assert!(check_gguf_magic(&good).is_ok());
        let err = check_gguf_magic(&bad).unwrap_err();
        assert!(matches!(err, FetchError::BadMagic { ref found, .. } if found == b"PK"));
        assert!(check_size("f", 3, 3).is_ok());
        assert!(matches!(
            check_size("f", 3, 4),
            Err(FetchError::SizeMismatch {
                expected: 3,
                actual: 4,
                ..
            })
        ));
    }
}
