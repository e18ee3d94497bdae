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
use tandem_llama::speculative::{DraftSource, Speculative, SpeculativeOptions, SuffixCache};
use tandem_llama::LlamaEngine;

use crate::config::{Config, PipelineConfig, SpeculativeConfig};

/// The live models and pipelines, by name.
#[derive(Default)]
pub struct Registry {
    /// Chat models and built pipelines: what a request's `model` names.
    chat: BTreeMap<String, Arc<dyn ChatModel>>,
    embedders: BTreeMap<String, Arc<Embedder>>,
    /// Local models again, for strategies that work on tokens.
    engines: BTreeMap<String, Arc<LlamaEngine>>,
}

impl Registry {
    pub fn insert_chat(&mut self, name: String, model: Arc<dyn ChatModel>) {
        self.chat.insert(name, model);
    }

    /// A local model: a chat model, and an engine for token-level strategies.
    pub fn insert_engine(&mut self, name: String, engine: Arc<LlamaEngine>) {
        self.chat
            .insert(name.clone(), Arc::clone(&engine) as Arc<dyn ChatModel>);
        self.engines.insert(name, engine);
    }

    /// The local model called `name`, at the token level.
    pub fn engine(&self, name: &str) -> Result<Arc<LlamaEngine>> {
        if let Some(engine) = self.engines.get(name) {
            return Ok(Arc::clone(engine));
        }
        if self.chat.contains_key(name) {
            bail!("`{name}` is not a local model; token-level strategies need one");
        }
        Err(anyhow!("model `{name}` was not loaded"))
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
        let model = build(name, &config.pipelines[name], registry)
            .with_context(|| format!("cannot build pipeline `{name}`"))?;
        registry.insert_chat(name.to_string(), model);
    }
    Ok(())
}

fn build(name: &str, pipeline: &PipelineConfig, registry: &Registry) -> Result<Arc<dyn ChatModel>> {
    match pipeline {
        PipelineConfig::Direct(direct) => registry.chat(&direct.model),
        PipelineConfig::Speculative(spec) => speculative(name, spec, registry),
    }
}

fn speculative(
    name: &str,
    spec: &SpeculativeConfig,
    registry: &Registry,
) -> Result<Arc<dyn ChatModel>> {
    let draft = match spec.draft.as_str() {
        "prompt_lookup" => DraftSource::PromptLookup,
        "suffix" => DraftSource::Suffix(Arc::new(SuffixCache::new(spec.suffix_tokens))),
        model => DraftSource::Model(registry.engine(model)?),
    };
    let mut options = SpeculativeOptions::new(name);
    options.max_draft = spec.k;
    options.p_min = spec.p_min;
    options.min_match = spec.min_match;
    options.fallback = spec.fallback;
    Ok(Arc::new(Speculative::new(
        registry.engine(&spec.target)?,
        draft,
        options,
    )?))
}
