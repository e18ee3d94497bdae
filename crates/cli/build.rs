//! Lets a `cpu-variants` build of `tandem` find llama.cpp's shared libraries wherever it is
//! installed: the binary looks for them in its own directory (`$ORIGIN`), where
//! `scripts/install.sh` puts them with the CPU variant modules.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CPU_VARIANTS").is_some() {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN");
    }
}
