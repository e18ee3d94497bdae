//! `POST /v1/chat/completions`: validation, pipeline lookup, and the translation of a pipeline's
//! events into OpenAI's JSON response or its stream of `chat.completion.chunk` events.
//!
//! Every generating endpoint (chat, text completions, responses) goes through [`accept`]: each
//! request runs in a `request` span that carries the endpoint, its pipeline and the `user` the
//! client named, and ends with one `info` log line, so an operator can trace a request to its end
//! user (what OpenAI's `user` field is for).

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use tandem_core::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice,
    ChoiceLogprobs, ChunkChoice, Delta, Role, Usage,
};
use tandem_core::validate::validate;
use tandem_core::{ChatEvent, ChatModel, ChatOutput, ChatStream, ModelError, Report};
use tracing::Instrument;

use crate::error::{ApiError, INSUFFICIENT_QUOTA, OVERLOADED};
use crate::spending::{self, Charge};
use crate::{metrics, sse, unix_now, AppState, Tenant};

pub(crate) async fn completions(
    State(state): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Response {
    let tenant = tenant.map(|Extension(Tenant(id))| id);
    accept("chat.completions", &state, body, |request, started| {
        let request = ChatCompletionRequest { tenant, ..request };
        handle(&state, request, started)
    })
    .await
}

/// A generating endpoint's request body: the pipeline it names and the end user the client names.
pub(crate) trait EndpointRequest {
    fn model(&self) -> &str;
    fn user(&self) -> Option<&str>;
}

impl EndpointRequest for ChatCompletionRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// What every generating endpoint does around its handler: a body that does not parse is answered
/// with its error (counted under the `unknown` pipeline); a parsed one is handled in a `request`
/// span that carries the endpoint, the pipeline and the client's `user`, and [`respond`] counts
/// and logs its end.
pub(crate) async fn accept<T, F, Fut>(
    endpoint: &'static str,
    state: &AppState,
    body: Result<Json<T>, JsonRejection>,
    handle: F,
) -> Response
where
    T: EndpointRequest,
    F: FnOnce(T, Instant) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let started = Instant::now();
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            let error = ApiError::from(rejection);
            finished("unknown", error.status.as_u16(), started);
            return error.into_response();
        }
    };
    let pipeline = pipeline_label(state, request.model());
    let span = tracing::info_span!("request", endpoint, %pipeline, user = request.user());
    respond(pipeline, started, handle(request, started))
        .instrument(span)
        .await
}

