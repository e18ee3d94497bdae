//! The command line of `tandem eval`: [`EvalCommand`] and the option groups its subcommands share.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tandem_eval::dataset::{self, Dataset, SandboxOptions};
use tandem_eval::sandbox::Limits;
use tandem_eval::{Split, Store};

/// [`Split`] as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
    All,
}

impl From<SplitArg> for Split {
    fn from(split: SplitArg) -> Split {
        match split {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
            SplitArg::All => Split::All,
        }
    }
}

/// Where the outcome store is.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The outcome store (SQLite) [default: <cache>/eval/outcomes.sqlite]
    #[arg(long, env = "TANDEM_EVAL_DB")]
    pub db: Option<PathBuf>,
}

impl StoreArgs {
    pub fn open(&self, cache_dir: &Path) -> anyhow::Result<Store> {
        let path = self
            .db
            .clone()
            .unwrap_or_else(|| cache_dir.join("eval").join("outcomes.sqlite"));
        Ok(Store::open(&path)?)
    }
}

/// Where datasets are cached and how answers that are code get run.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Wall-clock limit for one sandboxed program, in seconds
    #[arg(long, default_value_t = 10.0)]
    pub timeout_s: f64,
    /// Memory limit (address space) for one sandboxed program, in MiB
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u64,
    /// Python for sandboxed code; any user must be able to run it [default: /usr/bin/python3]
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Where namespaces are not available, run model-written code with resource limits only
    /// (it can then use the network and write wherever you can) instead of refusing; also
    /// `[eval] allow_unisolated = true` in the configuration
    #[arg(long)]
    pub allow_unisolated: bool,
}

impl DataArgs {
    pub async fn load(
        &self,
        name: &str,
        prompt: Option<&str>,
        cache_dir: &Path,
    ) -> anyhow::Result<Arc<dyn Dataset>> {
        let options = SandboxOptions {
            limits: Limits {
                wall: Duration::try_from_secs_f64(self.timeout_s)
                    .context("--timeout-s must be a positive number of seconds")?,
                memory_bytes: self.memory_mib << 20,
                ..Limits::default()
            },
            python: self.python.clone(),
            allow_unisolated: self.allow_unisolated,
        };
        Ok(dataset::load(name, prompt, cache_dir, &options).await?)
    }
}

impl EvalCommand {
    /// Lets the command run code unisolated (`[eval] allow_unisolated` of the configuration).
    pub fn allow_unisolated(&mut self) {
        match self {
            EvalCommand::Run { data, .. }
            | EvalCommand::Rescore { data, .. }
            | EvalCommand::Datasets { data, .. } => data.allow_unisolated = true,
            EvalCommand::Report { .. }
            | EvalCommand::Export { .. }
            | EvalCommand::Privacy(_)
            | EvalCommand::ToolCalls(_)
            | EvalCommand::Cache(_)
            | EvalCommand::Trust(_) => {}
        }
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EvalCommand {
    /// Generate answers with one or more models or pipelines, score them and store every outcome.
    /// A run that was stopped resumes where it stopped.
    Run {
        /// Dataset name (see `tandem eval datasets`)
        #[arg(long)]
        dataset: String,
        /// Model or pipeline of the configuration; repeat for several
        #[arg(long = "model", required = true)]
        models: Vec<String>,
        /// How the items are asked (see `tandem eval datasets`) [default: the dataset's first]
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long, value_enum, default_value_t = SplitArg::Test)]
        split: SplitArg,
        /// Only the first N items of the split
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long)]
        top_p: Option<f32>,
        #[arg(long, default_value_t = 512)]
        max_tokens: u32,
        #[arg(long)]
        seed: Option<u64>,
        /// Generate again the items whose generation failed before
        #[arg(long)]
        retry_errors: bool,
        /// Items generated at once; a local engine decodes them in one batch (set its
        /// `parallel` at least as high)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Score the stored outputs again (after a scorer fix), without generating.
    Rescore {
        #[arg(long)]
        dataset: String,
        /// Only these models or pipelines; repeat for several [default: all]
        #[arg(long = "model")]
        models: Vec<String>,
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// A table of scores with 95% intervals, tokens, latency, throughput and cost, and plots of
    /// quality against cost and latency.
    Report {
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long, value_enum)]
        split: Option<SplitArg>,
        #[arg(long = "model")]
        models: Vec<String>,
        /// Directory for report.json, report.md (a Markdown table) and the plots
        #[arg(long, default_value = "tandem-eval-report")]
        out: PathBuf,
        #[arg(long)]
        no_plots: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write runs.json, outcomes.json and outcomes.csv.
    Export {
        /// Directory to write into
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long = "model")]
        models: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the datasets; with --check, score every reference solution to prove the scoring path
    /// (sandbox included) works on this machine.
    /// Train the guard's input classifier and measure the guard, its classifier and the
    /// jailbreak signals on held-out harmful, benign, safe-but-scary and jailbreak prompts.
    Trust(crate::trust::TrustArgs),
    Datasets {
        /// Dataset whose reference solutions to score
        #[arg(long)]
        check: Option<String>,
        #[arg(long, value_enum, default_value_t = SplitArg::All)]
        split: SplitArg,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Function-calling accuracy on Tandem's own set of 54 requests (simple, a choice of tools,
    /// parallel calls, no call), free (`tool_choice: auto`) and grammar-constrained
    /// (`tool_choice: required`), with 95% intervals.
    ToolCalls(super::tool_calls::ToolCallArgs),
    /// Precision and recall per kind of the privacy detector on a labelled set generated with a
    /// fixed seed, optionally beside Microsoft Presidio's analyzer.
    Privacy(crate::eval_privacy::PrivacyArgs),
    /// Wrong hits and hits of the semantic cache per threshold on labelled question pairs, and a
    /// threshold chosen to bound the wrong-hit rate.
    Cache(crate::eval_cache::CacheArgs),
}
