//! The per-response report: what each stage of a pipeline did for one request. Served to clients as
//! the `tandem` object of every response, and recorded by the evaluation harness.
//!
//! A stage is one model call. Collaboration strategies add their stages (a cascade's draft and
//! escalation, a router's choice) and their own fields, so one report tells the whole story.

use serde::{Deserialize, Serialize};

use crate::openai::Usage;

/// Prices of a model in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    #[serde(default)]
    pub input_per_million: f64,
    #[serde(default)]
    pub output_per_million: f64,
}

impl Pricing {
    pub fn cost(&self, usage: Usage) -> f64 {
        (f64::from(usage.prompt_tokens) * self.input_per_million
            + f64::from(usage.completion_tokens) * self.output_per_million)
            / 1_000_000.0
    }
}

/// Where a stage ran: on this machine, or behind an HTTP hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Local,
    Remote,
}

/// One model call inside a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The model's name in the configuration.
    pub model: String,
    pub location: Location,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub latency_ms: f64,
    /// Milliseconds to the first generated text, when the stage streamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<f64>,
    pub cost_usd: f64,
    /// Prompt tokens whose KV cache an earlier request left, when the model keeps a prompt cache
    /// (a local engine with `prompt_cache` on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<u32>,
}

impl Stage {
    /// A call to a local model without a price: no cost, no time to first token, no prompt
    /// cache. What scripted test models report.
    pub fn unpriced_local(
        model: impl Into<String>,
        prompt_tokens: u32,
        completion_tokens: u32,
        latency_ms: f64,
    ) -> Stage {
        Stage {
            model: model.into(),
            location: Location::Local,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            time_to_first_token_ms: None,
            cost_usd: 0.0,
            cached_prompt_tokens: None,
        }
    }
}

/// What happened for one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The pipeline the request named.
    pub pipeline: String,
    /// The model whose text is the answer.
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// End to end, as seen by whoever filled the report last (the server: request to last byte).
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<f64>,
    /// Sum of the stages' costs.
    pub cost_usd: f64,
    pub stages: Vec<Stage>,
    /// What each strategy of the pipeline did, innermost first: one entry per strategy stage that
    /// handled the request (a speculative decoder's acceptance, a router's choice, a redaction's
    /// counts). Empty for a plain model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strategies: Vec<StrategyEntry>,
}

/// One strategy's entry in a [`Report`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyEntry {
    /// The pipeline's name in the configuration.
    pub pipeline: String,
    /// The strategy, as the configuration's `strategy` key names it.
    pub strategy: String,
    /// The strategy's own figures, flattened into the entry.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// A report for a single model call.
    pub fn single(stage: Stage) -> Self {
        Report {
            pipeline: stage.model.clone(),
            model: stage.model.clone(),
            prompt_tokens: stage.prompt_tokens,
            completion_tokens: stage.completion_tokens,
            latency_ms: stage.latency_ms,
            time_to_first_token_ms: stage.time_to_first_token_ms,
            cost_usd: stage.cost_usd,
            stages: vec![stage],
            strategies: Vec::new(),
        }
    }

    /// What the pipeline's strategies saved against always calling their large model: the sum of
    /// the `saved_usd` figure that routers and cascades put in their entries (negative when an
    /// escalation cost more than the large model alone). `None` when no strategy reported one.
    pub fn saved_usd(&self) -> Option<f64> {
        self.strategies
            .iter()
            .filter_map(|entry| entry.details.get("saved_usd")?.as_f64())
            .fold(None, |sum, saved| Some(sum.unwrap_or(0.0) + saved))
    }

    /// Adds a strategy's entry; `details` must serialize to a JSON object (a struct or a map).
    pub fn push_strategy(
        &mut self,
        pipeline: &str,
        strategy: &str,
        details: impl Serialize,
    ) -> Result<(), serde_json::Error> {
        let details = match serde_json::to_value(details)? {
            serde_json::Value::Object(map) => map,
            other => {
                return Err(serde::ser::Error::custom(format!(
                    "a strategy's details must be an object, not {other}"
                )))
            }
        };
        self.strategies.push(StrategyEntry {
            pipeline: pipeline.to_string(),
            strategy: strategy.to_string(),
            details,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_uses_both_prices() {
        let pricing = Pricing {
            input_per_million: 0.5,
            output_per_million: 1.5,
        };
        let cost = pricing.cost(Usage::new(2_000, 1_000));
        assert!((cost - 0.0025).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn a_strategy_entry_is_flattened_into_the_report() {
        let stage = Stage::unpriced_local("small", 3, 4, 1.0);
        let mut report = Report::single(stage);
        report
            .push_strategy("fast", "speculative", serde_json::json!({ "accepted": 7 }))
            .unwrap();
        assert!(report.push_strategy("fast", "speculative", 5).is_err());
        assert_eq!(report.saved_usd(), None);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["strategies"],
            serde_json::json!([{ "pipeline": "fast", "strategy": "speculative", "accepted": 7 }])
        );
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        for saved in [0.25, -0.125] {
            report
                .push_strategy("cheap", "router", serde_json::json!({ "saved_usd": saved }))
                .unwrap();
        }
        assert_eq!(report.saved_usd(), Some(0.125));
    }
}
