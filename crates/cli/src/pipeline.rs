//! Building pipelines: the [`Registry`] of live models, and one `build` arm per strategy that turns
//! a `[pipelines.NAME]` entry into a `ChatModel` over the models and pipelines it names.
//!
//! Pipelines are built in [`Config::pipeline_order`], so every name a strategy uses is in the
//! registry when it is built. A router or cascade configured without a `threshold` takes the one
//! calibrated into the state store; [`answer_scorer`] is a cascade's small side alone, built the
//! same way for `tandem router calibrate --cascade`. What a pipeline read from the store that
//! decides its answers (a calibrated threshold, a stored router's digest) is kept beside it
//! ([`Registry::read_from_store`]), so that `tandem eval run` can tell a recalibrated pipeline
//! from the one it ran before.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use sha2::Digest;
use tandem_core::{ChatModel, Pricing};
use tandem_embed::Embedder;
use tandem_llama::LlamaEngine;
use tandem_privacy::names::{NameJudge, NameJudgeConfig};
use tandem_privacy::stage::{Guard, KeepLocal, Redact, Rewrite};
use tandem_privacy::{Detector, DetectorConfig};
use tandem_route::{
    AnswerScorer, CacheOptions, Cascade, CascadeOptions, ExampleCheck, LearnedRouter,
    LearnedScorer, PerplexityScorer, PromptScorer, Router, RouterOptions, ScoreOptions,
    SemanticCache, Signal,
};
use tandem_store::{SqliteStore, Store};
use tandem_trust::calibration::Calibration;
use tandem_trust::grounding::GroundingModel;
use tandem_trust::{GuardOptions, InputScorer, Judge, Policy, TrustModel, Verify, VerifyOptions};

use crate::config::{
    CascadeConfig, Config, PipelineConfig, RouterConfig, SpeculativeConfig, PERPLEXITY_ROUTER,
};
use crate::shown_examples::SandboxedExamples;
use tandem_llama::fusion::{Fusion, Mode};
use tandem_llama::speculative::{DraftSource, Speculative, SpeculativeOptions, SuffixCache};

/// The live models and pipelines, by name.
#[derive(Default)]
pub struct Registry {
    /// Chat models and built pipelines: what a request's `model` names.
    chat: BTreeMap<String, Arc<dyn ChatModel>>,
    /// Local models, for strategies that read tokens and logits.
    engines: BTreeMap<String, Arc<LlamaEngine>>,
    embedders: BTreeMap<String, Arc<Embedder>>,
    /// The sandbox that runs answers on their requests' examples (the `shown_examples` signal),
    /// set up when the first pipeline that needs it is built.
    examples: Option<Arc<dyn ExampleCheck>>,
    /// What each built pipeline read from the state store that decides its answers.
    read: BTreeMap<String, serde_json::Value>,
}

impl Registry {
    pub fn insert_local(&mut self, name: String, engine: Arc<LlamaEngine>) {
        self.chat.insert(name.clone(), engine.clone());
        self.engines.insert(name, engine);
    }

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

