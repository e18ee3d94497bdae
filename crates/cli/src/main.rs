//! `tandem`: serve models and pipelines over an OpenAI-compatible API, talk to them from the
//! terminal, fetch models, and measure them.

mod audit;
mod bench;
mod config;
mod embed;
mod eval;
mod eval_cache;
mod eval_privacy;
mod pipeline;
mod router;
mod runtime;
mod shown_examples;
mod trust;
mod trust_verify;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatEvent, ChatModel, Completion};
use tandem_fetch::Fetcher;
use tandem_server::{router, ServerOptions, Spending};
use tandem_store::SqliteStore;

use crate::config::Config;
use crate::runtime::Runtime;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Small and large language models, working together"
)]
struct Cli {
    /// Configuration file (TOML). Without one, the embedded default is used.
    #[arg(long, global = true, env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,
    /// Where models and datasets are cached.
    #[arg(long, global = true, env = "TANDEM_HOME")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every configured model and pipeline over the OpenAI API.
    Serve {
        /// Address to listen on; overrides `server.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Answer one prompt, streaming to the terminal.
    Run {
        prompt: String,
        #[command(flatten)]
        generation: GenerationArgs,
    },
    /// Talk with a model; `/reset` forgets the conversation, `/exit` or Ctrl-D leaves.
    Chat {
        #[command(flatten)]
        generation: GenerationArgs,
    },
    /// Embed texts with an embedding model and print the vectors as JSON.
    Embed {
        /// A configured embedding model, or a catalog one (`all-minilm-l6-v2`).
        #[arg(long, short)]
        model: String,
        /// The texts; each gets one vector.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// List or download models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Evaluate models and pipelines on benchmarks (see `eval --help`).
    Eval {
        #[command(subcommand)]
        command: eval::EvalCommand,
    },
    /// The egress audit of privacy pipelines: what left the machine (see `audit --help`).
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Train, evaluate and calibrate routers from stored evaluation outcomes (see `router --help`).
    Router {
        #[command(subcommand)]
        command: router::RouterCommand,
    },
    /// Measure speed (see `bench --help`).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// The catalog, and which models are already downloaded.
    List,
    /// Download a catalog model (`smollm2-135m`, ...) or a hub file (`hf:OWNER/REPO/FILE.gguf`).
    Pull { name: String },
}

#[derive(clap::Args)]
struct GenerationArgs {
    /// Model or pipeline to use.
    #[arg(long, short, default_value = "default")]
    model: String,
    #[arg(long)]
    system: Option<String>,
    #[arg(long)]
    max_tokens: Option<u32>,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
}

impl GenerationArgs {
    fn request(&self, messages: Vec<Message>) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: self.model.clone(),
            messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            seed: self.seed,
            ..Default::default()
        }
    }

    fn first_messages(&self) -> Vec<Message> {
        self.system
            .iter()
            .map(|s| Message::new(Role::System, s.clone()))
            .collect()
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve { .. } => "info,llama-cpp-2=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(error) = run(cli).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut fetcher = Fetcher::new(
        cli.cache_dir
            .clone()
            .unwrap_or_else(tandem_fetch::default_cache_dir),
    );
    fetcher.show_progress = true;
    match cli.command {
        Command::Serve { listen } => {
            let config = Config::load(cli.config.as_deref())?;
            serve(config, &fetcher, listen).await
        }
        Command::Run { prompt, generation } => {
            let config = Config::load(cli.config.as_deref())?;
            let runtime =
                Runtime::load(config, &fetcher, std::slice::from_ref(&generation.model)).await?;
            let model = runtime.model(&generation.model)?;
            let mut messages = generation.first_messages();
            messages.push(Message::new(Role::User, prompt));
            print_answer(model.as_ref(), generation.request(messages)).await?;
            Ok(())
        }
        Command::Chat { generation } => {
            let config = Config::load(cli.config.as_deref())?;
            let runtime =
                Runtime::load(config, &fetcher, std::slice::from_ref(&generation.model)).await?;
            chat(runtime.model(&generation.model)?.as_ref(), &generation).await
        }
        Command::Embed { model, texts } => {
            let config = Config::load(cli.config.as_deref())?;
            embed::run(config, &fetcher, model, texts).await
        }
        Command::Models { command } => match command {
            ModelsCommand::List => {
                for (model, path) in fetcher.list() {
                    let state = match path {
                        Some(path) => path.display().to_string(),
                        None => "not downloaded".to_string(),
                    };
                    println!("{:<20} {:<48} {}", model.name, model.description, state);
                }
                Ok(())
            }
            ModelsCommand::Pull { name } => {
                let path = fetcher.pull(&name).await?;
                println!("{}", path.display());
                Ok(())
            }
        },
        Command::Eval { command } => {
            let config = Config::load(cli.config.as_deref())?;
            eval::run(command, config, &fetcher).await
        }
        Command::Audit { command } => {
            let config = Config::load(cli.config.as_deref())?;
            audit::run(command, &config)
        }
        Command::Router { mut command } => {
            let config = Config::load(cli.config.as_deref())?;
            if config.eval.allow_unisolated {
                command.allow_unisolated();
            }
            router::run(command, config, &fetcher).await
        }
        Command::Bench { command } => {
            let config = Config::load(cli.config.as_deref())?;
            bench::run(command, config, &fetcher).await
        }
    }
}

