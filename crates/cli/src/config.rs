//! The configuration file: models (local GGUF, remote OpenAI-compatible, or sentence embedding),
//! named pipelines, and
//! server settings, in one TOML file typed with serde and checked at start with errors that name
//! the bad key. With no file, [`EMBEDDED_DEFAULT`] is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tandem_core::Pricing;

/// The configuration `tandem serve` uses when none is given: two local models from the catalog,
/// pulled on first use.
pub const EMBEDDED_DEFAULT: &str = r#"
[server]
listen = "127.0.0.1:8080"

[models.smollm2]
kind = "local"
source = "smollm2-135m"
context_size = 4096
parallel = 4

[models."qwen-coder-0.5b"]
kind = "local"
source = "qwen2.5-coder-0.5b"
context_size = 4096
parallel = 4

[pipelines.default]
strategy = "direct"
model = "smollm2"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub store: StoreConfig,
    /// Per-key spending and budgets; absent: costs are reported but not kept per key.
    #[serde(default)]
    pub budgets: Option<BudgetsConfig>,
}

/// `[budgets]`: what each API key spends on each pipeline is kept in the state store (`[store]`),
/// and a key whose budget is spent is answered 429 `insufficient_quota`. Spending never resets by
/// itself: raise a budget to let a key go on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsConfig {
    /// US dollars each key may spend unless `keys` gives it its own; absent: no limit (spending is
    /// still kept). On a server without API keys, the budget of all requests together.
    #[serde(default)]
    pub default_usd: Option<f64>,
    /// Keys by a name (used in /metrics and logs), each with its own budget.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyBudgetConfig>,
}

/// `[budgets.keys.NAME]`: one key, given by its SHA-256 or by an environment variable holding it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBudgetConfig {
    /// The key's SHA-256, 64 hex digits (`printf %s KEY | sha256sum`).
    #[serde(default)]
    pub sha256: Option<String>,
    /// An environment variable holding the key itself.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Its budget in US dollars; absent: `default_usd`.
    #[serde(default)]
    pub usd: Option<f64>,
}

impl BudgetsConfig {
    fn check(&self, authenticated: bool) -> Result<()> {
        let valid = |usd: Option<f64>| usd.is_none_or(|usd| usd >= 0.0 && usd.is_finite());
        if !valid(self.default_usd) {
            bail!("budgets.default_usd must be a number of dollars, at least 0");
        }
        if !self.keys.is_empty() && !authenticated {
            bail!("budgets.keys needs API keys to tell callers apart: set server.api_keys_env");
        }
        for (name, key) in &self.keys {
            if key.sha256.is_some() == key.key_env.is_some() {
                bail!("budgets.keys.{name}: set exactly one of `sha256` and `key_env`");
            }
            if let Some(hash) = &key.sha256 {
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("budgets.keys.{name}.sha256 must be 64 hex digits (the key's SHA-256)");
                }
            }
            if !valid(key.usd) {
                bail!("budgets.keys.{name}.usd must be a number of dollars, at least 0");
            }
        }
        Ok(())
    }
}

/// `[store]`: where state shared between replicas lives (the egress audit of privacy pipelines).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite file; default: `tandem_store::default_path()` (under the user's data directory).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl StoreConfig {
    pub fn path(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(tandem_store::default_path)
    }
}

/// `[eval]`: settings of `tandem eval` and of the evaluation harness's sandbox.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Run model-written code with resource limits only (network and a writable filesystem) where
    /// namespaces are not available, instead of refusing; as `--allow-unisolated` does. Also
    /// governs the sandbox of `shown_examples` cascades.
    #[serde(default)]
    pub allow_unisolated: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Environment variable holding comma-separated bearer keys; `serve` refuses to start if it
    /// is unset or holds no key.
    #[serde(default)]
    pub api_keys_env: Option<String>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            api_keys_env: None,
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Local(LocalModelConfig),
    Remote(RemoteModelConfig),
    Embedding(EmbeddingModelConfig),
}

impl ModelConfig {
    pub fn pricing(&self) -> Pricing {
        match self {
            ModelConfig::Local(local) => local.price,
            ModelConfig::Remote(remote) => remote.price,
            ModelConfig::Embedding(_) => Pricing::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalModelConfig {
    /// A catalog name (`tandem models list`) or a hub spec `hf:OWNER/REPO/FILE.gguf`.
    #[serde(default)]
    pub source: Option<String>,
    /// A GGUF file on disk.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// CPU threads; default: all cores.
    #[serde(default)]
    pub threads: Option<i32>,
    #[serde(default = "default_context_size")]
    pub context_size: u32,
    /// Requests decoded together.
    #[serde(default = "default_parallel")]
    pub parallel: u32,
    /// Requests that may wait for a sequence; more are answered 503 with `Retry-After`.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Overrides the file's chat template: a llama.cpp template name (`chatml`, `gemma`, ...).
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Layers offloaded to a GPU (with the `cuda` build).
    #[serde(default)]
    pub gpu_layers: u32,
    #[serde(default)]
    pub price: Pricing,
    /// Reuse the KV cache of an earlier request's longest common token prefix (multi-turn chats,
    /// shared system prompts), never across API keys; on by default.
    #[serde(default = "default_prompt_cache")]
    pub prompt_cache: bool,
}

fn default_prompt_cache() -> bool {
    true
}

fn default_context_size() -> u32 {
    4096
}

fn default_parallel() -> u32 {
    4
}

fn default_max_queue() -> usize {
    64
}

fn default_batch_size() -> u32 {
    512
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteModelConfig {
    /// Base URL of the API, up to and including `/v1`.
    pub base_url: String,
    /// The upstream's name for the model.
    pub model: String,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Longest silence while reading a response.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: f64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default)]
    pub price: Pricing,
}

fn default_connect_timeout() -> f64 {
    10.0
}

fn default_read_timeout() -> f64 {
    120.0
}

fn default_retries() -> u32 {
    3
}

/// A sentence-embedding model, served on `/v1/embeddings` and by `tandem embed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingModelConfig {
    /// A catalog name (`all-minilm-l6-v2`).
    #[serde(default)]
    pub source: Option<String>,
    /// A sentence-transformers directory on disk.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Texts run through the model together.
    #[serde(default = "default_embedding_batch_size")]
    pub batch_size: usize,
}

fn default_embedding_batch_size() -> usize {
    tandem_embed::DEFAULT_BATCH_SIZE
}

/// `[pipelines.NAME]`: what a request's `model` field names. `strategy` says how the pipeline
/// answers; the names it uses are models or other pipelines, so strategies nest (a router over a
/// speculative pipeline, a redaction stage around a router). Pipelines are built after the models,
/// each after the pipelines it uses; a cycle is refused when the configuration is read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum PipelineConfig {
    /// One model or pipeline answers, unchanged: a second name for it.
    Direct(DirectConfig),
    /// Private data in the request is replaced by placeholders before `model` sees it, and put
    /// back into the answer.
    Redact(RedactConfig),
    /// Requests whose private data reaches `threshold` go to `local`, the others to `remote`.
    KeepLocal(KeepLocalConfig),
    /// `local` rewrites the request without its private context, `remote` answers that, and
    /// `local` composes the answer (PAPILLON).
    Rewrite(RewriteConfig),
    /// A score of the prompt alone picks the small or the large model (`tandem router train`).
    Router(RouterConfig),
    /// The small model answers first; a confidence signal under the threshold escalates to the
    /// large one.
    Cascade(CascadeConfig),
    /// A small model judges the request before it is answered and the answer before it is
    /// released; blocked ones end with `finish_reason: "content_filter"`.
    Guard(GuardConfig),
    /// A small model checks the answer's claims against the request's system messages and
    /// reports a confidence; below `abstain_below` the answer is a clear "not sure".
    Verify(VerifyConfig),
    /// Speculative decoding: a draft proposes tokens, the target verifies several per step.
    Speculative(SpeculativeConfig),
    /// A semantic cache in front of `model`: answers of earlier requests of the same API key, found
    /// by the exact request or by a similar question with the same numbers and names.
    Cache(CacheConfig),
    /// Contrastive decoding: large log-probabilities minus `alpha` times the small model's, over
    /// the tokens the large model finds plausible.
    Contrastive(ContrastiveConfig),
    /// Proxy-tuning: large logits plus the difference between a tuned and an untuned small model.
    ProxyTune(ProxyTuneConfig),
    /// The small model generates; where it is unsure, the large one chooses the next tokens.
    Handoff(HandoffConfig),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cached model or pipeline.
    pub model: String,
    /// The embedding model the questions are compared with (under `[models]`).
    pub embedder: String,
    /// Least cosine similarity of a similarity hit (above 1: exact hits only); the default is the
    /// threshold `tandem eval cache` chose for at most 1% wrong hits with all-MiniLM-L6-v2.
    #[serde(default = "default_cache_threshold")]
    pub threshold: f32,
    /// Seconds an answer stays usable.
    #[serde(default = "default_cache_ttl_secs")]
    pub ttl_secs: u64,
    /// Most answers the pipeline keeps; the oldest go first.
    #[serde(default = "default_cache_max_entries")]
    pub max_entries: usize,
}