    /// The local model called `name`, at the token level: its one batching engine, shared with
    /// every other user of the model.
    pub fn engine(&self, name: &str) -> Result<Arc<LlamaEngine>> {
        if let Some(engine) = self.engines.get(name) {
            return Ok(Arc::clone(engine));
        }
        if self.chat.contains_key(name) {
            bail!("`{name}` is not a local model; this strategy reads its tokens and logits");
        }
        Err(anyhow!("model `{name}` was not loaded"))
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

    /// What pipeline `name` read from the state store when it was built and answers by: a
    /// cascade's calibrated threshold, a router's stored router (its name and sha256) and its
    /// calibrated threshold. `None` when it read nothing (its configuration says everything) or
    /// was not built.
    pub fn read_from_store(&self, name: &str) -> Option<&serde_json::Value> {
        self.read.get(name)
    }
}

/// Builds every pipeline whose models are all in `registry`, in dependency order, and adds it.
pub async fn build_all(config: &Config, registry: &mut Registry) -> Result<()> {
    let mut store = LazyStore::new(config.store.path());
    for name in config.pipeline_order()? {
        let loaded = config.models_under(name)?.iter().all(|model| {
            registry.chat.contains_key(*model) || registry.embedders.contains_key(*model)
        });
        if !loaded {
            continue;
        }
        prepare_examples(name, config, registry).await?;
        let mut read = None;
        let model = build(name, config, registry, &mut store, &mut read)
            .with_context(|| format!("cannot build pipeline `{name}`"))?;
        registry.insert_chat(name.to_string(), model);
        if let Some(read) = read {
            registry.read.insert(name.to_string(), read);
        }
    }
    Ok(())
}

/// Sets up the sandbox of the `shown_examples` signal when pipeline `name` is the first cascade
/// that needs it.
pub async fn prepare_examples(name: &str, config: &Config, registry: &mut Registry) -> Result<()> {
    let runs_examples = matches!(&config.pipelines[name], PipelineConfig::Cascade(c) if c.signal == Signal::ShownExamples);
    if runs_examples && registry.examples.is_none() {
        let check = SandboxedExamples::detect(config.eval.allow_unisolated)
            .await
            .with_context(|| {
                format!(
                    "pipelines.{name}: signal = \"shown_examples\" runs the small model's code in a sandbox, which cannot be set up here"
                )
            })?;
        registry.examples = Some(Arc::new(check));
    }
    Ok(())
}

/// Builds pipeline `name`; what it reads from the state store that decides its answers goes into
/// `read`.
fn build(
    name: &str,
    config: &Config,
    registry: &Registry,
    store: &mut LazyStore,
    read: &mut Option<serde_json::Value>,
) -> Result<Arc<dyn ChatModel>> {
    Ok(match &config.pipelines[name] {
        PipelineConfig::Direct(direct) => registry.chat(&direct.model)?,
        PipelineConfig::Cascade(cascade) => {
            let scorer = answer_scorer(name, cascade, registry)?;
            let threshold = match cascade.threshold {
                Some(threshold) => threshold,
                None => {
                    let threshold = calibrated_threshold(name, cascade, store)?;
                    *read = Some(serde_json::json!({ "threshold": threshold }));
                    threshold
                }
            };
            let mut options = CascadeOptions::new(name, threshold);
            options.large_pricing = config
                .single_model(&cascade.large)
                .map(|model| config.models[model].pricing());
            Arc::new(Cascade::new(
                options,
                scorer,
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
            let mut built = tandem_trust::Guard::new(options, judge, registry.chat(&guard.model)?);
            if let (Some(path), Some(embedder)) = (&guard.classifier, &guard.embedder) {
                let model = TrustModel::load(path)?;
                let scorer = InputScorer::new(registry.embedder(embedder)?, model)
                    .with_context(|| format!("pipelines.{name}.classifier"))?;
                built = built.with_input_scorer(scorer);
            }
            Arc::new(built)
        }
        PipelineConfig::Verify(verify) => {
            let mut options = VerifyOptions::new(name);
            options.abstain_below = verify.abstain_below;
            if let Some(text) = &verify.abstain_text {
                options.abstain_text = text.clone();
            }
            options.samples = verify.samples;
            options.sample_temperature = verify.sample_temperature;
            options.max_claims = verify.max_claims;
            options.confidence = verify.confidence;
            if let Some(path) = &verify.calibration {
                options.calibration = Some(
                    Calibration::load(path, verify.confidence)
                        .with_context(|| format!("pipelines.{name}.calibration"))?,
                );
            }
            if let Some(path) = &verify.grounding {
                let model = GroundingModel::load(path)
                    .with_context(|| format!("pipelines.{name}.grounding"))?;
                if model.verifier != verify.verifier {
                    bail!(
                        "pipelines.{name}.grounding: {} was fitted to the probabilities of `{}`, \
                         not of the verifier `{}`",
                        path.display(),
                        model.verifier,
                        verify.verifier
                    );
                }
                options.grounding = Some(model);
            }
            Arc::new(Verify::new(
                options,
                registry.chat(&verify.verifier)?,
                registry.chat(&verify.model)?,
            ))
        }
        PipelineConfig::Redact(redact) => {
            let mut guard = guard(
                name,
                &redact.detect,
                &redact.names,
                redact.max_text_bytes,
                redact.audit,
                registry,
                store,
            )?;
            guard.placeholders = redact.placeholders;
            Arc::new(Redact::new(guard, registry.chat(&redact.model)?))
        }
        PipelineConfig::KeepLocal(keep) => {
            let guard = guard(
                name,
                &keep.detect,
                &keep.names,
                keep.max_text_bytes,
                keep.audit,
                registry,
                store,
            )?;
            Arc::new(KeepLocal::new(
                guard,
                registry.chat(&keep.local)?,
                registry.chat(&keep.remote)?,
                keep.threshold,
            ))
        }
        PipelineConfig::Rewrite(rewrite) => {
            let mut guard = guard(
                name,
                &rewrite.detect,
                &rewrite.names,
                rewrite.max_text_bytes,
                rewrite.audit,
                registry,
                store,
            )?;
            guard.placeholders = rewrite.placeholders;
            Arc::new(Rewrite::new(
                guard,
                registry.chat(&rewrite.local)?,
                registry.chat(&rewrite.remote)?,
            ))
        }
        PipelineConfig::Router(router) => {
            let large_pricing = config
                .single_model(&router.large)
                .map(|model| config.models[model].pricing());
            self::router(name, router, large_pricing, registry, store, read)?
        }
        PipelineConfig::Speculative(spec) => speculative(name, spec, registry)?,
        PipelineConfig::Cache(cache) => Arc::new(SemanticCache::new(
            CacheOptions {
                name: name.to_string(),
                threshold: cache.threshold,
                ttl: std::time::Duration::from_secs(cache.ttl_secs),
                max_entries: cache.max_entries,
            },
            registry.chat(&cache.model)?,
            registry.embedder(&cache.embedder)?,
            store.get()?,
        )),
        PipelineConfig::Contrastive(c) => {
            let mode = Mode::Contrastive {
                small: registry.engine(&c.small)?,
                alpha: c.alpha,
                beta: c.beta,
            };
            Arc::new(Fusion::new(name, registry.engine(&c.large)?, mode)?)
        }
        PipelineConfig::ProxyTune(p) => {
            let mode = Mode::ProxyTune {
                tuned: registry.engine(&p.tuned)?,
                untuned: registry.engine(&p.untuned)?,
            };
            Arc::new(Fusion::new(name, registry.engine(&p.large)?, mode)?)
        }
        PipelineConfig::Handoff(h) => {
            let mode = Mode::Handoff {
                small: registry.engine(&h.small)?,
                uncertainty: h.uncertainty,
                threshold: h.threshold,
                takeover: h.takeover,
            };
            Arc::new(Fusion::new(name, registry.engine(&h.large)?, mode)?)
        }
    })
}

/// The small side of cascade `name` as its pipeline is built: its small model or pipeline from
/// `registry`, scoring with its signal, and the sandbox for `shown_examples` (set up by
/// [`build_all`], or [`crate::runtime::Runtime::answer_scorer`]).
pub fn answer_scorer(
    name: &str,
    cascade: &CascadeConfig,
    registry: &Registry,
) -> Result<AnswerScorer> {
    let mut scorer =
        AnswerScorer::new(name, score_options(cascade), registry.chat(&cascade.small)?);
    if let Some(check) = &registry.examples {
        scorer = scorer.with_example_check(check.clone());
    }
    Ok(scorer)
}

fn score_options(cascade: &CascadeConfig) -> ScoreOptions {
    let mut options = ScoreOptions::new(cascade.signal);
    options.samples = cascade.samples;
    options.sample_temperature = cascade.sample_temperature;
    options.no_examples_score = cascade.no_examples_score.unwrap_or(0.0);
    options
}

/// What decides a cascade's scores besides its small model: the signal and the settings it reads.
/// A calibrated threshold is stored with it and used only while the configuration still says the
/// same.
pub fn scoring(cascade: &CascadeConfig) -> serde_json::Value {
    let options = score_options(cascade);
    let mut scoring = serde_json::json!({ "signal": options.signal });
    match options.signal {
        Signal::Agreement => {
            scoring["samples"] = options.samples.into();
            scoring["sample_temperature"] = options.sample_temperature.into();
        }
        Signal::ShownExamples => scoring["no_examples_score"] = options.no_examples_score.into(),
        Signal::MeanLogprob | Signal::MinLogprob | Signal::SelfCheck => {}
    }
    scoring
}

/// The threshold `tandem router calibrate --cascade` stored for cascade `name`, if it was
/// calibrated with the small model and scoring the configuration has now.
fn calibrated_threshold(name: &str, cascade: &CascadeConfig, store: &mut LazyStore) -> Result<f64> {
    let calibrate =
        format!("tandem router calibrate --cascade {name} --llm-share 0.3 --dataset DATASET");
    let stored = store.get()?.cascade(name)?.with_context(|| {
        format!(
            "cascade `{name}` sets no `threshold` and none was calibrated: run `{calibrate}` or set `threshold` under [pipelines.{name}]"
        )
    })?;
    let stored_scoring: serde_json::Value = serde_json::from_str(&stored.scoring)
        .with_context(|| format!("the calibration stored for cascade `{name}` does not parse"))?;
    let configured = scoring(cascade);
    if stored.small != cascade.small || stored_scoring != configured {
        bail!(
            "the threshold stored for cascade `{name}` was calibrated on the answers of `{}` scored by {stored_scoring}, but the configuration now has `{}` scored by {configured}: run `{calibrate}` again or set `threshold` under [pipelines.{name}]",
            stored.small,
            cascade.small
        );
    }
    Ok(stored.threshold)
}

/// Builds a router pipeline; a stored router's digest, and its threshold when the configuration
/// sets none, go into `read`.
fn router(
    name: &str,
    config: &RouterConfig,
    large_pricing: Option<Pricing>,
    registry: &Registry,
    store: &mut LazyStore,
    read: &mut Option<serde_json::Value>,
) -> Result<Arc<dyn ChatModel>> {
    let (scorer, stored_threshold): (Arc<dyn PromptScorer>, Option<f64>) =
        if config.router == PERPLEXITY_ROUTER {
            let engine = registry.engine(&config.small)?;
            (Arc::new(PerplexityScorer::new(engine)), None)
        } else {
            let stored = store.get()?.router(&config.router)?.with_context(|| {
                format!(
                "no stored router is called `{}`; train one with `tandem router train --name {}`",
                config.router, config.router
            )
            })?;
            let learned: LearnedRouter = serde_json::from_str(&stored.router)
                .with_context(|| format!("stored router `{}` does not parse", config.router))?;
            let embedder = registry.embedder(config.embedder.as_deref().unwrap_or_default())?;
            let digest = sha2::Sha256::digest(stored.router.as_bytes());
            let mut what = serde_json::json!({
                "router": config.router,
                "sha256": format!("{digest:x}"),
            });
            if config.threshold.is_none() {
                what["threshold"] = stored.threshold.into();
            }
            *read = Some(what);
            (
                Arc::new(LearnedScorer::new(embedder, learned)),
                stored.threshold,
            )
        };
    let threshold = config.threshold.or(stored_threshold).with_context(|| {
        format!(
            "router `{}` has no calibrated threshold: run `tandem router calibrate --name {} --llm-share 0.3` or set `threshold`",
            config.router, config.router
        )
    })?;
    Ok(Arc::new(Router::new(
        RouterOptions {
            name: name.to_string(),
            threshold,
            large_pricing,
        },
        scorer,
        registry.chat(&config.small)?,
        registry.chat(&config.large)?,
    )))
}

/// The shared part of a privacy stage: the detector, the name judge when `names` is set, the audit.
fn guard(
    name: &str,
    detect: &DetectorConfig,
    names: &Option<NameJudgeConfig>,
    max_text_bytes: usize,
    audit: bool,
    registry: &Registry,
    store: &mut LazyStore,
) -> Result<Guard> {
    let mut guard = Guard::new(name, Detector::new(detect)?);
    guard.max_text_bytes = max_text_bytes;
    if let Some(names) = names {
        let judge = NameJudge::new(names, registry.chat(&names.model)?)
            .with_context(|| format!("pipelines.{name}.names"))?;
        guard = guard.with_name_judge(judge);
    }
    if audit {
        guard = guard.with_audit(store.get()?);
    }
    Ok(guard)
}

/// The state store, opened when the first pipeline that needs it is built, then shared.
struct LazyStore {
    path: PathBuf,
    store: Option<Arc<dyn Store>>,
}

impl LazyStore {
    fn new(path: PathBuf) -> LazyStore {
        LazyStore { path, store: None }
    }

    fn get(&mut self) -> Result<Arc<dyn Store>> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&self.path)?);
        self.store = Some(store.clone());
        Ok(store)
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

#[cfg(test)]
mod tests {
    use tandem_eval::testing::{ScriptedModel, ToyDataset};
    use tandem_route::{Example, Learner};
    use tandem_store::{StoredCascade, StoredRouter};

    use super::*;

    /// A cascade and a router pipeline over two scripted models, with the state store in `dir`;
    /// `threshold` set in both when given.
    fn config(dir: &std::path::Path, threshold: Option<f64>) -> Config {
        let set = threshold.map_or(String::new(), |t| format!("threshold = {t}\n"));
        Config::parse(&format!(
            "[store]\npath = \"{}\"\n\n\
             [models.small]\nkind = \"local\"\nfile = \"small.gguf\"\n\n\
             [models.large]\nkind = \"local\"\nfile = \"large.gguf\"\n\n\
             [models.minilm]\nkind = \"embedding\"\nsource = \"all-minilm-l6-v2\"\n\n\
             [pipelines.cheap]\nstrategy = \"cascade\"\nsmall = \"small\"\nlarge = \"large\"\n\
             signal = \"mean_logprob\"\n{set}\n\
             [pipelines.routed]\nstrategy = \"router\"\nsmall = \"small\"\nlarge = \"large\"\n\
             router = \"knn\"\nembedder = \"minilm\"\n{set}",
            dir.join("state.sqlite").display()
        ))
        .unwrap()
    }

    /// What `cheap` and `routed` read from the store, built as `tandem serve` builds them.
    async fn read(config: &Config, embedder: &Arc<Embedder>) -> [Option<serde_json::Value>; 2] {
        let toy = ToyDataset::new(1);
        let mut registry = Registry::default();
        for name in ["small", "large"] {
            registry.insert_chat(name.into(), ScriptedModel::reference(name, &toy));
        }
        registry.insert_embedder("minilm".into(), embedder.clone());
        build_all(config, &mut registry).await.unwrap();
        ["cheap", "routed"].map(|name| registry.read_from_store(name).cloned())
    }

    #[tokio::test]
    async fn a_grounding_model_is_refused_for_another_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grounding.json");
        tandem_trust::grounding::GroundingModel {
            verifier: "small".into(),
            combiner: tandem_trust::classifier::Logistic {
                weights: vec![1.0, -5.0],
                bias: 1.0,
            },
            fitted_on: "test".into(),
        }
        .save(&path)
        .unwrap();
        let build = |verifier: &str| {
            let config = Config::parse(&format!(
                "[models.small]\nkind = \"local\"\nfile = \"small.gguf\"\n\n\
                 [models.large]\nkind = \"local\"\nfile = \"large.gguf\"\n\n\
                 [pipelines.checked]\nstrategy = \"verify\"\nmodel = \"large\"\n\
                 verifier = \"{verifier}\"\ngrounding = \"{}\"\n",
                path.display()
            ))
            .unwrap();
            async move {
                let toy = ToyDataset::new(1);
                let mut registry = Registry::default();
                for name in ["small", "large"] {
                    registry.insert_chat(name.into(), ScriptedModel::reference(name, &toy));
                }
                build_all(&config, &mut registry).await
            }
        };
        build("small").await.unwrap();
        let error = format!("{:#}", build("large").await.unwrap_err());
        assert!(
            error.contains("pipelines.checked.grounding") && error.contains("`small`"),
            "{error}"
        );
    }

    fn router(label: f32, threshold: f64) -> StoredRouter {
        let examples = [0.0, label].map(|label| Example {
            embedding: vec![1.0; 384],
            label,
        });
        let router = LearnedRouter::fit(Learner::Knn, &examples).unwrap();
        StoredRouter {
            name: "knn".into(),
            router: serde_json::to_string(&router).unwrap(),
            provenance: "{}".into(),
            threshold: Some(threshold),
            updated_ms: 0,
        }
    }

    #[tokio::test]
    async fn what_a_pipeline_reads_from_the_store_is_kept_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
            .resolve_local("all-minilm-l6-v2")
            .expect("run `tandem models pull all-minilm-l6-v2` first");
        let embedder = Arc::new(Embedder::load(&embedder).unwrap());
        let calibrated = config(dir.path(), None);
        let store = SqliteStore::open(&calibrated.store.path()).unwrap();
        let PipelineConfig::Cascade(cascade) = &calibrated.pipelines["cheap"] else {
            panic!("cheap is a cascade");
        };
        store
            .save_cascade(&StoredCascade {
                pipeline: "cheap".into(),
                threshold: 0.5,
                small: "small".into(),
                scoring: scoring(cascade).to_string(),
                provenance: "{}".into(),
                updated_ms: 0,
            })
            .unwrap();
        store.save_router(&router(1.0, 0.3)).unwrap();

        let [cheap, routed] = read(&calibrated, &embedder).await;
        assert_eq!(cheap, Some(serde_json::json!({ "threshold": 0.5 })));
        let routed = routed.unwrap();
        assert_eq!(routed["router"], "knn");
        assert_eq!(routed["threshold"], 0.3);
        let digest = routed["sha256"].as_str().unwrap().to_string();
        assert_eq!(digest.len(), 64, "{routed}");

        // Recalibrated, then retrained: what was read changes with each.
        store.save_router(&router(1.0, 0.4)).unwrap();
        let [_, recalibrated] = read(&calibrated, &embedder).await;
        let recalibrated = recalibrated.unwrap();
        assert_eq!(recalibrated["threshold"], 0.4);
        assert_eq!(recalibrated["sha256"], digest.as_str());
        store.save_router(&router(0.5, 0.4)).unwrap();
        let [_, retrained] = read(&calibrated, &embedder).await;
        assert_ne!(retrained.unwrap()["sha256"], digest.as_str());

        // Configured thresholds are in the configuration: only the stored router is read.
        let [cheap, routed] = read(&config(dir.path(), Some(0.2)), &embedder).await;
        assert_eq!(cheap, None);
        let routed = routed.unwrap();
        assert!(routed.get("threshold").is_none(), "{routed}");
        assert!(routed["sha256"].is_string(), "{routed}");
    }
}
