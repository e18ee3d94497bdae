//! Loading ggml's CPU variant modules: from where, the best one or a pinned one, and which loaded.

use std::path::{Path, PathBuf};

use super::{watch, CpuKernels, VARIANT_ENV};

const PREFIX: &str = "libggml-cpu-";
const SUFFIX: &str = ".so";

fn variant_name(path: &Path) -> Option<&str> {
    path.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)
}

/// The variant modules in `dir`, by name.
fn variants_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter_map(|p| Some((variant_name(&p)?.to_string(), p)))
        .collect();
    found.sort();
    found
}

/// Beside the executable (an installed copy), else where this build put them.
fn variants_dir() -> Result<PathBuf, String> {
    let beside_executable = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let built = llama_cpp_sys_2::BACKENDS_DIR.map(PathBuf::from);
    let candidates: Vec<PathBuf> = beside_executable.into_iter().chain(built).collect();
    candidates
        .iter()
        .find(|dir| !variants_in(dir).is_empty())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            format!(
                "no CPU kernels ({PREFIX}*{SUFFIX}) in {}; install tandem with \
                 scripts/install.sh, which copies them beside the binary",
                looked.join(" or ")
            )
        })
}

/// Loads the variant [`VARIANT_ENV`] names, or else the best one this CPU supports, and says which.
pub(crate) fn load() -> Result<CpuKernels, String> {
    let dir = variants_dir()?;
    let pin = std::env::var(VARIANT_ENV).ok().filter(|v| !v.is_empty());
    let loaded = watch::loaded_libraries(|| match &pin {
        None => {
            llama_cpp_2::llama_backend::load_backends_from_path(&dir);
            Ok(())
        }
        Some(name) => load_pinned(&dir, name),
    })?;
    let (name, file) = loaded
        .iter()
        .find_map(|path| Some((variant_name(path)?.to_string(), path.file_name()?)))
        .ok_or_else(|| match &pin {
            Some(name) => {
                format!(
                    "{VARIANT_ENV}={name}: this CPU lacks instructions the `{name}` kernels need"
                )
            }
            None => format!(
                "this CPU supports none of the CPU kernels in {}",
                dir.display()
            ),
        })?;
    Ok(CpuKernels::Variant {
        // A pinned variant loads through a link: name the file it points to.
        library: dir.join(file),
        name,
        pinned: pin.is_some(),
    })
}

/// ggml loads the best-scoring module of a directory, so a pin is a directory holding links to that
/// variant and to the other (non-CPU) backends only. Once loaded, the links can go.
fn load_pinned(dir: &Path, name: &str) -> Result<(), String> {
    let variants = variants_in(dir);
    if !variants.iter().any(|(v, _)| v == name) {
        let known: Vec<&str> = variants.iter().map(|(v, _)| v.as_str()).collect();
        return Err(format!(
            "{VARIANT_ENV}={name}: no such CPU variant in {}; known: {}",
            dir.display(),
            known.join(", ")
        ));
    }
    let pinned = tempfile::tempdir().map_err(|e| format!("cannot pin a CPU variant: {e}"))?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if variant_name(&path).is_some_and(|v| v != name) {
            continue;
        }
        std::os::unix::fs::symlink(&path, pinned.path().join(entry.file_name()))
            .map_err(|e| format!("cannot pin a CPU variant: {e}"))?;
    }
    llama_cpp_2::llama_backend::load_backends_from_path(pinned.path());
    Ok(())
}
