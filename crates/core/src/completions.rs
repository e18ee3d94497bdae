//! The legacy text-completions wire format (`POST /v1/completions`): a raw prompt continued as
//! it is, without a chat template.
//!
//! A [`CompletionRequest`] reaches a model one prompt and one choice at a time
//! ([`CompletionRequest::split`]); the model reads its sampling settings from
//! [`CompletionRequest::settings`], the same [`ChatCompletionRequest`] fields the chat path
//! samples with, so raw text and chat share one sampler, one stop-string assembler and one
//! log-probability path. Models that cannot continue raw text (strategies built on chat turns)
//! refuse through [`crate::ChatModel::stream_text`]'s default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::openai::{
    ChatCompletionRequest, FinishReason, Stop, StreamOptions, TokenLogprob, Usage,
};
use crate::report::Report;
use crate::validate::{refuse_other_fields, validate_sampling, MAX_CHOICES};

/// `max_tokens` when a completion request names none, as OpenAI's legacy endpoint defaults.
pub const DEFAULT_MAX_TOKENS: u32 = 16;
/// The most alternatives `logprobs` may ask for per token, as OpenAI's legacy endpoint allows.
pub const MAX_LEGACY_LOGPROBS: u32 = 5;

/// Legacy fields Tandem knows but does not honour, with the reason given to the client.
const UNSUPPORTED_FIELDS: &[(&str, &str)] = &[
    ("store", "stored completions are not supported"),
    (
        "metadata",
        "`metadata` is for stored completions, which are not supported",
    ),
    ("service_tier", "`service_tier` is not supported"),
];

/// A `POST /v1/completions` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Not in OpenAI's API, accepted by most local servers (llama.cpp, vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Not in OpenAI's API, accepted by llama.cpp and vLLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
    /// The log probabilities of each generated token and of this many alternatives (0 to 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// The answer starts with the prompt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub echo: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<BTreeMap<String, f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Every other field, by name, so that validation can refuse it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Who is asking, as [`crate::openai::ChatCompletionRequest::tenant`]; never on the wire.
    /// [`CompletionRequest::settings`] carries it, so a local engine's prompt cache is never
    /// shared between tenants on this path either.
    #[serde(skip)]
    pub tenant: Option<String>,
}

/// `prompt`: one text, several texts (one completion each), or token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

impl CompletionRequest {
    /// The texts to complete, in order; token-id prompts (refused by [`validate_completion`])
    /// have none.
    pub fn prompts(&self) -> Vec<&str> {
        match &self.prompt {
            Prompt::Text(text) => vec![text.as_str()],
            Prompt::Texts(texts) => texts.iter().map(String::as_str).collect(),
            Prompt::Tokens(_) | Prompt::TokenLists(_) => Vec::new(),
        }
    }

    /// Choices in the answer: `n` for each prompt.
    pub fn choices(&self) -> usize {
        self.prompts().len() * self.n.unwrap_or(1) as usize
    }

    /// One request per choice, prompt by prompt: choice `i` of a prompt gets seed `seed + i`, as
    /// the chat path seeds its choices, so a seeded request is reproducible choice by choice.
    pub fn split(&self) -> Vec<CompletionRequest> {
        let n = self.n.unwrap_or(1);
        self.prompts()
            .into_iter()
            .flat_map(|prompt| {
                (0..n).map(move |i| CompletionRequest {
                    prompt: Prompt::Text(prompt.to_string()),
                    n: None,
                    seed: self.seed.map(|seed| seed.wrapping_add(u64::from(i))),
                    ..self.clone()
                })
            })
            .collect()
    }

    /// The one prompt of a request [`CompletionRequest::split`] made.
    pub fn single_prompt(&self) -> Result<&str, ModelError> {
        match &self.prompt {
            Prompt::Text(text) => Ok(text),
            _ => Err(ModelError::invalid(
                "prompt",
                "a model completes one prompt per request; the server splits a list of prompts",
            )),
        }
    }

