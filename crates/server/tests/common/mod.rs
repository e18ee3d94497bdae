//! Shared by the server's integration tests that keep one server for the whole test binary.

use std::net::SocketAddr;

use tandem_server::{router, Pipelines, ServerOptions};

/// Serves `pipelines` on a free loopback port and returns its address. The server gets a thread
/// and a runtime of its own, so it outlives the runtime of the test that started it.
pub async fn serve_for_the_process(pipelines: Pipelines, options: ServerOptions) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener.into_std().unwrap()).unwrap();
            axum::serve(listener, router(pipelines, options))
                .await
                .unwrap();
        });
    });
    addr
}

/// The ids `GET /v1/models` lists at `base` (`http://host:port`), asked with `key`.
pub async fn model_ids(client: &reqwest::Client, base: &str, key: &str) -> Vec<String> {
    let models: serde_json::Value = client
        .get(format!("{base}/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    models["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no model list: {models}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}