/// Runs an endpoint's handler and counts and logs its end; a stream records its own end. Called
/// inside the request's span.
async fn respond(
    pipeline: String,
    started: Instant,
    handler: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Response {
    let response = match handler.await {
        Ok(response) if is_event_stream(&response) => return response,
        Ok(response) => response,
        Err(error) => {
            count_rejection(&pipeline, &error);
            error.into_response()
        }
    };
    finished(&pipeline, response.status().as_u16(), started);
    response
}

/// The pipeline's name for metrics and logs: `unknown` for a name no pipeline has, so that
/// clients cannot mint label values.
fn pipeline_label(state: &AppState, model: &str) -> String {
    match state.pipelines.get(model) {
        Some(_) => model.to_string(),
        None => "unknown".to_string(),
    }
}

/// The usage and report of several choices answered together: each choice's completion counts;
/// a prompt read once per choice is billed once per `per_prompt` choices, as OpenAI counts it.
pub(crate) fn merge_choices(outputs: &[ChatOutput], per_prompt: usize) -> (Usage, Report) {
    let mut report = outputs[0].report.clone();
    let mut usage = outputs[0].usage;
    for (i, extra) in outputs.iter().enumerate().skip(1) {
        if i % per_prompt.max(1) == 0 {
            usage.prompt_tokens += extra.usage.prompt_tokens;
            report.prompt_tokens += extra.report.prompt_tokens;
        }
        usage.completion_tokens += extra.usage.completion_tokens;
        report.completion_tokens += extra.report.completion_tokens;
        report.cost_usd += extra.report.cost_usd;
        report.stages.extend(extra.report.stages.iter().cloned());
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    (usage, report)
}

/// Counts a finished request and logs it; called inside the request's span, so the log line names
/// the pipeline and the user.
pub(crate) fn finished(pipeline: &str, status: u16, started: Instant) {
    let elapsed = started.elapsed();
    metrics::record_request(pipeline, status, elapsed);
    tracing::info!(
        status,
        elapsed_ms = elapsed.as_millis() as u64,
        "chat completion"
    );
}

/// Counts a request that an overloaded model or a spent budget refused, besides its status.
pub(crate) fn count_rejection(pipeline: &str, error: &ApiError) {
    if let Some(code @ (OVERLOADED | INSUFFICIENT_QUOTA)) = error.body.error.code.as_deref() {
        metrics::record_rejection(pipeline, code);
    }
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

async fn handle(
    state: &AppState,
    request: ChatCompletionRequest,
    started: Instant,
) -> Result<Response, ApiError> {
    validate(&request)?;
    let model = state
        .pipelines
        .get(&request.model)
        .ok_or_else(|| ModelError::NotFound(request.model.clone()))?
        .clone();
    let charge = spending::admit(state.spending.as_ref(), request.tenant.as_deref()).await?;
    let reply = Reply {
        id: format!("chatcmpl-{:016x}", rand::random::<u64>()),
        created: unix_now(),
        pipeline: request.model.clone(),
        wants_logprobs: request.logprobs.unwrap_or(false),
        started,
    };
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let events = model.stream(request).await?;
        Ok(reply.stream(events, include_usage, charge))
    } else {
        let n = request.n.unwrap_or(1);
        let outputs = complete_choices(model.as_ref(), request, n).await?;
        let (usage, report) = merge_choices(&outputs, outputs.len());
        let report = reply.finish_report(report);
        spending::settle(charge.as_ref(), &report).await;
        let choices = outputs
            .into_iter()
            .enumerate()
            .map(|(index, output)| Choice {
                index: index as u32,
                message: AssistantMessage {
                    role: Role::Assistant,
                    // OpenAI's content is null in a turn that only calls tools.
                    content: (output.tool_calls.is_empty() || !output.text.trim().is_empty())
                        .then_some(output.text),
                    tool_calls: (!output.tool_calls.is_empty()).then_some(output.tool_calls),
                },
                logprobs: output.logprobs.map(|content| ChoiceLogprobs { content }),
                finish_reason: output.finish_reason,
            })
            .collect();
        Ok(Json(ChatCompletion {
            id: reply.id,
            object: "chat.completion".into(),
            created: reply.created,
            model: reply.pipeline,
            choices,
            usage,
            tandem: Some(report),
        })
        .into_response())
    }
}

/// `n` choices, as `n` requests of one choice sent at once, so a batching engine decodes them
/// together. Choice `i` gets seed `seed + i`: a seeded request is reproducible choice by choice.
async fn complete_choices(
    model: &dyn ChatModel,
    request: ChatCompletionRequest,
    n: u32,
) -> Result<Vec<ChatOutput>, ModelError> {
    if n == 1 {
        return Ok(vec![model.complete(request).await?]);
    }
    let requests = (0..n).map(|i| {
        let mut one = request.clone();
        one.n = None;
        one.seed = request.seed.map(|seed| seed.wrapping_add(u64::from(i)));
        model.complete(one)
    });
    futures::future::try_join_all(requests).await
}

/// What every chunk or response of one request shares.
pub(crate) struct Reply {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) pipeline: String,
    pub(crate) wants_logprobs: bool,
    pub(crate) started: Instant,
}

impl Reply {
    /// The pipeline's report, seen from the server: the pipeline's name and end-to-end latency.
    pub(crate) fn finish_report(&self, mut report: Report) -> Report {
        report.pipeline = self.pipeline.clone();
        report.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        report
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.pipeline.clone(),
            choices,
            usage: None,
            tandem: None,
        }
    }

    fn delta(&self, delta: Delta, logprobs: Option<ChoiceLogprobs>) -> ChatCompletionChunk {
        self.chunk(vec![ChunkChoice {
            index: 0,
            delta,
            logprobs,
            finish_reason: None,
        }])
    }

    fn stream(self, events: ChatStream, include_usage: bool, charge: Option<Charge>) -> Response {
        let pipeline = self.pipeline.clone();
        let started = self.started;
        sse::forward(
            events,
            ChatRender {
                reply: self,
                include_usage,
            },
            pipeline,
            started,
            charge,
        )
    }
}

/// Chat chunks: a first one with the role, one per delta or tool-call piece, one with the finish
/// reason, then (when asked) one with the usage; the report rides on the last.
struct ChatRender {
    reply: Reply,
    include_usage: bool,
}

impl sse::Render for ChatRender {
    fn opening(&mut self) -> Vec<Event> {
        let first = self.reply.delta(
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                tool_calls: None,
            },
            None,
        );
        vec![sse::data(&first)]
    }

    fn event(&mut self, event: ChatEvent) -> Vec<Event> {
        match event {
            ChatEvent::Delta { text, logprobs } => {
                let logprobs = self
                    .reply
                    .wants_logprobs
                    .then_some(ChoiceLogprobs { content: logprobs });
                let delta = Delta {
                    role: None,
                    content: Some(text),
                    tool_calls: None,
                };
                vec![sse::data(&self.reply.delta(delta, logprobs))]
            }
            ChatEvent::ToolCall(call) => {
                let delta = Delta {
                    role: None,
                    content: None,
                    tool_calls: Some(vec![call]),
                };
                vec![sse::data(&self.reply.delta(delta, None))]
            }
            ChatEvent::Done(done) => {
                let report = self.reply.finish_report(done.report);
                metrics::record_report(&report);
                let mut events = Vec::new();
                let mut last = self.reply.chunk(vec![ChunkChoice {
                    index: 0,
                    delta: Delta::default(),
                    logprobs: None,
                    finish_reason: Some(done.finish_reason),
                }]);
                if self.include_usage {
                    events.push(sse::data(&last));
                    last = self.reply.chunk(Vec::new());
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