    /// The generation settings, as the chat request that the sampler and the text assembler read:
    /// `logprobs: k` is `logprobs: true, top_logprobs: k`, and `max_tokens` defaults to 16.
    pub fn settings(&self) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: self.model.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed,
            stop: self.stop.clone(),
            max_tokens: Some(self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            logprobs: self.logprobs.map(|_| true),
            top_logprobs: self.logprobs,
            n: self.n,
            min_p: self.min_p,
            logit_bias: self.logit_bias.clone(),
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            user: self.user.clone(),
            stream: self.stream,
            stream_options: self.stream_options,
            tenant: self.tenant.clone(),
            ..Default::default()
        }
    }
}

/// Checks a completion request; every refusal names its parameter.
pub fn validate_completion(request: &CompletionRequest) -> Result<(), ModelError> {
    match &request.prompt {
        Prompt::Tokens(_) | Prompt::TokenLists(_) => {
            return Err(ModelError::invalid(
                "prompt",
                "token-id prompts are not supported (token ids differ between the models a pipeline holds); send the prompt as text",
            ))
        }
        Prompt::Texts(texts) if texts.is_empty() => {
            return Err(ModelError::invalid("prompt", "`prompt` must not be empty"))
        }
        _ => {}
    }
    if request.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ModelError::invalid(
            "suffix",
            "`suffix` (insertion between a prompt and a suffix) is not supported",
        ));
    }
    if request.best_of.is_some_and(|b| b > 1) {
        return Err(ModelError::invalid(
            "best_of",
            "`best_of` above 1 is not supported; ask for `n` choices and compare them",
        ));
    }
    if let Some(k) = request.logprobs {
        if k > MAX_LEGACY_LOGPROBS {
            return Err(ModelError::invalid(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_LEGACY_LOGPROBS}, got {k}"),
            ));
        }
        if request.echo {
            return Err(ModelError::invalid(
                "echo",
                "`echo` with `logprobs` (log probabilities of the prompt's tokens) is not supported; ask for one or the other",
            ));
        }
    }
    refuse_other_fields(&request.extra, UNSUPPORTED_FIELDS, "")?;
    let choices = request.choices();
    if choices > MAX_CHOICES as usize {
        return Err(ModelError::invalid(
            "n",
            format!("at most {MAX_CHOICES} choices (prompts times `n`), got {choices}"),
        ));
    }
    if request.stream && choices > 1 {
        let param = if request.prompts().len() > 1 {
            "prompt"
        } else {
            "n"
        };
        return Err(ModelError::invalid(
            param,
            "more than one choice (several prompts, or `n` above 1) is not supported with `stream: true`",
        ));
    }
    validate_sampling(&request.settings())
}

/// A non-streaming answer (`object: "text_completion"`), and each streamed chunk of one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tandem: Option<Report>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<LegacyLogprobs>,
    /// `null` in every streamed chunk but the last of a choice.
    pub finish_reason: Option<FinishReason>,
}

/// The legacy `logprobs` object: parallel lists, one entry per token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    /// Each token's alternatives, token text to log probability.
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    /// Where each token starts in the choice's text, in characters.
    pub text_offset: Vec<usize>,
}

impl LegacyLogprobs {
    /// The legacy shape of `tokens`, the first of which starts at character `offset` of the
    /// choice's text (past the prompt when it is echoed, or past earlier streamed chunks).
    pub fn from_tokens(tokens: &[TokenLogprob], mut offset: usize) -> Self {
        let mut out = LegacyLogprobs::default();
        for token in tokens {
            out.tokens.push(token.token.clone());
            out.token_logprobs.push(Some(token.logprob));
            out.top_logprobs.push(
                token
                    .top_logprobs
                    .iter()
                    .map(|top| (top.token.clone(), top.logprob))
                    .collect(),
            );
            out.text_offset.push(offset);
            offset += token.token.chars().count();
        }
        out
    }

