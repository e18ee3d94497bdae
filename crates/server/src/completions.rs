//! `POST /v1/completions`: the legacy text endpoint. A prompt (or each of a list) is continued as
//! raw text through [`ChatModel::stream_text`], one request per choice sent at once so that a
//! batching engine decodes them together; the answer is OpenAI's `text_completion` JSON or its
//! stream of `text_completion` chunks ending with `[DONE]`.

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tandem_core::completions::{
    validate_completion, CompletionRequest, LegacyLogprobs, TextChoice, TextCompletion,
};
use tandem_core::{collect, ChatEvent, ChatOutput, ModelError};

use crate::chat::{accept, merge_choices, EndpointRequest, Reply};
use crate::error::ApiError;
use crate::{metrics, spending, sse, unix_now, AppState, Tenant};

pub(crate) async fn create(
    State(state): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let tenant = tenant.map(|Extension(Tenant(id))| id);
    accept("completions", &state, body, |request, started| {
        handle(&state, request, tenant, started)
    })
    .await
}

impl EndpointRequest for CompletionRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// A prompt too long is too long in `prompt`, not in `messages` as for chat.
fn prompt_error(error: ModelError) -> ApiError {
    let overflow = matches!(error, ModelError::ContextOverflow { .. });
    let mut error = ApiError::from(error);
    if overflow {
        error.body.error.param = Some("prompt".into());
    }
    error
}

async fn handle(
    state: &AppState,
    request: CompletionRequest,
    tenant: Option<String>,
    started: Instant,
) -> Result<Response, ApiError> {
    validate_completion(&request)?;
    let request = CompletionRequest {
        tenant: tenant.clone(),
        ..request
    };
    let model = state
        .pipelines
        .get(&request.model)
        .ok_or_else(|| ModelError::NotFound(request.model.clone()))?
        .clone();
    let charge = spending::admit(state.spending.as_ref(), tenant.as_deref()).await?;
    let reply = Reply {
        id: format!("cmpl-{:016x}", rand::random::<u64>()),
        created: unix_now(),
        pipeline: request.model.clone(),
        wants_logprobs: request.logprobs.is_some(),
        started,
    };
    let echo = request.echo.then(|| request.prompts()[0].to_string());
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let mut one = request.split();
        let events = model
            .stream_text(one.remove(0))
            .await
            .map_err(prompt_error)?;
        let pipeline = reply.pipeline.clone();
        let render = TextRender {
            reply,
            echo,
            include_usage,
            offset: 0,
        };
        return Ok(sse::forward(events, render, pipeline, started, charge));
    }
    let split = request.split();
    let prompts: Vec<String> = split
        .iter()
        .map(|one| one.single_prompt().map(str::to_string))
        .collect::<Result<_, _>>()?;
    let wants_logprobs = reply.wants_logprobs;
    let outputs: Vec<ChatOutput> = futures::future::try_join_all(split.into_iter().map(|one| {
        let model = model.clone();
        async move { collect(model.stream_text(one).await?, wants_logprobs).await }
    }))
    .await
    .map_err(prompt_error)?;
    let (usage, report) = merge_choices(&outputs, request.n.unwrap_or(1) as usize);
    let report = reply.finish_report(report);
    spending::settle(charge.as_ref(), &report).await;
    let choices = outputs
        .into_iter()
        .zip(prompts)
        .enumerate()
        .map(|(index, (output, prompt))| {
            let prefix = if request.echo { prompt } else { String::new() };
            let offset = prefix.chars().count();
            TextChoice {
                logprobs: output
                    .logprobs
                    .map(|tokens| LegacyLogprobs::from_tokens(&tokens, offset)),
                text: prefix + &output.text,
                index: index as u32,
                finish_reason: Some(output.finish_reason),
            }
        })
        .collect();
    Ok(Json(TextCompletion {
        id: reply.id,
        object: "text_completion".into(),
        created: reply.created,
        model: reply.pipeline,
        choices,
        usage: Some(usage),
        tandem: Some(report),
    })
    .into_response())
}

/// `text_completion` chunks: the echoed prompt first when asked, one per delta, one with the
/// finish reason, then (when asked) one with the usage; the report rides on the last.
struct TextRender {
    reply: Reply,
    echo: Option<String>,
    include_usage: bool,
    /// Characters of the choice's text sent so far, where the next token starts.
    offset: usize,
}

impl TextRender {
    fn chunk(&self, choices: Vec<TextChoice>) -> TextCompletion {
        TextCompletion {
            id: self.reply.id.clone(),
            object: "text_completion".into(),
            created: self.reply.created,
            model: self.reply.pipeline.clone(),
            choices,
            usage: None,
            tandem: None,
        }
    }

    fn text(&mut self, text: String, logprobs: Option<LegacyLogprobs>) -> Event {
        self.offset += text.chars().count();
        sse::data(&self.chunk(vec![TextChoice {
            text,
            index: 0,
            logprobs,
            finish_reason: None,
        }]))
    }
}

impl sse::Render for TextRender {
    fn opening(&mut self) -> Vec<Event> {
        match self.echo.take() {
            Some(prompt) => vec![self.text(prompt, None)],
            None => Vec::new(),
        }
    }

    fn event(&mut self, event: ChatEvent) -> Vec<Event> {
        match event {
            ChatEvent::Delta { text, logprobs } => {
                let logprobs = self
                    .reply
                    .wants_logprobs
                    .then(|| LegacyLogprobs::from_tokens(&logprobs, self.offset));
                vec![self.text(text, logprobs)]
            }
            // Raw text offers no tools, so no model calls one.
            ChatEvent::ToolCall(_) => Vec::new(),
            ChatEvent::Done(done) => {
                let report = self.reply.finish_report(done.report);
                metrics::record_report(&report);
                let mut events = Vec::new();
                let mut last = self.chunk(vec![TextChoice {
                    text: String::new(),
                    index: 0,
                    logprobs: None,
                    finish_reason: Some(done.finish_reason),
                }]);
                if self.include_usage {
                    events.push(sse::data(&last));
                    last = self.chunk(Vec::new());
                    last.usage = Some(done.usage);
                }
                last.tandem = Some(report);
                events.push(sse::data(&last));
                events
            }
        }
    }

    fn done_marker(&self) -> bool {
        true
    }
}
