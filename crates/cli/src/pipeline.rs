//! Building pipelines: the [`Registry`] of live models, and one `build` arm per strategy that turns
//! a `[pipelines.NAME]` entry into a `ChatModel` over the models and pipelines it names.
//!
//! Pipelines are built in [`Config::pipeline_order`], so every name a strategy uses is in the
//! registry when it is built.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use tandem_core::ChatModel;
use tandem_embed::Embedder;
use tandem_route::{Cascade, CascadeOptions};
use tandem_trust::{Guard, GuardOptions, InputScorer, Judge, Policy, TrustModel};

use crate::config::{Config, PipelineConfig};

/// The live models and pipelines, by name.
#[derive(Default)]
pub struct Registry {
    /// Chat models and built pipelines: what a request's `model` names.
    chat: BTreeMap<String, Arc<dyn ChatModel>>,
    embedders: BTreeMap<String, Arc<Embedder>>,
}

impl Registry {
    pub fn insert_chat(&mut self, name: String, model: Arc<dyn ChatModel>) {
        self.chat.insert(name, model);
    }

    pub fn insert_embedder(&mut self, name: String, embedder: Arc<Embedder>) {
        self.embedders.insert(name, embedder);
    }

    /// The chat model or pipeline called `name`.
    pub fn chat(&self, name: &str) -> Result<Arc<dyn ChatModel>> {
        if self.embedders.contains_key(name) {
            bail!("`{name}` is an embedding model: use `tandem embed` or POST /v1/embeddings");
        }
        self.chat
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("model or pipeline `{name}` was not loaded"))
    }

    pub fn embedder(&self, name: &str) -> Result<Arc<Embedder>> {
        self.embedders
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("embedding model `{name}` was not loaded"))
    }

    /// Chat models and pipelines, by name.
    pub fn chat_models(&self) -> impl Iterator<Item = (&String, &Arc<dyn ChatModel>)> {
        self.chat.iter()
    }

    pub fn embedders(&self) -> impl Iterator<Item = (&String, &Arc<Embedder>)> {
        self.embedders.iter()
    }
}

/// Builds every pipeline whose models are all in `registry`, in dependency order, and adds it.
pub fn build_all(config: &Config, registry: &mut Registry) -> Result<()> {
    for name in config.pipeline_order()? {
        let loaded = config.models_under(name)?.iter().all(|model| {
            registry.chat.contains_key(*model) || registry.embedders.contains_key(*model)
        });
        if !loaded {
            continue;
        }
        let model = build(name, config, registry)
            .with_context(|| format!("cannot build pipeline `{name}`"))?;
        registry.insert_chat(name.to_string(), model);
    }
    Ok(())
}

fn build(name: &str, config: &Config, registry: &Registry) -> Result<Arc<dyn ChatModel>> {
    Ok(match &config.pipelines[name] {
        PipelineConfig::Direct(direct) => registry.chat(&direct.model)?,
        PipelineConfig::Cascade(cascade) => {
            let mut options = CascadeOptions::new(name, cascade.signal, cascade.threshold);
            options.samples = cascade.samples;
            options.sample_temperature = cascade.sample_temperature;
            options.large_pricing = config
                .single_model(&cascade.large)
                .map(|model| config.models[model].pricing());
            Arc::new(Cascade::new(
                options,
                registry.chat(&cascade.small)?,
                registry.chat(&cascade.large)?,
            ))
        }
        PipelineConfig::Guard(guard) => {
            let policy = match &guard.categories {
                Some(categories) => Policy::new(categories.clone())?,
                None => Policy::default(),
            };
            let judge = Judge::new(registry.chat(&guard.guard)?, policy, guard.threshold);
            let mut options = GuardOptions::new(name);
            options.check_input = guard.check_input;
            options.check_output = guard.check_output;
            options.hold_chars = guard.hold_chars;
            let mut built = Guard::new(options, judge, registry.chat(&guard.model)?);
            if let (Some(path), Some(embedder)) = (&guard.classifier, &guard.embedder) {
                let model = TrustModel::load(path)?;
                let scorer = InputScorer::new(registry.embedder(embedder)?, model)
                    .with_context(|| format!("pipelines.{name}.classifier"))?;
                built = built.with_input_scorer(scorer);
            }
            Arc::new(built)
        }
    })
}