    /// The chat shape of the same tokens, for a model that reads a legacy answer (a remote
    /// upstream's) back into [`crate::ChatEvent`]s.
    pub fn to_tokens(&self) -> Vec<TokenLogprob> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, token)| TokenLogprob {
                token: token.clone(),
                logprob: self
                    .token_logprobs
                    .get(i)
                    .copied()
                    .flatten()
                    .unwrap_or(f32::NEG_INFINITY),
                bytes: Some(token.as_bytes().to_vec()),
                top_logprobs: self
                    .top_logprobs
                    .get(i)
                    .into_iter()
                    .flatten()
                    .map(|(token, &logprob)| crate::openai::TopLogprob {
                        token: token.clone(),
                        logprob,
                        bytes: Some(token.as_bytes().to_vec()),
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::TopLogprob;

    fn parse(body: &str) -> CompletionRequest {
        serde_json::from_str(body).unwrap()
    }

    fn param(body: &str) -> Option<String> {
        match validate_completion(&parse(body)) {
            Err(ModelError::InvalidRequest { param, .. }) => param,
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    #[test]
    fn prompts_parse_as_text_lists_or_token_ids() {
        let one = parse(r#"{"model":"m","prompt":"a"}"#);
        assert_eq!(one.prompts(), ["a"]);
        let many = parse(r#"{"model":"m","prompt":["a","b"],"n":2,"seed":7}"#);
        let split = many.split();
        assert_eq!(split.len(), 4);
        assert_eq!(split[1].single_prompt().unwrap(), "a");
        assert_eq!(split[1].seed, Some(8));
        assert_eq!(split[2].single_prompt().unwrap(), "b");
        assert_eq!(split[2].seed, Some(7));
        assert!(matches!(
            parse(r#"{"model":"m","prompt":[1,2]}"#).prompt,
            Prompt::Tokens(_)
        ));
        assert!(matches!(
            parse(r#"{"model":"m","prompt":[[1],[2]]}"#).prompt,
            Prompt::TokenLists(_)
        ));
    }

    #[test]
    fn settings_carry_the_legacy_defaults() {
        let mut request = parse(r#"{"model":"m","prompt":"a","logprobs":3,"stop":"x"}"#);
        request.tenant = Some("t".into());
        let settings = request.settings();
        assert_eq!(
            settings.tenant.as_deref(),
            Some("t"),
            "the prompt cache keys on it"
        );
        assert_eq!(settings.max_tokens, Some(DEFAULT_MAX_TOKENS));
        assert_eq!(settings.logprobs, Some(true));
        assert_eq!(settings.top_logprobs, Some(3));
        assert_eq!(settings.stop, Some(Stop::One("x".into())));
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","suffix":"b"}"#).as_deref(),
            Some("suffix")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","best_of":2}"#).as_deref(),
            Some("best_of")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":[1,2,3]}"#).as_deref(),
            Some("prompt")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","logprobs":6}"#).as_deref(),
            Some("logprobs")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","logprobs":1,"echo":true}"#).as_deref(),
            Some("echo")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","n":2,"stream":true}"#).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":["a","b"],"stream":true}"#).as_deref(),
            Some("prompt")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","temperature":3}"#).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","max_tokens":0}"#).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","frobnicate":1}"#).as_deref(),
            Some("frobnicate")
        );
        let fine = r#"{"model":"m","prompt":"a","best_of":1,"suffix":null,"echo":true,"n":3}"#;
        assert_eq!(validate_completion(&parse(fine)), Ok(()));
    }

    #[test]
    fn legacy_logprobs_offsets_count_characters() {
        let token = |text: &str, logprob| TokenLogprob {
            token: text.into(),
            logprob,
            bytes: None,
            top_logprobs: vec![TopLogprob {
                token: text.into(),
                logprob,
                bytes: None,
            }],
        };
        let legacy = LegacyLogprobs::from_tokens(&[token("é", -0.5), token("b", -1.0)], 3);
        assert_eq!(legacy.text_offset, [3, 4]);
        assert_eq!(legacy.token_logprobs, [Some(-0.5), Some(-1.0)]);
        assert_eq!(legacy.top_logprobs[1]["b"], -1.0);
        let back = legacy.to_tokens();
        assert_eq!(back[0].token, "é");
        assert_eq!(back[1].top_logprobs[0].logprob, -1.0);
    }
}