/// See [`CacheConfig::threshold`].
pub const DEFAULT_CACHE_THRESHOLD: f32 = 0.95;

fn default_cache_threshold() -> f32 {
    DEFAULT_CACHE_THRESHOLD
}

fn default_cache_ttl_secs() -> u64 {
    24 * 60 * 60
}

fn default_cache_max_entries() -> usize {
    10_000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// A local model, or a pipeline over local models only.
    pub local: String,
    pub remote: String,
    /// What is still replaced in the rewritten question before it leaves.
    #[serde(default)]
    pub detect: tandem_privacy::DetectorConfig,
    /// A local model that judges the capitalised words the rules left (people, organisations).
    #[serde(default)]
    pub names: Option<tandem_privacy::names::NameJudgeConfig>,
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
    #[serde(default = "default_true")]
    pub audit: bool,
    /// What stands in for a value left in the rewritten question: `tags` or `surrogates`.
    #[serde(default)]
    pub placeholders: tandem_privacy::vault::Placeholders,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    pub model: String,
    /// What to detect (`kinds`, `min_confidence`, `allow`, `deny`).
    #[serde(default)]
    pub detect: tandem_privacy::DetectorConfig,
    /// A local model that judges the capitalised words the rules left (people, organisations).
    #[serde(default)]
    pub names: Option<tandem_privacy::names::NameJudgeConfig>,
    /// Requests with more text are refused rather than inspected.
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
    /// Record every call in the egress audit (`[store]`).
    #[serde(default = "default_true")]
    pub audit: bool,
    /// What stands in for a value: `tags` (`[EMAIL_1]`) or `surrogates` (made-up values).
    #[serde(default)]
    pub placeholders: tandem_privacy::vault::Placeholders,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeepLocalConfig {
    /// A local model, or a pipeline over local models only.
    pub local: String,
    pub remote: String,
    /// The confidence of a finding (0 to 1) from which a request stays on the machine.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    #[serde(default)]
    pub detect: tandem_privacy::DetectorConfig,
    /// A local model that judges the capitalised words the rules left (people, organisations).
    #[serde(default)]
    pub names: Option<tandem_privacy::names::NameJudgeConfig>,
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
    #[serde(default = "default_true")]
    pub audit: bool,
}

fn default_max_text_bytes() -> usize {
    tandem_privacy::stage::DEFAULT_MAX_TEXT_BYTES
}

fn default_true() -> bool {
    true
}

fn default_threshold() -> f32 {
    0.8
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectConfig {
    pub model: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    pub small: String,
    pub large: String,
    /// `mean_logprob`, `min_logprob`, `self_check`, `agreement` or `shown_examples` (the share
    /// of the request's own examples the answer's code passes, run in the sandbox).
    pub signal: tandem_route::Signal,
    /// Escalate when the signal's score (in [0, 1]) is under this; default: the threshold
    /// `tandem router calibrate --cascade NAME` stored for this pipeline.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Extra sampled answers of the `agreement` signal.
    #[serde(default = "default_cascade_samples")]
    pub samples: u32,
    #[serde(default = "default_cascade_sample_temperature")]
    pub sample_temperature: f32,
    /// `shown_examples`: the score of a request that shows no example, in [0, 1]; default 0
    /// (escalate: nothing to trust the answer on); 1 keeps the small answer.
    #[serde(default)]
    pub no_examples_score: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    pub small: String,
    pub large: String,
    /// A router stored by `tandem router train`, by name; or `perplexity`: the small model's
    /// perplexity of the prompt, which needs no training (`small` must then be a local model).
    pub router: String,
    /// The embedding model (under `[models]`) a stored router embeds prompts with.
    #[serde(default)]
    pub embedder: Option<String>,
    /// Requests scoring at or above this go to the large model; default: the stored router's
    /// threshold from `tandem router calibrate`.
    #[serde(default)]
    pub threshold: Option<f64>,
}

/// `router = "perplexity"`: the router that needs no training data.
pub const PERPLEXITY_ROUTER: &str = "perplexity";

fn default_cascade_samples() -> u32 {
    4
}

fn default_cascade_sample_temperature() -> f32 {
    0.8
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// The guarded model or pipeline.
    pub model: String,
    /// The model that judges (a chat model; its token probabilities make the score).
    pub guard: String,
    /// Block at or above this score of the guard model, in [0, 1]: the answer's, and the
    /// request's when no `classifier` decides it.
    #[serde(default = "default_guard_threshold")]
    pub threshold: f64,
    #[serde(default = "default_true")]
    pub check_input: bool,
    #[serde(default = "default_true")]
    pub check_output: bool,
    /// Characters of a streamed answer held back before each check.
    #[serde(default = "default_hold_chars")]
    pub hold_chars: usize,
    /// The hazard categories; the built-in policy (14, after Llama Guard 3) when absent.
    #[serde(default)]
    pub categories: Option<Vec<tandem_trust::Category>>,
    /// A classifier file written by `tandem eval trust` that decides requests by its own rule
    /// and thresholds (the guard model names the category of a blocked one); needs `embedder`.
    #[serde(default)]
    pub classifier: Option<PathBuf>,
    /// The embedding model the classifier was trained on (`all-minilm-l6-v2`).
    #[serde(default)]
    pub embedder: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// The model or pipeline whose answers are verified.
    pub model: String,
    /// The model that checks each claim (a chat model; its token probabilities make the score).
    pub verifier: String,
    /// Answer `abstain_text` when the confidence is below this, in [0, 1]; never when absent.
    #[serde(default)]
    pub abstain_below: Option<f64>,
    #[serde(default)]
    pub abstain_text: Option<String>,
    /// Extra answers sampled from `model` for agreement; 0 leaves agreement out.
    #[serde(default)]
    pub samples: u32,
    #[serde(default = "default_sample_temperature")]
    pub sample_temperature: f32,
    /// Claims checked per answer, at most.
    #[serde(default = "default_max_claims")]
    pub max_claims: usize,
    /// A calibration map written by `tandem eval trust --calibrate`, applied to the confidence.
    #[serde(default)]
    pub calibration: Option<PathBuf>,
    /// A grounding model written by `tandem eval trust --verify` for this `verifier`: combines
    /// its probability with the words of a claim the context does not hold.
    #[serde(default)]
    pub grounding: Option<PathBuf>,
    /// What the confidence is made of: "verifier" (the claims' support, and agreement) or
    /// "answer" (the answering model's own token probability of its answer).
    #[serde(default)]
    pub confidence: tandem_trust::verify::Confidence,
}

fn default_sample_temperature() -> f32 {
    0.7
}

fn default_max_claims() -> usize {
    8
}

fn default_guard_threshold() -> f64 {
    0.5
}

fn default_hold_chars() -> usize {
    200
}

/// `strategy = "speculative"`: the answer is the target's (greedy: its argmax at every position;
/// sampled: its distribution), produced faster when drafts are accepted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpeculativeConfig {
    /// A local model: the one whose output the pipeline gives.
    pub target: String,
    /// A local model (with another vocabulary than the target's, it drafts through text), or
    /// `prompt_lookup` (drafts copied from the prompt and answer so far), or `suffix` (also from
    /// earlier requests under the same API key).
    pub draft: String,
    /// Most tokens drafted per step.
    #[serde(default = "default_k")]
    pub k: usize,
    /// A draft model stops drafting when its most probable token is less likely than this.
    #[serde(default = "default_p_min")]
    pub p_min: f32,
    /// Shortest tail of the text a lookup may continue (`prompt_lookup`, `suffix`).
    #[serde(default = "default_min_match")]
    pub min_match: usize,
    /// Fall back to plain decoding while drafting does not pay, probing again later.
    #[serde(default = "default_true")]
    pub fallback: bool,
    /// Tokens of earlier requests the suffix cache keeps per API key.
    #[serde(default = "default_suffix_tokens")]
    pub suffix_tokens: usize,
}

/// `strategy = "contrastive"`: both local models read every token (same vocabulary); the next token
/// is drawn, under the request's sampling, from `ln p_large - alpha ln p_small` over the tokens with
/// `p_large >= beta * max p_large`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastiveConfig {
    pub large: String,
    pub small: String,
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    #[serde(default = "default_beta")]
    pub beta: f32,
}

