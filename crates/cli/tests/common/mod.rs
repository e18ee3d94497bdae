//! Shared by the binary's end-to-end tests: a `tandem serve` child process on a free port, and
//! SmolLM2 model stanzas and `tandem run` calls for the cascade tests.

// Each test file is its own crate and uses a part of this module.
#![allow(dead_code)]

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
    pub fn start(config: &Path) -> Server {
        Server::start_with_env(config, &[])
    }

    /// As [`Server::start`], with extra environment variables (API keys).
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

/// `[models.NAME]`: SmolLM2 on one sequence and one thread.
pub fn local_model(name: &str, context_size: u32) -> String {
    format!(
        "[models.{name}]\nkind = \"local\"\nfile = \"{}\"\ncontext_size = {context_size}\nparallel = 1\nthreads = 1\n",
        tandem_fetch::test_model().display()
    )
}

/// `tandem run -m cheap PROMPT` greedily with `config`; its stderr (summary and strategy entries),
/// after checking that it succeeded.
pub fn ask_cheap(config: &Path, prompt: &str, max_tokens: u32) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--config")
        .arg(config)
        .args(["run", "-m", "cheap", prompt, "--max-tokens"])
        .arg(max_tokens.to_string())
        .args(["--temperature", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// The `cascade` entry that `tandem run` prints for pipeline `cheap`, as JSON.
pub fn cascade_entry(stderr: &str) -> serde_json::Value {
    let line = stderr
        .lines()
        .find_map(|line| line.strip_prefix("[cheap (cascade): "))
        .unwrap_or_else(|| panic!("no cascade entry: {stderr}"));
    serde_json::from_str(line.strip_suffix(']').unwrap()).unwrap()
}
