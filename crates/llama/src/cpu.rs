//! Which CPU kernels llama.cpp runs, settled once per process before the backend starts.
//!
//! A default build links ggml's CPU kernels in, compiled for the build's target CPU (x86-64-v3,
//! see `.cargo/config.toml`). With the `cpu-variants` feature ggml's CPU backend is built once per
//! x86 level as a loadable module (`libggml-cpu-haswell.so`, `-skylakex`, `-zen4`,
//! `-sapphirerapids`, ...) and ggml loads the best one this CPU supports, so one build runs the
//! fastest kernels on every machine; [`VARIANT_ENV`] pins one by name instead (AVX-512 is slower
//! than AVX2 for some quantisations). Modules are looked for beside the executable first (an
//! installed `tandem`, see `scripts/install.sh`), then in the build's own output directory.

use std::fmt;
use std::path::PathBuf;

/// The environment variable that pins a CPU variant by name (`haswell`, `zen4`, ...) instead of
/// the best one this CPU supports. Only a `cpu-variants` build has variants to pin.
pub const VARIANT_ENV: &str = "TANDEM_CPU_VARIANT";

/// The CPU kernels this process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuKernels {
    /// Linked into the binary, built for the build's target CPU (a build without `cpu-variants`).
    BuiltIn,
    /// A variant module loaded at start-up.
    Variant {
        /// The variant's name, from its file name: `zen4` for `libggml-cpu-zen4.so`.
        name: String,
        library: PathBuf,
        /// Chosen by [`VARIANT_ENV`] rather than by ggml's score of this CPU.
        pinned: bool,
    },
}

impl fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuKernels::BuiltIn => write!(f, "built in (static build)"),
            CpuKernels::Variant {
                name,
                library,
                pinned,
            } => {
                let how = if *pinned {
                    format!("pinned by {VARIANT_ENV}")
                } else {
                    "the best this CPU supports".to_string()
                };
                write!(f, "{name} ({how}; {})", library.display())
            }
        }
    }
}

/// The CPU device's description as ggml reports it (the processor's brand string).
pub(crate) fn cpu_device() -> String {
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .find(|d| d.device_type == llama_cpp_2::LlamaBackendDeviceType::Cpu)
        .map_or_else(
            || "none".to_string(),
            |d| format!("{} ({})", d.name, d.description),
        )
}

#[cfg(not(feature = "cpu-variants"))]
pub(crate) fn load() -> Result<CpuKernels, String> {
    match std::env::var_os(VARIANT_ENV) {
        Some(value) if !value.is_empty() => Err(format!(
            "{VARIANT_ENV} is set, but this build links its CPU kernels in: build with \
             `--features cpu-variants` to choose among variants, or unset it"
        )),
        _ => Ok(CpuKernels::BuiltIn),
    }
}

#[cfg(feature = "cpu-variants")]
pub(crate) use variants::load;

#[cfg(feature = "cpu-variants")]
mod variants;
#[cfg(feature = "cpu-variants")]
mod watch;
