//! Turning a [`Config`] into live models: local GGUF files are fetched if needed and loaded into
//! llama.cpp engines, remote models become HTTP clients, embedding models are loaded on candle; then
//! [`pipeline::build_all`] builds the pipelines over them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tandem_core::ChatModel;
use tandem_embed::Embedder;
use tandem_fetch::Fetcher;
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};
use tandem_remote::{RemoteModel, RemoteOptions};
use tandem_route::AnswerScorer;
use tandem_server::Pipelines;

use crate::config::{Config, EmbeddingModelConfig, LocalModelConfig, ModelConfig, PipelineConfig};
use crate::pipeline::{self, Registry};

pub struct Runtime {
    pub config: Config,
    registry: Registry,
}

impl Runtime {
    /// Loads the models that `names` (models or pipelines) need, then builds the pipelines whose
    /// models are loaded; every model and pipeline when `names` is empty.
    pub async fn load(config: Config, fetcher: &Fetcher, names: &[String]) -> Result<Runtime> {
        let wanted: Vec<String> = if names.is_empty() {
            config.models.keys().cloned().collect()
        } else {
            let mut wanted = Vec::new();
            for name in names {
                wanted.extend(config.models_under(name)?.into_iter().map(str::to_string));
            }
            wanted.sort();
            wanted.dedup();
            wanted
        };
        let mut registry = Registry::default();
        for name in wanted {
            match config.models[&name].clone() {
                ModelConfig::Local(local) => {
                    let engine = load_local(&name, &local, fetcher).await?;
                    registry.insert_local(name, Arc::new(engine));
                }
                ModelConfig::Remote(remote) => {
                    let mut options = RemoteOptions::new(&name, &remote.base_url, &remote.model);
                    options.api_key_env = remote.api_key_env.clone();
                    options.connect_timeout = Duration::from_secs_f64(remote.connect_timeout_secs);
                    options.read_timeout = Duration::from_secs_f64(remote.read_timeout_secs);
                    options.max_retries = remote.max_retries;
                    options.pricing = remote.price;
                    let model = RemoteModel::new(options)
                        .with_context(|| format!("cannot set up remote model `{name}`"))?;
                    registry.insert_chat(name, Arc::new(model));
                }
                ModelConfig::Embedding(embedding) => {
                    let embedder = load_embedding(&name, &embedding, fetcher).await?;
                    registry.insert_embedder(name, Arc::new(embedder));
                }
            }
        }
        pipeline::build_all(&config, &mut registry).await?;
        Ok(Runtime { config, registry })
    }

    /// A runtime with no model loaded, for commands that only read the configuration.
    pub fn empty(config: Config) -> Runtime {
        Runtime {
            config,
            registry: Registry::default(),
        }
    }

    /// The chat model or pipeline called `name`.
    pub fn model(&self, name: &str) -> Result<Arc<dyn ChatModel>> {
        if !self.config.models.contains_key(name) && !self.config.pipelines.contains_key(name) {
            bail!(
                "no model or pipeline is called `{name}` (known: {})",
                self.config.names().join(", ")
            );
        }
        self.registry.chat(name)
    }

    /// The local model called `name` at the token level (its batching engine), if it was loaded.
    pub fn engine(&self, name: &str) -> Result<Arc<LlamaEngine>> {
        self.registry.engine(name)
    }

    /// The small side of cascade `name`, built as its pipeline builds it
    /// ([`pipeline::answer_scorer`]): load the cascade's `small` first.
    pub async fn answer_scorer(&mut self, name: &str) -> Result<AnswerScorer> {
        let Some(PipelineConfig::Cascade(cascade)) = self.config.pipelines.get(name) else {
            bail!("no cascade pipeline is called `{name}`");
        };
        pipeline::prepare_examples(name, &self.config, &mut self.registry).await?;
        pipeline::answer_scorer(name, cascade, &self.registry)
    }

    /// What pipeline `name` read from the state store when it was built and answers by
    /// ([`Registry::read_from_store`]).
    pub fn read_from_store(&self, name: &str) -> Option<&serde_json::Value> {
        self.registry.read_from_store(name)
    }

    /// The embedding model called `name`, if it was loaded.
    pub fn embedder(&self, name: &str) -> Result<Arc<Embedder>> {
        self.registry.embedder(name)
    }

    /// Every loaded model and built pipeline under its own name.
    pub fn pipelines(&self) -> Pipelines {
        let mut pipelines = Pipelines::default();
        for (name, model) in self.registry.chat_models() {
            pipelines.insert(name.clone(), model.clone());
        }
        for (name, embedder) in self.registry.embedders() {
            pipelines.insert_embedder(name.clone(), embedder.clone());
        }
        pipelines
    }
}

/// The GGUF file of a local model, pulled into the cache first when it names a catalog model.
pub async fn local_file(local: &LocalModelConfig, fetcher: &Fetcher) -> Result<PathBuf> {
    match (&local.file, &local.source) {
        (Some(file), _) => Ok(file.clone()),
        (None, Some(source)) => fetcher
            .pull(source)
            .await
            .with_context(|| format!("cannot fetch model `{source}`")),
        (None, None) => bail!("a local model needs `source` or `file`"),
    }
}

async fn load_local(
    name: &str,
    local: &LocalModelConfig,
    fetcher: &Fetcher,
) -> Result<LlamaEngine> {
    let path = local_file(local, fetcher).await?;
    let mut options = EngineOptions::new(name);
    options.context_size = local.context_size;
    options.parallel = local.parallel;
    options.max_queue = local.max_queue;
    options.batch_size = local.batch_size;
    if let Some(threads) = local.threads {
        options.threads = threads;
    }
    options.pricing = local.price;
    options.prompt_cache = local.prompt_cache;
    let template = local.chat_template.clone();
    let gpu_layers = local.gpu_layers;
    tokio::task::spawn_blocking(move || {
        tracing::info!(model = %options.name, path = %path.display(), "loading");
        let model = LoadedModel::load(&path, template.as_deref(), gpu_layers)?;
        LlamaEngine::start(model, options)
    })
    .await?
    .with_context(|| format!("cannot load local model `{name}`"))
}

async fn load_embedding(
    name: &str,
    embedding: &EmbeddingModelConfig,
    fetcher: &Fetcher,
) -> Result<Embedder> {
    let dir = match (&embedding.dir, &embedding.source) {
        (Some(dir), _) => dir.clone(),
        (None, Some(source)) => fetcher
            .pull(source)
            .await
            .with_context(|| format!("cannot fetch model `{source}`"))?,
        (None, None) => bail!("an embedding model needs `source` or `dir`"),
    };
    let batch_size = embedding.batch_size;
    tokio::task::spawn_blocking(move || {
        tracing::info!(path = %dir.display(), "loading embedding model");
        Embedder::load(&dir).map(|embedder| embedder.with_batch_size(batch_size))
    })
    .await?
    .with_context(|| format!("cannot load embedding model `{name}`"))
}
