//! Shared by the binary's end-to-end tests: a `tandem serve` child process on a free port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `tandem serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
}

impl Server {
    /// Starts `tandem --config CONFIG serve` on a free loopback port and waits until it listens.
    // Each test file is its own crate and uses one of the two starts.
    #[allow(dead_code)]
    pub fn start(config: &Path) -> Server {
        Server::start_with_env(config, &[])
    }

    /// As [`Server::start`], with extra environment variables (API keys).
    #[allow(dead_code)]
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .unwrap();
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, address }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
