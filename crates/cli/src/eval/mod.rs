//! `tandem eval`: the evaluation harness of `tandem-eval`, given the configuration's models.
//!
//! - [`args`]: the command line ([`EvalCommand`]).
//! - [`execute`]: runs a command with the library and prints what it returns.
//! - [`tool_calls`]: function-calling accuracy, free and grammar-constrained.

mod args;
mod execute;
mod tool_calls;

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use tandem_core::{ChatModel, Pricing};
use tandem_fetch::Fetcher;

use crate::config::{Config, ModelConfig};
use crate::runtime::Runtime;

pub use args::{DataArgs, EvalCommand, StoreArgs};
pub use execute::ModelProvider;

/// The configuration's models and pipelines, with those a run names already loaded.
struct ConfigModels {
    runtime: Runtime,
}

impl ModelProvider for ConfigModels {
    fn model(&self, name: &str) -> Result<Arc<dyn ChatModel>> {
        self.runtime.model(name)
    }

    /// A plain model's prices; a pipeline that combines models prices its own stages.
    fn pricing(&self, name: &str) -> Pricing {
        let config = &self.runtime.config;
        config
            .single_model(name)
            .map_or_else(Pricing::default, |m| config.models[m].pricing())
    }

    fn names(&self) -> Vec<String> {
        self.runtime.config.names()
    }

    fn fingerprint(&self, name: &str) -> serde_json::Value {
        fingerprint(
            &self.runtime.config,
            &|name| self.runtime.read_from_store(name),
            name,
        )
    }
}

/// What decides a model's or pipeline's answers: a model's file or upstream, a pipeline's
/// settings and what it read from the state store (`read_from_store`: a calibrated threshold, a
/// stored router), and, recursively, everything it calls. So a pipeline recalibrated or retrained
/// since a run starts a new run, even when it is nested in the pipeline evaluated; one that read
/// nothing from the store keeps the fingerprint its configuration alone gives.
fn fingerprint<'a>(
    config: &Config,
    read_from_store: &dyn Fn(&str) -> Option<&'a serde_json::Value>,
    name: &str,
) -> serde_json::Value {
    if let Some(pipeline) = config.pipelines.get(name) {
        let uses: serde_json::Map<String, serde_json::Value> = pipeline
            .uses()
            .into_iter()
            .map(|used| {
                let print = fingerprint(config, read_from_store, used.name);
                (used.name.to_string(), print)
            })
            .collect();
        let mut print = json!({ "pipeline": name, "is": pipeline, "uses": uses });
        if let Some(read) = read_from_store(name) {
            print["read_from_store"] = read.clone();
        }
        return print;
    }
    let Some(model) = config.models.get(name) else {
        return serde_json::Value::Null;
    };
    let what = match model {
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
    json!({ "model": name, "is": what })
}

pub async fn run(mut command: EvalCommand, config: Config, fetcher: &Fetcher) -> Result<()> {
    if let EvalCommand::Trust(args) = command {
        return crate::trust::run(args, config, fetcher).await;
    }
    if let EvalCommand::ToolCalls(args) = command {
        return tool_calls::run(args, config, fetcher).await;
    }
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
        EvalCommand::Privacy(args) => {
            // Refused before any model is loaded.
            args.check()?;
            args.models()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_pipeline_read_from_the_store_is_in_its_fingerprint_and_its_callers() {
        let config = Config::parse(
            "[models.small]\nkind = \"local\"\nfile = \"small.gguf\"\n\n\
             [models.large]\nkind = \"local\"\nfile = \"large.gguf\"\n\n\
             [pipelines.cheap]\nstrategy = \"cascade\"\nsmall = \"small\"\nlarge = \"large\"\n\
             signal = \"mean_logprob\"\n\n\
             [pipelines.outer]\nstrategy = \"direct\"\nmodel = \"cheap\"\n",
        )
        .unwrap();
        let (before, after) = (json!({ "threshold": 0.5 }), json!({ "threshold": 0.75 }));
        let print = |read: &serde_json::Value, name: &str| {
            fingerprint(
                &config,
                &|pipeline| (pipeline == "cheap").then_some(read),
                name,
            )
        };
        for name in ["cheap", "outer"] {
            assert_ne!(print(&before, name), print(&after, name), "{name}");
        }
        assert_eq!(print(&before, "cheap")["read_from_store"], before);
        assert_eq!(
            print(&after, "outer")["uses"]["cheap"]["read_from_store"],
            after
        );
        // What read nothing keeps the fingerprint its configuration alone gives.
        let plain = fingerprint(&config, &|_| None, "outer");
        assert!(plain["uses"]["cheap"].get("read_from_store").is_none());
        assert_eq!(
            print(&before, "small"),
            fingerprint(&config, &|_| None, "small")
        );
    }
}
