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