fn default_alpha() -> f32 {
    0.5
}

fn default_beta() -> f32 {
    0.1
}

/// `strategy = "proxy_tune"`: `logits_large + (logits_tuned - logits_untuned)`, three local models
/// of one vocabulary.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTuneConfig {
    pub large: String,
    pub tuned: String,
    pub untuned: String,
}

/// `strategy = "handoff"`: `small` generates; where its uncertainty says it is unsure, `large`
/// reads what it missed in one evaluation and chooses the next `takeover` tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffConfig {
    pub large: String,
    pub small: String,
    /// `top_probability` (unsure at or under the threshold: 0 never hands off, 1 always) or
    /// `entropy` (in nats, unsure at or above it).
    #[serde(default = "default_uncertainty")]
    pub uncertainty: tandem_llama::fusion::Uncertainty,
    pub threshold: f64,
    /// Tokens the large model chooses per hand-off.
    #[serde(default = "default_takeover")]
    pub takeover: usize,
}

fn default_uncertainty() -> tandem_llama::fusion::Uncertainty {
    tandem_llama::fusion::Uncertainty::TopProbability
}

fn default_takeover() -> usize {
    1
}

/// The `draft` values that are not model names.
pub const DRAFTLESS: [&str; 2] = ["prompt_lookup", "suffix"];

fn default_k() -> usize {
    8
}

fn default_p_min() -> f32 {
    0.75
}

fn default_min_match() -> usize {
    2
}

fn default_suffix_tokens() -> usize {
    1_000_000
}

/// What a pipeline needs from a name it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A chat model or a pipeline, called through `ChatModel`.
    Chat,
    /// A local model, used at the token level (its tokens and logits).
    Local,
    /// A sentence-embedding model.
    Embedding,
}

/// One name a pipeline uses: the key that holds it, the name, and what the strategy needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use<'a> {
    pub key: &'static str,
    pub name: &'a str,
    pub need: Need,
}

