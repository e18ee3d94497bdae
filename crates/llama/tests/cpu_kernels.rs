//! Which CPU kernels a process runs once a real model (SmolLM2-135M-Instruct) is loaded: the
//! built-in ones in a default build, a variant chosen for this CPU in a `cpu-variants` build.

use tandem_llama::{cpu_kernels, CpuKernels, LoadedModel, VARIANT_ENV};

#[test]
fn a_loaded_model_reports_the_cpu_kernels_it_runs() {
    // The variant is settled once per process; a pin would make this test about the pin.
    assert!(
        std::env::var_os(VARIANT_ENV).is_none(),
        "unset {VARIANT_ENV} to run this test"
    );
    LoadedModel::load(&tandem_fetch::test_model(), None, 0).expect("model loads");
    let kernels = cpu_kernels().expect("llama.cpp started");
    if cfg!(feature = "cpu-variants") {
        let CpuKernels::Variant {
            name,
            library,
            pinned,
        } = kernels
        else {
            panic!("a cpu-variants build runs a variant module, not {kernels}");
        };
        assert!(!pinned);
        assert!(library.is_file(), "{}", library.display());
        // Every x86-64 CPU that runs this x86-64-v3 binary supports at least the haswell variant,
        // and ggml takes the highest-scoring one.
        let at_least_avx2 = [
            "haswell",
            "skylakex",
            "cannonlake",
            "cascadelake",
            "icelake",
            "cooperlake",
            "zen4",
            "alderlake",
            "sapphirerapids",
        ];
        assert!(at_least_avx2.contains(&name.as_str()), "{name}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert_ne!(name, "haswell", "an AVX-512 CPU gets AVX-512 kernels");
        }
        assert!(kernels.to_string().starts_with(name.as_str()));
    } else {
        assert_eq!(kernels, &CpuKernels::BuiltIn);
    }
}