async fn serve(config: Config, fetcher: &Fetcher, listen: Option<String>) -> Result<()> {
    let listen = listen.unwrap_or_else(|| config.server.listen.clone());
    let api_keys = match &config.server.api_keys_env {
        Some(var) => api_keys_from(var)?,
        None => Vec::new(),
    };
    let options = ServerOptions {
        api_keys,
        max_body_bytes: config.server.max_body_bytes,
        spending: spending(&config)?,
    };
    let runtime = Runtime::load(config, fetcher, &[]).await?;
    let pipelines = runtime.pipelines();
    let names: Vec<&str> = pipelines.names().collect();
    tracing::info!(pipelines = ?names, auth = !options.api_keys.is_empty(), "serving");
    let app = router(pipelines.clone(), options);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Per-key spending on the state store, with the budgets of `[budgets]`; `None` without it.
fn spending(config: &Config) -> Result<Option<Arc<Spending>>> {
    let Some(budgets) = &config.budgets else {
        return Ok(None);
    };
    let store = SqliteStore::open(&config.store.path())?;
    let mut spending = Spending::new(Arc::new(store), budgets.default_usd);
    for (name, key) in &budgets.keys {
        let tenant = match (&key.sha256, &key.key_env) {
            (Some(hash), _) => hash.to_ascii_lowercase(),
            (None, Some(var)) => {
                let value = std::env::var(var).with_context(|| {
                    format!("budgets.keys.{name}.key_env names `{var}`, which is not set")
                })?;
                tandem_server::tenant_id(value.trim())
            }
            (None, None) => unreachable!("the configuration check requires one"),
        };
        spending = spending.with_key(tenant, name, key.usd);
    }
    Ok(Some(Arc::new(spending)))
}

/// The bearer keys in environment variable `var` (comma-separated). A variable that is unset or
/// holds no key is an error: the configuration asked for authentication, and serving without it
/// would open the API to anyone.
fn api_keys_from(var: &str) -> Result<Vec<String>> {
    let value = match std::env::var(var) {
        Ok(value) => value,
        Err(std::env::VarError::NotPresent) => anyhow::bail!(
            "`server.api_keys_env` names the environment variable `{var}`, which is not set; \
             set it to one or more comma-separated API keys, or remove `api_keys_env` to serve \
             without authentication"
        ),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("the environment variable `{var}` (`server.api_keys_env`) is not UTF-8")
        }
    };
    let keys: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect();
    if keys.is_empty() {
        anyhow::bail!(
            "the environment variable `{var}` (`server.api_keys_env`) holds no API key; \
             set it to one or more comma-separated keys, or remove `api_keys_env` to serve \
             without authentication"
        );
    }
    Ok(keys)
}

/// Streams an answer to stdout and a one-line summary to stderr; returns the text.
async fn print_answer(model: &dyn ChatModel, request: ChatCompletionRequest) -> Result<String> {
    let mut stream = model.stream(request).await?;
    let mut text = String::new();
    let mut stdout = std::io::stdout();
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta { text: piece, .. } => {
                stdout.write_all(piece.as_bytes())?;
                stdout.flush()?;
                text.push_str(&piece);
            }
            // The command line offers no tools, so no pipeline calls one.
            ChatEvent::ToolCall(call) => anyhow::bail!("unexpected tool call: {call:?}"),
            ChatEvent::Done(done) => {
                println!();
                eprintln!("{}", summary(&done));
            }
        }
    }
    Ok(text)
}

/// One line of figures, then one line per strategy that handled the request.
fn summary(done: &Completion) -> String {
    let report = &done.report;
    let seconds = report.latency_ms / 1000.0;
    let mut summary = format!(
        "[{}: {} prompt + {} completion tokens, {:.2} s, {:.1} tokens/s, ${:.6}, finish: {:?}]",
        report.model,
        report.prompt_tokens,
        report.completion_tokens,
        seconds,
        f64::from(report.completion_tokens) / seconds.max(1e-9),
        report.cost_usd,
        done.finish_reason,
    );
    for entry in &report.strategies {
        let details = serde_json::Value::Object(entry.details.clone());
        summary.push_str(&format!(
            "\n[{} ({}): {details}]",
            entry.pipeline, entry.strategy
        ));
    }
    summary
}

async fn chat(model: &dyn ChatModel, generation: &GenerationArgs) -> Result<()> {
    let mut messages = generation.first_messages();
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                messages = generation.first_messages();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::new(Role::User, line));
        match print_answer(model, generation.request(messages.clone())).await {
            Ok(answer) => messages.push(Message::new(Role::Assistant, answer)),
            Err(error) => {
                messages.pop();
                eprintln!("error: {error:#}");
            }
        }
    }
}