impl PipelineConfig {
    /// Every model and pipeline this pipeline calls.
    pub fn uses(&self) -> Vec<Use<'_>> {
        let chat = |key, name| Use {
            key,
            name,
            need: Need::Chat,
        };
        let local = |key, name| Use {
            key,
            name,
            need: Need::Local,
        };
        match self {
            PipelineConfig::Direct(direct) => vec![chat("model", &direct.model)],
            PipelineConfig::Cascade(cascade) => {
                vec![chat("small", &cascade.small), chat("large", &cascade.large)]
            }
            PipelineConfig::Redact(RedactConfig { model, names, .. }) => {
                let mut uses = vec![chat("model", model)];
                uses.extend(names.as_ref().map(|n| chat("names.model", &n.model)));
                uses
            }
            PipelineConfig::KeepLocal(KeepLocalConfig {
                local,
                remote,
                names,
                ..
            })
            | PipelineConfig::Rewrite(RewriteConfig {
                local,
                remote,
                names,
                ..
            }) => {
                let mut uses = vec![chat("local", local), chat("remote", remote)];
                uses.extend(names.as_ref().map(|n| chat("names.model", &n.model)));
                uses
            }
            PipelineConfig::Router(router) => {
                let mut uses = vec![chat("small", &router.small), chat("large", &router.large)];
                if router.router == PERPLEXITY_ROUTER {
                    uses[0].need = Need::Local;
                }
                if let Some(embedder) = &router.embedder {
                    uses.push(Use {
                        key: "embedder",
                        name: embedder,
                        need: Need::Embedding,
                    });
                }
                uses
            }
            PipelineConfig::Guard(guard) => {
                let mut uses = vec![chat("model", &guard.model), chat("guard", &guard.guard)];
                if let Some(embedder) = &guard.embedder {
                    uses.push(Use {
                        key: "embedder",
                        name: embedder,
                        need: Need::Embedding,
                    });
                }
                uses
            }
            PipelineConfig::Cache(cache) => vec![
                chat("model", &cache.model),
                Use {
                    key: "embedder",
                    name: &cache.embedder,
                    need: Need::Embedding,
                },
            ],
            PipelineConfig::Contrastive(ContrastiveConfig { large, small, .. })
            | PipelineConfig::Handoff(HandoffConfig { large, small, .. }) => {
                vec![local("large", large), local("small", small)]
            }
            PipelineConfig::ProxyTune(proxy) => vec![
                local("large", &proxy.large),
                local("tuned", &proxy.tuned),
                local("untuned", &proxy.untuned),
            ],
            PipelineConfig::Verify(verify) => {
                vec![
                    chat("model", &verify.model),
                    chat("verifier", &verify.verifier),
                ]
            }
            PipelineConfig::Speculative(spec) => {
                let mut uses = vec![Use {
                    key: "target",
                    name: &spec.target,
                    need: Need::Local,
                }];
                if !DRAFTLESS.contains(&spec.draft.as_str()) {
                    uses.push(Use {
                        key: "draft",
                        name: &spec.draft,
                        need: Need::Local,
                    });
                }
                uses
            }
        }
    }

    /// Settings that no single key can check: ranges, combinations.
    fn check_settings(&self, name: &str) -> Result<()> {
        match self {
            // Privacy stages need the models' kinds too: `Config::check_privacy`.
            PipelineConfig::Direct(_)
            | PipelineConfig::Redact(_)
            | PipelineConfig::KeepLocal(_)
            | PipelineConfig::Rewrite(_)
            | PipelineConfig::ProxyTune(_) => {}
            PipelineConfig::Contrastive(c) => {
                if !(c.alpha.is_finite() && c.alpha >= 0.0) {
                    bail!(
                        "pipelines.{name}.alpha must be a number of at least 0, got {}",
                        c.alpha
                    );
                }
                if !(0.0..=1.0).contains(&c.beta) {
                    bail!(
                        "pipelines.{name}.beta must be between 0 and 1, got {}",
                        c.beta
                    );
                }
            }
            PipelineConfig::Handoff(h) => {
                if !(h.threshold.is_finite() && h.threshold >= 0.0) {
                    bail!(
                        "pipelines.{name}.threshold must be a number of at least 0, got {}",
                        h.threshold
                    );
                }
                if h.takeover == 0 {
                    bail!("pipelines.{name}.takeover must be at least 1");
                }
            }
            PipelineConfig::Speculative(spec) => {
                if spec.k == 0 || spec.min_match == 0 || spec.suffix_tokens == 0 {
                    bail!("pipelines.{name}: k, min_match and suffix_tokens must be at least 1");
                }
                if !(0.0..=1.0).contains(&spec.p_min) {
                    bail!(
                        "pipelines.{name}.p_min must be between 0 and 1, got {}",
                        spec.p_min
                    );
                }
            }
            PipelineConfig::Router(router) => {
                let perplexity = router.router == PERPLEXITY_ROUTER;
                if perplexity && router.threshold.is_none() {
                    bail!("pipelines.{name}.threshold is needed with router = \"perplexity\" (mean negative log-likelihood per token, in nats)");
                }
                if perplexity && router.embedder.is_some() {
                    bail!("pipelines.{name}.embedder is not used with router = \"perplexity\"; remove it");
                }
                if !perplexity && router.embedder.is_none() {
                    bail!("pipelines.{name}.embedder must name the embedding model the stored router `{}` was trained with", router.router);
                }
                if router.threshold.is_some_and(|t| !t.is_finite()) {
                    bail!("pipelines.{name}.threshold must be a number");
                }
            }
            PipelineConfig::Cascade(cascade) => {
                if cascade
                    .threshold
                    .is_some_and(|t| !(t >= 0.0 && t.is_finite()))
                {
                    bail!("pipelines.{name}.threshold must be a number of at least 0 (scores are in [0, 1])");
                }
                if cascade.samples == 0 {
                    bail!("pipelines.{name}.samples must be at least 1");
                }
                if !(cascade.sample_temperature > 0.0 && cascade.sample_temperature.is_finite()) {
                    bail!("pipelines.{name}.sample_temperature must be above 0");
                }
                if let Some(score) = cascade.no_examples_score {
                    if cascade.signal != tandem_route::Signal::ShownExamples {
                        bail!("pipelines.{name}.no_examples_score is only used with signal = \"shown_examples\"; remove it");
                    }
                    if !(0.0..=1.0).contains(&score) {
                        bail!("pipelines.{name}.no_examples_score must be a score in [0, 1]");
                    }
                }
            }
            PipelineConfig::Guard(guard) => check_guard(name, guard)?,
            PipelineConfig::Cache(cache) => {
                if !(cache.threshold > 0.0 && cache.threshold.is_finite()) {
                    bail!("pipelines.{name}.threshold must be a cosine similarity above 0 (above 1: exact hits only)");
                }
                if cache.ttl_secs == 0 || cache.max_entries == 0 {
                    bail!("pipelines.{name}: ttl_secs and max_entries must be at least 1");
                }
            }
            PipelineConfig::Verify(verify) => check_verify(name, verify)?,
        }
        Ok(())
    }
}

impl Config {
    /// Reads `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (text, origin) = match path {
            Some(path) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?,
                path.display().to_string(),
            ),
            None => (
                EMBEDDED_DEFAULT.to_string(),
                "the embedded default".to_string(),
            ),
        };
        Config::parse(&text).with_context(|| format!("invalid configuration in {origin}"))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        for (name, model) in &self.models {
            match model {
                ModelConfig::Local(local) => {
                    if local.source.is_some() == local.file.is_some() {
                        bail!("models.{name}: set exactly one of `source` and `file`");
                    }
                    for (key, value) in [
                        ("context_size", local.context_size),
                        ("parallel", local.parallel),
                        ("batch_size", local.batch_size),
                    ] {
                        if value == 0 {
                            bail!("models.{name}.{key} must be at least 1");
                        }
                    }
                    if local.max_queue == 0 {
                        bail!("models.{name}.max_queue must be at least 1");
                    }
                    if local.threads.is_some_and(|t| t < 1) {
                        bail!("models.{name}.threads must be at least 1");
                    }
                }
                ModelConfig::Remote(remote) => {
                    if !(remote.base_url.starts_with("http://")
                        || remote.base_url.starts_with("https://"))
                    {
                        bail!(
                            "models.{name}.base_url must start with http:// or https://, got {:?}",
                            remote.base_url
                        );
                    }
                    for (key, value) in [
                        ("connect_timeout_secs", remote.connect_timeout_secs),
                        ("read_timeout_secs", remote.read_timeout_secs),
                    ] {
                        if !(value > 0.0 && value.is_finite()) {
                            bail!("models.{name}.{key} must be a positive number of seconds");
                        }
                    }
                }
                ModelConfig::Embedding(embedding) => check_embedding(name, embedding)?,
            }
            let price = model.pricing();
            if price.input_per_million < 0.0 || price.output_per_million < 0.0 {
                bail!("models.{name}.price must not be negative");
            }
        }
        for (name, pipeline) in &self.pipelines {
            if self.models.contains_key(name) {
                bail!("pipelines.{name}: a model has the same name; names must be unique");
            }
            for used in pipeline.uses() {
                self.check_use(name, used)?;
            }
            pipeline.check_settings(name)?;
        }
        self.pipeline_order()?;
        for (name, pipeline) in &self.pipelines {
            self.check_privacy(name, pipeline)?;
        }
        if let Some(budgets) = &self.budgets {
            budgets.check(self.server.api_keys_env.is_some())?;
        }
        Ok(())
    }
}

impl Config {
    /// Detector settings are compiled now, so a bad deny-list entry stops the start; a
    /// `keep_local` pipeline's `local` must not reach a remote model.
    fn check_privacy(&self, name: &str, pipeline: &PipelineConfig) -> Result<()> {
        let (detect, names, max_text_bytes) = match pipeline {
            PipelineConfig::Direct(_)
            | PipelineConfig::Cascade(_)
            | PipelineConfig::Router(_)
            | PipelineConfig::Speculative(_)
            | PipelineConfig::Cache(_)
            | PipelineConfig::Contrastive(_)
            | PipelineConfig::ProxyTune(_)
            | PipelineConfig::Handoff(_)
            | PipelineConfig::Guard(_)
            | PipelineConfig::Verify(_) => return Ok(()),
            PipelineConfig::Redact(redact) => {
                (&redact.detect, &redact.names, redact.max_text_bytes)
            }
            PipelineConfig::KeepLocal(keep) => {
                if !(0.0..=1.0).contains(&keep.threshold) {
                    bail!("pipelines.{name}.threshold must be between 0 and 1");
                }
                self.check_local(name, "local", &keep.local)?;
                (&keep.detect, &keep.names, keep.max_text_bytes)
            }
            PipelineConfig::Rewrite(rewrite) => {
                self.check_local(name, "local", &rewrite.local)?;
                (&rewrite.detect, &rewrite.names, rewrite.max_text_bytes)
            }
        };
        if max_text_bytes == 0 {
            bail!("pipelines.{name}.max_text_bytes must be at least 1");
        }
        tandem_privacy::Detector::new(detect)
            .with_context(|| format!("pipelines.{name}.detect"))?;
        if let Some(names) = names {
            self.check_local(name, "names.model", &names.model)?;
            names
                .check()
                .map_err(|e| anyhow::anyhow!("pipelines.{name}.{e}"))?;
        }
        Ok(())
    }

