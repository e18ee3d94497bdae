//! `tandem audit`: the egress audit of privacy pipelines, shown as a table or exported as JSON lines
//! or CSV. Records hold hashes, sizes and counts of redacted kinds, never a value.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use tandem_store::{EgressQuery, EgressRecord, SqliteStore, Store};

use crate::config::Config;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The latest records, one line each.
    Show {
        #[command(flatten)]
        filter: Filter,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Every matching record, oldest first, to stdout.
    Export {
        #[command(flatten)]
        filter: Filter,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
}

#[derive(clap::Args)]
pub struct Filter {
    /// The state store [default: `[store] path`, else the user's data directory].
    #[arg(long)]
    db: Option<PathBuf>,
    /// Only this pipeline's records.
    #[arg(long)]
    pipeline: Option<String>,
    /// Only records at or after this Unix time in milliseconds.
    #[arg(long)]
    since_ms: Option<i64>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

pub fn run(command: AuditCommand, config: &Config) -> Result<()> {
    let (filter, limit) = match &command {
        AuditCommand::Show { filter, limit } => (filter, Some(*limit)),
        AuditCommand::Export { filter, .. } => (filter, None),
    };
    let path = filter.db.clone().unwrap_or_else(|| config.store.path());
    if !path.exists() {
        anyhow::bail!(
            "no egress audit at {}: nothing has been sent through a privacy pipeline with this store",
            path.display()
        );
    }
    let store = SqliteStore::open(&path)?;
    let records = store.egress(&EgressQuery {
        since_ms: filter.since_ms,
        pipeline: filter.pipeline.clone(),
        limit,
    })?;
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::Show { .. } => show(&mut out, &records)?,
        AuditCommand::Export {
            format: Format::Jsonl,
            ..
        } => {
            for record in &records {
                writeln!(out, "{}", serde_json::to_string(record)?)?;
            }
        }
        AuditCommand::Export {
            format: Format::Csv,
            ..
        } => csv(&mut out, &records)?,
    }
    out.flush().context("cannot write the audit")
}

/// `email:2 secret:1`
fn redacted(record: &EgressRecord) -> String {
    let kinds: Vec<String> = record
        .redacted
        .iter()
        .map(|(kind, n)| format!("{kind}:{n}"))
        .collect();
    if kinds.is_empty() {
        "-".into()
    } else {
        kinds.join(" ")
    }
}

fn show(out: &mut impl Write, records: &[EgressRecord]) -> Result<()> {
    writeln!(
        out,
        "{:<14} {:<12} {:<11} {:<12} {:>8} {:<16} redacted",
        "at_ms", "pipeline", "strategy", "model", "bytes", "sha256"
    )?;
    for r in records {
        writeln!(
            out,
            "{:<14} {:<12} {:<11} {:<12} {:>8} {:<16} {}",
            r.at_ms,
            r.pipeline,
            r.strategy,
            r.model,
            r.bytes,
            &r.sha256[..r.sha256.len().min(16)],
            redacted(r)
        )?;
    }
    Ok(())
}

fn csv(out: &mut impl Write, records: &[EgressRecord]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "at_ms", "pipeline", "strategy", "model", "sha256", "bytes", "redacted",
    ])?;
    for r in records {
        writer.write_record([
            r.at_ms.to_string(),
            r.pipeline.clone(),
            r.strategy.clone(),
            r.model.clone(),
            r.sha256.clone(),
            r.bytes.to_string(),
            redacted(r),
        ])?;
    }
    writer.flush()?;
    Ok(())
}
