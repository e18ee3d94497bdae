//! Prometheus metrics: the process-wide recorder and the series every request updates.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tandem_core::Report;
use tandem_store::SpendTotals;

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The recorder is global to the process; every router shares it.
pub(crate) fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe_counter!(
                "tandem_requests_total",
                "Chat completion requests by pipeline and HTTP status."
            );
            describe_counter!(
                "tandem_requests_rejected_total",
                "Chat completion requests refused without generating, by pipeline and reason \
                 (`overloaded`: the model's queue was full; answered 503 with Retry-After)."
            );
            describe_counter!(
                "tandem_tokens_total",
                "Tokens by pipeline, answering model and kind (prompt or completion)."
            );
            describe_gauge!(
                "tandem_cost_usd",
                "What answers cost by the configured prices since the start, in US dollars, by \
                 pipeline and answering model (only ever grows)."
            );
            describe_gauge!(
                "tandem_spend_usd",
                "What each API key has spent on each pipeline, in US dollars, as the state store \
                 keeps it (survives restarts); only with budgets configured."
            );
            describe_gauge!(
                "tandem_saved_usd",
                "What routers and cascades saved each API key on each pipeline against always \
                 calling their large model, in US dollars; only with budgets configured."
            );
            describe_gauge!(
                "tandem_spend_requests",
                "Answered requests counted in tandem_spend_usd, by key and pipeline."
            );
            describe_histogram!(
                "tandem_request_duration_seconds",
                Unit::Seconds,
                "Time from request to last byte, by pipeline."
            );
            describe_histogram!(
                "tandem_time_to_first_token_seconds",
                Unit::Seconds,
                "Time from request to the first streamed text, by pipeline."
            );
            handle
        })
        .clone()
}

/// Records one finished request; `pipeline` is "unknown" for names that are not served, so clients
/// cannot grow the label set.
pub(crate) fn record_request(pipeline: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("pipeline", pipeline.to_string()),
        ("status", status.to_string()),
    ];
    counter!("tandem_requests_total", &labels).increment(1);
    histogram!("tandem_request_duration_seconds", "pipeline" => pipeline.to_string())
        .record(elapsed.as_secs_f64());
}

pub(crate) fn record_rejection(pipeline: &str, reason: &str) {
    counter!(
        "tandem_requests_rejected_total",
        "pipeline" => pipeline.to_string(),
        "reason" => reason.to_string()
    )
    .increment(1);
}

pub(crate) fn record_report(report: &Report) {
    for (kind, tokens) in [
        ("prompt", report.prompt_tokens),
        ("completion", report.completion_tokens),
    ] {
        counter!(
            "tandem_tokens_total",
            "pipeline" => report.pipeline.clone(),
            "model" => report.model.clone(),
            "kind" => kind
        )
        .increment(u64::from(tokens));
    }
    gauge!(
        "tandem_cost_usd",
        "pipeline" => report.pipeline.clone(),
        "model" => report.model.clone()
    )
    .increment(report.cost_usd);
}

/// Sets one key's spending gauges on one pipeline to the store's totals.
pub(crate) fn record_spending(key: &str, totals: &SpendTotals) {
    let labels = [
        ("pipeline", totals.pipeline.clone()),
        ("key", key.to_string()),
    ];
    gauge!("tandem_spend_usd", &labels).set(totals.cost_usd);
    gauge!("tandem_saved_usd", &labels).set(totals.saved_usd);
    gauge!("tandem_spend_requests", &labels).set(totals.requests as f64);
}

pub(crate) fn record_first_token(pipeline: &str, elapsed: Duration) {
    histogram!("tandem_time_to_first_token_seconds", "pipeline" => pipeline.to_string())
        .record(elapsed.as_secs_f64());
}