    fn check_local(&self, pipeline: &str, key: &str, local: &str) -> Result<()> {
        for model in self.models_under(local)? {
            if !matches!(self.models[model], ModelConfig::Local(_)) {
                bail!(
                    "pipelines.{pipeline}.{key} names `{local}`, which reaches `{model}`, {}; \
                     `{key}` must run on this machine",
                    self.models[model].described()
                );
            }
        }
        Ok(())
    }

    fn check_use(&self, pipeline: &str, used: Use<'_>) -> Result<()> {
        let Use { key, name, need } = used;
        let at = format!("pipelines.{pipeline}.{key} names `{name}`");
        let model = match (self.models.get(name), self.pipelines.contains_key(name)) {
            (Some(model), _) => model,
            (None, true) if need == Need::Chat => return Ok(()),
            (None, true) => bail!("{at}, a pipeline; {}", need.wanted()),
            (None, false) => bail!(
                "{at}, which is neither a model nor a pipeline (known: {})",
                self.names().join(", ")
            ),
        };
        let fits = match need {
            Need::Chat => !matches!(model, ModelConfig::Embedding(_)),
            Need::Local => matches!(model, ModelConfig::Local(_)),
            Need::Embedding => matches!(model, ModelConfig::Embedding(_)),
        };
        if !fits {
            bail!("{at}, {}; {}", model.described(), need.wanted());
        }
        Ok(())
    }

    /// Every pipeline, each after the pipelines it uses; an error names a cycle.
    pub fn pipeline_order(&self) -> Result<Vec<&str>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            config: &'a Config,
            name: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
            order: &mut Vec<&'a str>,
        ) -> Result<()> {
            match marks.get(name) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|p| *p == name).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(name);
                    bail!("pipelines form a cycle: {}", cycle.join(" -> "));
                }
                None => {}
            }
            let Some(pipeline) = config.pipelines.get(name) else {
                return Ok(());
            };
            marks.insert(name, Mark::Visiting);
            path.push(name);
            for used in pipeline.uses() {
                visit(config, used.name, marks, path, order)?;
            }
            path.pop();
            marks.insert(name, Mark::Done);
            order.push(name);
            Ok(())
        }
        let mut marks = BTreeMap::new();
        let mut order = Vec::with_capacity(self.pipelines.len());
        for name in self.pipelines.keys() {
            visit(self, name, &mut marks, &mut Vec::new(), &mut order)?;
        }
        Ok(order)
    }

    /// The models that `name` (a model or a pipeline) calls, directly or through other pipelines.
    pub fn models_under(&self, name: &str) -> Result<Vec<&str>> {
        if self.models.contains_key(name) {
            let (name, _) = self.models.get_key_value(name).expect("checked above");
            return Ok(vec![name.as_str()]);
        }
        let Some(pipeline) = self.pipelines.get(name) else {
            bail!(
                "no model or pipeline is called `{name}` (known: {})",
                self.names().join(", ")
            );
        };
        let mut models = Vec::new();
        for used in pipeline.uses() {
            models.extend(self.models_under(used.name)?);
        }
        models.sort_unstable();
        models.dedup();
        Ok(models)
    }

    /// The model behind `name` when it is a model or a chain of `direct` pipelines; `None` for a
    /// pipeline that combines models.
    pub fn single_model(&self, name: &str) -> Option<&str> {
        if let Some((name, _)) = self.models.get_key_value(name) {
            return Some(name);
        }
        match self.pipelines.get(name)? {
            PipelineConfig::Direct(direct) => self.single_model(&direct.model),
            // A miss is the model's answer, at the model's price.
            PipelineConfig::Cache(cache) => self.single_model(&cache.model),
            PipelineConfig::Cascade(_)
            | PipelineConfig::Redact(_)
            | PipelineConfig::KeepLocal(_)
            | PipelineConfig::Rewrite(_)
            | PipelineConfig::Router(_)
            | PipelineConfig::Speculative(_)
            | PipelineConfig::Contrastive(_)
            | PipelineConfig::ProxyTune(_)
            | PipelineConfig::Handoff(_)
            | PipelineConfig::Guard(_)
            | PipelineConfig::Verify(_) => None,
        }
    }

    /// Every model and pipeline name, models first.
    pub fn names(&self) -> Vec<String> {
        self.models
            .keys()
            .chain(self.pipelines.keys())
            .cloned()
            .collect()
    }
}

impl ModelConfig {
    fn described(&self) -> &'static str {
        match self {
            ModelConfig::Local(_) => "a local model",
            ModelConfig::Remote(_) => "a remote model",
            ModelConfig::Embedding(_) => "an embedding model",
        }
    }
}

impl Need {
    fn wanted(self) -> &'static str {
        match self {
            Need::Chat => "this key needs a chat model or a pipeline",
            Need::Local => {
                "this key needs a local model (the strategy reads its tokens and logits)"
            }
            Need::Embedding => "this key needs an embedding model",
        }
    }
}

fn check_verify(name: &str, verify: &VerifyConfig) -> Result<()> {
    if let Some(t) = verify.abstain_below {
        if !(0.0..=1.0).contains(&t) {
            bail!(
                "pipelines.{name}.abstain_below must be in [0, 1] (confidences are probabilities)"
            );
        }
    }
    if verify.abstain_text.is_some() && verify.abstain_below.is_none() {
        bail!("pipelines.{name}.abstain_text needs abstain_below");
    }
    if !(verify.sample_temperature > 0.0 && verify.sample_temperature.is_finite()) {
        bail!("pipelines.{name}.sample_temperature must be above 0");
    }
    if verify.max_claims == 0 {
        bail!("pipelines.{name}.max_claims must be at least 1");
    }
    Ok(())
}

fn check_guard(name: &str, guard: &GuardConfig) -> Result<()> {
    if !(0.0..=1.0).contains(&guard.threshold) {
        bail!("pipelines.{name}.threshold must be in [0, 1] (scores are probabilities)");
    }
    if guard.hold_chars == 0 {
        bail!("pipelines.{name}.hold_chars must be at least 1");
    }
    if !guard.check_input && !guard.check_output {
        bail!("pipelines.{name}: set check_input or check_output, or the guard does nothing");
    }
    if guard.classifier.is_some() != guard.embedder.is_some() {
        bail!("pipelines.{name}: `classifier` and `embedder` go together (the classifier reads the embedder's vectors)");
    }
    if guard.classifier.is_some() && !guard.check_input {
        bail!("pipelines.{name}.classifier scores requests, but check_input is false");
    }
    if let Some(categories) = &guard.categories {
        tandem_trust::Policy::new(categories.clone())
            .with_context(|| format!("pipelines.{name}.categories"))?;
    }
    Ok(())
}

