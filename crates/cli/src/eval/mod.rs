//! `tandem eval`: the evaluation harness of `tandem-eval`, given the configuration's models.
//!
//! - [`args`]: the command line ([`EvalCommand`]).
//! - [`execute`]: runs a command with the library and prints what it returns.

mod args;
mod execute;

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use tandem_core::{ChatModel, Pricing};
use tandem_fetch::Fetcher;

use crate::config::{Config, ModelConfig};
use crate::runtime::Runtime;

pub use args::EvalCommand;
use execute::ModelProvider;

/// The configuration's models and pipelines, with those a run names already loaded.
struct ConfigModels {
    runtime: Runtime,
}

impl ModelProvider for ConfigModels {
    fn model(&self, name: &str) -> Result<Arc<dyn ChatModel>> {
        self.runtime.model(name)
    }

    fn pricing(&self, name: &str) -> Pricing {
        self.runtime.config.model_of(name).map_or_else(
            |_| Pricing::default(),
            |m| self.runtime.config.models[m].pricing(),
        )
    }

    fn names(&self) -> Vec<String> {
        self.runtime.config.names()
    }

    fn fingerprint(&self, name: &str) -> serde_json::Value {
        let config = &self.runtime.config;
        let Ok(model) = config.model_of(name) else {
            return serde_json::Value::Null;
        };
        let what = match &config.models[model] {
            ModelConfig::Local(local) => json!({
                "kind": "local",
                "source": local.source,
                "sha256": local.source.as_deref().and_then(tandem_fetch::find).and_then(|m| m.sha256()),
                "file": local.file,
                "chat_template": local.chat_template,
            }),
            ModelConfig::Remote(remote) => json!({
                "kind": "remote",
                "base_url": remote.base_url,
                "model": remote.model,
            }),
            ModelConfig::Embedding(embedding) => json!({
                "kind": "embedding",
                "source": embedding.source,
                "dir": embedding.dir,
            }),
        };
        json!({ "model": model, "is": what })
    }
}

pub async fn run(mut command: EvalCommand, config: Config, fetcher: &Fetcher) -> Result<()> {
    if config.eval.allow_unisolated {
        command.allow_unisolated();
    }
    let names = match &command {
        EvalCommand::Run {
            models,
            dataset,
            prompt,
            ..
        } => {
            // A misspelt dataset or prompt is reported before any model is fetched or loaded.
            tandem_eval::dataset::check(dataset, prompt.as_deref())?;
            models.clone()
        }
        _ => Vec::new(),
    };
    // Nothing to load for commands that only read the store; `load` with no names loads all.
    let runtime = if names.is_empty() {
        Runtime::empty(config)
    } else {
        Runtime::load(config, fetcher, &names).await?
    };
    let models = ConfigModels { runtime };
    execute::execute(command, &models, &fetcher.cache_dir).await
}