fn check_embedding(name: &str, embedding: &EmbeddingModelConfig) -> Result<()> {
    if embedding.source.is_some() == embedding.dir.is_some() {
        bail!("models.{name}: set exactly one of `source` and `dir`");
    }
    if embedding.batch_size == 0 {
        bail!("models.{name}.batch_size must be at least 1");
    }
    if let Some(source) = &embedding.source {
        match tandem_fetch::find(source).map(|model| model.format) {
            Some(tandem_fetch::Format::ZipDirectory { .. }) => {}
            Some(tandem_fetch::Format::Gguf { .. }) => bail!(
                "models.{name}.source: `{source}` is a GGUF chat model, not an embedding model"
            ),
            None => bail!(
                "models.{name}.source: `{source}` is not in the catalog (known: {})",
                tandem_fetch::known_names()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!("{:#}", Config::parse(text).unwrap_err())
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let config = Config::parse(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(config.single_model("default"), Some("smollm2"));
        assert!(matches!(config.models["smollm2"], ModelConfig::Local(_)));
    }

    #[test]
    fn the_prompt_cache_is_on_unless_a_model_turns_it_off() {
        let local = |config: &Config, name: &str| match &config.models[name] {
            ModelConfig::Local(local) => local.prompt_cache,
            _ => panic!("{name} is local"),
        };
        let config = Config::parse(EMBEDDED_DEFAULT).unwrap();
        assert!(local(&config, "smollm2"));
        let off = EMBEDDED_DEFAULT.replace(
            "source = \"smollm2-135m\"\n",
            "source = \"smollm2-135m\"\nprompt_cache = false\n",
        );
        let config = Config::parse(&off).unwrap();
        assert!(!local(&config, "smollm2"));
        assert!(local(&config, "qwen-coder-0.5b"));
    }

    #[test]
    fn running_code_unisolated_is_off_unless_the_eval_section_allows_it() {
        assert!(
            !Config::parse(EMBEDDED_DEFAULT)
                .unwrap()
                .eval
                .allow_unisolated
        );
        let allowed = format!("{EMBEDDED_DEFAULT}\n[eval]\nallow_unisolated = true\n");
        assert!(Config::parse(&allowed).unwrap().eval.allow_unisolated);
    }

    #[test]
    fn budgets_name_keys_by_hash_or_variable_and_are_checked() {
        let keyed = format!("{EMBEDDED_DEFAULT}\n[server]\napi_keys_env = \"KEYS\"\n")
            .replace("[server]\nlisten = \"127.0.0.1:8080\"\n", "");
        let hash = "ab".repeat(32);
        let config = Config::parse(&format!(
            "{keyed}\n[budgets]\ndefault_usd = 1.5\n[budgets.keys.alice]\nsha256 = \"{hash}\"\nusd = 5\n\
             [budgets.keys.bob]\nkey_env = \"BOB_KEY\"\n"
        ))
        .unwrap();
        let budgets = config.budgets.unwrap();
        assert_eq!(budgets.default_usd, Some(1.5));
        assert_eq!(budgets.keys["alice"].usd, Some(5.0));
        assert_eq!(budgets.keys["bob"].key_env.as_deref(), Some("BOB_KEY"));
        for (budgets, wanted) in [
            ("default_usd = -1", "budgets.default_usd"),
            (
                "[budgets.keys.a]\nusd = 1",
                "budgets.keys.a: set exactly one",
            ),
            (
                "[budgets.keys.a]\nsha256 = \"abc\"",
                "budgets.keys.a.sha256 must be 64",
            ),
        ] {
            let error = error_of(&format!("{keyed}\n[budgets]\n{budgets}\n"));
            assert!(error.contains(wanted), "{error}");
        }
        let error = error_of(&format!(
            "{EMBEDDED_DEFAULT}\n[budgets.keys.a]\nkey_env = \"A\"\n"
        ));
        assert!(error.contains("server.api_keys_env"), "{error}");
    }

    #[test]
    fn a_remote_model_with_prices() {
        let config = Config::parse(
            r#"
            [models.big]
            kind = "remote"
            base_url = "http://127.0.0.1:9000/v1"
            model = "gpt-x"
            api_key_env = "BIG_KEY"
            price = { input_per_million = 2.5, output_per_million = 10.0 }
            "#,
        )
        .unwrap();
        let ModelConfig::Remote(remote) = &config.models["big"] else {
            panic!("not remote")
        };
        assert_eq!(remote.model, "gpt-x");
        assert_eq!(remote.price.output_per_million, 10.0);
        assert_eq!(remote.max_retries, 3);
    }

    #[test]
    fn errors_name_the_bad_key() {
        assert!(
            error_of("[models.a]\nkind = \"local\"\nsource = \"x\"\ncontext = 5\n")
                .contains("context")
        );
        assert!(error_of("[models.a]\nkind = \"local\"\n").contains("models.a"));
        assert!(error_of("[models.a]\nkind = \"llama\"\nsource = \"x\"\n").contains("llama"));
        assert!(error_of(
            "[models.a]\nkind = \"local\"\nsource = \"x\"\n[pipelines.p]\nstrategy = \"direct\"\nmodel = \"b\"\n"
        )
        .contains("pipelines.p.model names `b`, which is neither a model nor a pipeline"));
        assert!(
            error_of("[models.a]\nkind = \"remote\"\nbase_url = \"ftp://x\"\nmodel = \"m\"\n")
                .contains("models.a.base_url")
        );
        assert!(error_of("[server]\nlisten = 5\n").contains("listen"));
    }

    #[test]
    fn max_queue_has_a_default_and_must_be_positive() {
        let local = |config: &Config| match &config.models["a"] {
            ModelConfig::Local(local) => local.max_queue,
            _ => panic!("not local"),
        };
        let base = "[models.a]\nkind = \"local\"\nsource = \"x\"\n";
        assert_eq!(local(&Config::parse(base).unwrap()), 64);
        assert_eq!(
            local(&Config::parse(&format!("{base}max_queue = 3\n")).unwrap()),
            3
        );
        assert!(error_of(&format!("{base}max_queue = 0\n")).contains("models.a.max_queue"));
        assert!(error_of(&format!("{base}max_queue = -1\n")).contains("invalid value"));
    }

    #[test]
    fn an_embedding_model() {
        let config =
            Config::parse("[models.minilm]\nkind = \"embedding\"\nsource = \"all-minilm-l6-v2\"\n")
                .unwrap();
        let ModelConfig::Embedding(embedding) = &config.models["minilm"] else {
            panic!("not an embedding model")
        };
        assert_eq!(embedding.source.as_deref(), Some("all-minilm-l6-v2"));
        assert_eq!(embedding.batch_size, tandem_embed::DEFAULT_BATCH_SIZE);
    }

    #[test]
    fn embedding_errors_name_the_bad_key() {
        let model = "[models.e]\nkind = \"embedding\"\n";
        assert!(error_of(model).contains("models.e: set exactly one of `source` and `dir`"));
        assert!(error_of(&format!("{model}source = \"smollm2-135m\"\n"))
            .contains("models.e.source: `smollm2-135m` is a GGUF chat model"));
        assert!(error_of(&format!("{model}source = \"nope\"\n"))
            .contains("models.e.source: `nope` is not in the catalog"));
        assert!(error_of(&format!("{model}dir = \"/m\"\nbatch_size = 0\n"))
            .contains("models.e.batch_size"));
        assert!(
            error_of(&format!("{model}dir = \"/m\"\ncontext_size = 5\n")).contains("context_size")
        );
        let pipeline =
            format!("{model}dir = \"/m\"\n[pipelines.p]\nstrategy = \"direct\"\nmodel = \"e\"\n");
        assert!(error_of(&pipeline).contains("pipelines.p.model names `e`, an embedding model"));
    }

    const TWO_MODELS: &str = r#"
        [models.small]
        kind = "local"
        source = "x"
        [models.big]
        kind = "remote"
        base_url = "http://127.0.0.1:9/v1"
        model = "m"
        "#;

    fn direct(name: &str, model: &str) -> String {
        format!("[pipelines.{name}]\nstrategy = \"direct\"\nmodel = \"{model}\"\n")
    }

    #[test]
    fn pipelines_nest_by_name_and_are_ordered_after_what_they_use() {
        let text = format!(
            "{TWO_MODELS}{}{}{}",
            direct("a", "b"),
            direct("b", "c"),
            direct("c", "big")
        );
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.pipeline_order().unwrap(), ["c", "b", "a"]);
        assert_eq!(config.models_under("a").unwrap(), ["big"]);
        assert_eq!(config.single_model("a"), Some("big"));
        assert_eq!(config.models_under("small").unwrap(), ["small"]);
        assert!(config.models_under("nope").is_err());
    }

    #[test]
    fn a_cycle_of_pipelines_is_refused_and_named() {
        let text = format!(
            "{TWO_MODELS}{}{}{}",
            direct("a", "b"),
            direct("b", "c"),
            direct("c", "a")
        );
        assert!(error_of(&text).contains("pipelines form a cycle: a -> b -> c -> a"));
        let itself = format!("{TWO_MODELS}{}", direct("me", "me"));
        assert!(error_of(&itself).contains("cycle: me -> me"));
    }

    #[test]
    fn a_cascade_names_two_models_and_a_signal() {
        let cascade = |rest: &str| {
            format!("{TWO_MODELS}[pipelines.c]\nstrategy = \"cascade\"\nsmall = \"small\"\nlarge = \"big\"\n{rest}")
        };
        let config = Config::parse(&cascade("signal = \"self_check\"\nthreshold = 0.7\n")).unwrap();
        let PipelineConfig::Cascade(parsed) = &config.pipelines["c"] else {
            panic!("not a cascade")
        };
        assert_eq!(parsed.signal, tandem_route::Signal::SelfCheck);
        assert_eq!(parsed.threshold, Some(0.7));
        assert_eq!(parsed.samples, 4);
        // Without a threshold, the calibrated one is used (looked up when the pipeline is built).
        let calibrated = Config::parse(&cascade("signal = \"mean_logprob\"\n")).unwrap();
        let PipelineConfig::Cascade(parsed) = &calibrated.pipelines["c"] else {
            panic!("not a cascade")
        };
        assert_eq!(parsed.threshold, None);
        assert_eq!(config.models_under("c").unwrap(), ["big", "small"]);
        assert_eq!(config.single_model("c"), None);
        assert!(error_of(&cascade("signal = \"vibes\"\nthreshold = 0.7\n")).contains("vibes"));
        assert!(
            error_of(&cascade("signal = \"agreement\"\nthreshold = -1\n"))
                .contains("pipelines.c.threshold")
        );
        assert!(error_of(&cascade(
            "signal = \"agreement\"\nthreshold = 0.5\nsamples = 0\n"
        ))
        .contains("pipelines.c.samples"));
        let examples = Config::parse(&cascade(
            "signal = \"shown_examples\"\nthreshold = 1\nno_examples_score = 1\n",
        ))
        .unwrap();
        let PipelineConfig::Cascade(parsed) = &examples.pipelines["c"] else {
            panic!("not a cascade")
        };
        assert_eq!(parsed.signal, tandem_route::Signal::ShownExamples);
        assert_eq!(parsed.no_examples_score, Some(1.0));
        assert!(error_of(&cascade(
            "signal = \"shown_examples\"\nthreshold = 1\nno_examples_score = 2\n"
        ))
        .contains("pipelines.c.no_examples_score must be a score in [0, 1]"));
        assert!(error_of(&cascade(
            "signal = \"mean_logprob\"\nthreshold = 1\nno_examples_score = 1\n"
        ))
        .contains("only used with signal = \"shown_examples\""));
    }

    #[test]
    fn a_pipeline_needs_a_known_strategy() {
        let text = format!("{TWO_MODELS}[pipelines.p]\nmodel = \"small\"\n");
        assert!(error_of(&text).contains("missing field `strategy`"));
        let text = format!("{TWO_MODELS}[pipelines.p]\nstrategy = \"magic\"\nmodel = \"small\"\n");
        assert!(error_of(&text).contains("magic"));
        let text = format!("{TWO_MODELS}{}extra = 1\n", direct("p", "small"));
        assert!(error_of(&text).contains("extra"));
    }

    #[test]
    fn a_guard_names_its_model_its_judge_and_optionally_an_embedder() {
        let embedding = "[models.minilm]\nkind = \"embedding\"\nsource = \"all-minilm-l6-v2\"\n";
        let guard = |rest: &str| {
            format!("{TWO_MODELS}{embedding}[pipelines.g]\nstrategy = \"guard\"\nmodel = \"big\"\nguard = \"small\"\n{rest}")
        };
        let config = Config::parse(&guard("")).unwrap();
        let PipelineConfig::Guard(parsed) = &config.pipelines["g"] else {
            panic!("not a guard")
        };
        assert_eq!((parsed.threshold, parsed.hold_chars), (0.5, 200));
        assert!(parsed.check_input && parsed.check_output);
        assert_eq!(config.models_under("g").unwrap(), ["big", "small"]);
        let with_classifier = guard("classifier = \"/c.json\"\nembedder = \"minilm\"\n");
        assert_eq!(
            Config::parse(&with_classifier)
                .unwrap()
                .models_under("g")
                .unwrap(),
            ["big", "minilm", "small"]
        );
        assert!(error_of(&guard("threshold = 1.5\n")).contains("pipelines.g.threshold"));
        assert!(error_of(&guard("hold_chars = 0\n")).contains("pipelines.g.hold_chars"));
        assert!(
            error_of(&guard("classifier = \"/c.json\"\n")).contains("`classifier` and `embedder`")
        );
        assert!(
            error_of(&guard("classifier = \"/c.json\"\nembedder = \"small\"\n"))
                .contains("pipelines.g.embedder names `small`, a local model")
        );
        assert!(
            error_of(&guard("check_input = false\ncheck_output = false\n"))
                .contains("does nothing")
        );
        assert!(error_of(&guard("categories = []\n")).contains("pipelines.g.categories"));
    }

    #[test]
    fn a_verifier_names_its_model_and_verifier_and_checks_its_threshold() {
        let verify = |rest: &str| {
            format!("{TWO_MODELS}[pipelines.v]\nstrategy = \"verify\"\nmodel = \"big\"\nverifier = \"small\"\n{rest}")
        };
        let config = Config::parse(&verify("abstain_below = 0.4\n")).unwrap();
        let PipelineConfig::Verify(parsed) = &config.pipelines["v"] else {
            panic!("not a verifier")
        };
        assert_eq!(
            (parsed.abstain_below, parsed.samples, parsed.max_claims),
            (Some(0.4), 0, 8)
        );
        assert_eq!(config.models_under("v").unwrap(), ["big", "small"]);
        assert!(error_of(&verify("abstain_below = 1.5\n")).contains("pipelines.v.abstain_below"));
        assert!(error_of(&verify("abstain_text = \"?\"\n")).contains("needs abstain_below"));
        assert!(error_of(&verify("max_claims = 0\n")).contains("pipelines.v.max_claims"));
    }

    #[test]
    fn privacy_pipelines_parse_and_check_their_settings() {
        let text = format!(
            "{TWO_MODELS}[pipelines.private]\nstrategy = \"redact\"\nmodel = \"big\"\n\
             detect = {{ deny = [\"Bluebird\"], min_confidence = 0.6 }}\n\
             [pipelines.careful]\nstrategy = \"keep_local\"\nlocal = \"small\"\nremote = \"private\"\n"
        );
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.pipeline_order().unwrap(), ["private", "careful"]);
        assert_eq!(config.models_under("careful").unwrap(), ["big", "small"]);
        assert_eq!(config.single_model("private"), None);

        let remote_as_local = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"keep_local\"\nlocal = \"big\"\nremote = \"big\"\n"
        );
        assert!(error_of(&remote_as_local).contains("`local` must run on this machine"));
        let rewrite = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"rewrite\"\nlocal = \"big\"\nremote = \"small\"\n"
        );
        assert!(error_of(&rewrite).contains("pipelines.p.local names `big`"));
        let bad_threshold = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"keep_local\"\nlocal = \"small\"\nremote = \"big\"\nthreshold = 2.0\n"
        );
        assert!(error_of(&bad_threshold).contains("pipelines.p.threshold"));
        let bad_deny = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"redact\"\nmodel = \"big\"\ndetect = {{ deny = [\"--\"] }}\n"
        );
        assert!(error_of(&bad_deny).contains("pipelines.p.detect"));
        let unknown_key = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"redact\"\nmodel = \"big\"\ndetect = {{ kinds = [\"dna\"] }}\n"
        );
        assert!(error_of(&unknown_key).contains("dna"));

        let judged = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"redact\"\nmodel = \"big\"\n\
             names = {{ model = \"small\", threshold = 0.4 }}\n"
        );
        let config = Config::parse(&judged).unwrap();
        assert_eq!(config.models_under("p").unwrap(), ["big", "small"]);
        let remote_judge = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"redact\"\nmodel = \"small\"\n\
             names = {{ model = \"big\" }}\n"
        );
        assert!(error_of(&remote_judge).contains("`names.model` must run on this machine"));
        let bad_judge_threshold = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"keep_local\"\nlocal = \"small\"\n\
             remote = \"big\"\nnames = {{ model = \"small\", threshold = -1.0 }}\n"
        );
        assert!(error_of(&bad_judge_threshold).contains("pipelines.p.names.threshold"));
        let no_questions = format!(
            "{TWO_MODELS}[pipelines.p]\nstrategy = \"rewrite\"\nlocal = \"small\"\n\
             remote = \"big\"\nnames = {{ model = \"small\", max_questions = 0 }}\n"
        );
        assert!(error_of(&no_questions).contains("max_questions"));
    }

    fn speculative(target: &str, draft: &str, more: &str) -> String {
        format!(
            "{TWO_MODELS}[models.tiny]\nkind = \"local\"\nsource = \"y\"\n\
             [pipelines.fast]\nstrategy = \"speculative\"\ntarget = \"{target}\"\n\
             draft = \"{draft}\"\n{more}"
        )
    }

    #[test]
    fn a_speculative_pipeline_names_local_models_or_a_draftless_source() {
        let config = Config::parse(&speculative("small", "tiny", "k = 4\np_min = 0.5\n")).unwrap();
        let PipelineConfig::Speculative(spec) = &config.pipelines["fast"] else {
            panic!("not speculative");
        };
        assert_eq!((spec.k, spec.p_min, spec.min_match), (4, 0.5, 2));
        assert!(spec.fallback);
        assert_eq!(config.models_under("fast").unwrap(), ["small", "tiny"]);
        assert_eq!(config.single_model("fast"), None);
        for draft in ["prompt_lookup", "suffix"] {
            let config = Config::parse(&speculative("small", draft, "")).unwrap();
            assert_eq!(config.models_under("fast").unwrap(), ["small"]);
        }
    }

    fn fusion(strategy: &str, more: &str) -> String {
        format!(
            "{TWO_MODELS}[models.tiny]\nkind = \"local\"\nsource = \"y\"\n\
             [pipelines.f]\nstrategy = \"{strategy}\"\nlarge = \"small\"\n{more}"
        )
    }

    #[test]
    fn fusion_pipelines_name_local_models_and_check_their_settings() {
        let config =
            Config::parse(&fusion("contrastive", "small = \"tiny\"\nalpha = 0.3\n")).unwrap();
        let PipelineConfig::Contrastive(c) = &config.pipelines["f"] else {
            panic!("not contrastive");
        };
        assert_eq!((c.alpha, c.beta), (0.3, 0.1));
        assert_eq!(config.models_under("f").unwrap(), ["small", "tiny"]);
        let config =
            Config::parse(&fusion("handoff", "small = \"tiny\"\nthreshold = 0.5\n")).unwrap();
        let PipelineConfig::Handoff(h) = &config.pipelines["f"] else {
            panic!("not handoff");
        };
        assert_eq!(
            h.uncertainty,
            tandem_llama::fusion::Uncertainty::TopProbability
        );
        assert_eq!(h.takeover, 1);
        let proxy = fusion("proxy_tune", "tuned = \"tiny\"\nuntuned = \"small\"\n");
        assert_eq!(
            Config::parse(&proxy).unwrap().models_under("f").unwrap(),
            ["small", "tiny"]
        );

        assert!(
            error_of(&fusion("contrastive", "small = \"tiny\"\nbeta = 2.0\n"))
                .contains("pipelines.f.beta")
        );
        assert!(
            error_of(&fusion("contrastive", "small = \"tiny\"\nalpha = -1.0\n"))
                .contains("pipelines.f.alpha")
        );
        assert!(error_of(&fusion(
            "handoff",
            "small = \"tiny\"\nthreshold = 0.5\ntakeover = 0\n"
        ))
        .contains("pipelines.f.takeover"));
        assert!(error_of(&fusion("handoff", "small = \"tiny\"\n")).contains("threshold"));
        assert!(error_of(&fusion(
            "handoff",
            "small = \"tiny\"\nthreshold = 0.5\nuncertainty = \"vibes\"\n"
        ))
        .contains("vibes"));
        assert!(error_of(&fusion("contrastive", "small = \"big\"\n"))
            .contains("pipelines.f.small names `big`, a remote model"));
    }

    #[test]
    fn speculative_errors_name_the_bad_key() {
        assert!(error_of(&speculative("big", "tiny", "")).contains(
            "pipelines.fast.target names `big`, a remote model; this key needs a local model"
        ));
        let nested = format!("{}{}", speculative("small", "p", ""), direct("p", "tiny"));
        assert!(error_of(&nested).contains("pipelines.fast.draft names `p`, a pipeline"));
        assert!(error_of(&speculative("small", "tiny", "p_min = 1.5\n"))
            .contains("pipelines.fast.p_min"));
        assert!(error_of(&speculative("small", "tiny", "k = 0\n")).contains("k, min_match"));
        assert!(error_of(&speculative("small", "tiny", "draft_k = 3\n")).contains("draft_k"));
    }
}
