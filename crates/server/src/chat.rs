//! `POST /v1/chat/completions`: validation, pipeline lookup, and the translation of a pipeline's
//! events into OpenAI's JSON response or its stream of `chat.completion.chunk` events.
//!
//! Each request runs in a `chat_completion` span that carries its pipeline and the `user` the
//! client named, and ends with one `info` log line, so an operator can trace a request to its end
//! user (what OpenAI's `user` field is for).

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures::StreamExt;
use tandem_core::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice,
    ChoiceLogprobs, ChunkChoice, Delta, ErrorBody, Role,
};
use tandem_core::validate::validate;
use tandem_core::{ChatEvent, ChatModel, ChatOutput, ChatStream, ModelError, Report};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, Span};

use crate::error::{ApiError, INSUFFICIENT_QUOTA, OVERLOADED};
use crate::spending::{Spending, ANONYMOUS};
use crate::{metrics, unix_now, AppState, Tenant};
use std::sync::Arc;

pub(crate) async fn completions(
    State(state): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Response {
    let started = Instant::now();
    let request = match body {
        Ok(Json(request)) => ChatCompletionRequest {
            tenant: tenant.map(|Extension(Tenant(id))| id),
            ..request
        },
        Err(rejection) => {
            let error = ApiError::from(rejection);
            finished("unknown", error.status.as_u16(), started);
            return error.into_response();
        }
    };
    let pipeline = match state.pipelines.get(&request.model) {
        Some(_) => request.model.clone(),
        None => "unknown".to_string(),
    };
    let span = tracing::info_span!("chat_completion", %pipeline, user = request.user.as_deref());
    async move {
        let response = match handle(&state, request, started).await {
            // A stream records its own end.
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
    .instrument(span)
    .await
}

/// Counts a finished request and logs it; called inside the request's span, so the log line names
/// the pipeline and the user.
fn finished(pipeline: &str, status: u16, started: Instant) {
    let elapsed = started.elapsed();
    metrics::record_request(pipeline, status, elapsed);
    tracing::info!(
        status,
        elapsed_ms = elapsed.as_millis() as u64,
        "chat completion"
    );
}

/// Counts a request that an overloaded model or a spent budget refused, besides its status.
fn count_rejection(pipeline: &str, error: &ApiError) {
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
    let charge = match &state.spending {
        Some(spending) => {
            let tenant = request.tenant.as_deref().unwrap_or(ANONYMOUS).to_string();
            spending.check(&tenant).await?;
            Some((Arc::clone(spending), tenant))
        }
        None => None,
    };
    let reply = Reply {
        id: format!("chatcmpl-{:016x}", rand::random::<u64>()),
        created: unix_now(),
        pipeline: request.model.clone(),
        wants_logprobs: request.logprobs.unwrap_or(false),
        started,
        charge,
    };
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let events = model.stream(request).await?;
        Ok(reply.stream(events, include_usage))
    } else {
        let n = request.n.unwrap_or(1);
        let outputs = complete_choices(model.as_ref(), request, n).await?;
        let mut report = outputs[0].report.clone();
        let mut usage = outputs[0].usage;
        for extra in &outputs[1..] {
            // The prompt is read once per choice but billed once, as OpenAI counts it.
            usage.completion_tokens += extra.usage.completion_tokens;
            report.completion_tokens += extra.report.completion_tokens;
            report.cost_usd += extra.report.cost_usd;
            report.stages.extend(extra.report.stages.iter().cloned());
        }
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
        let report = reply.finish_report(report);
        metrics::record_report(&report);
        reply.charge(&report).await;
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
struct Reply {
    id: String,
    created: u64,
    pipeline: String,
    wants_logprobs: bool,
    started: Instant,
    /// Where the answer's cost goes, and whose it is.
    charge: Option<(Arc<Spending>, String)>,
}

impl Reply {
    async fn charge(&self, report: &Report) {
        if let Some((spending, tenant)) = &self.charge {
            spending.charge(tenant, report).await;
        }
    }

    /// The pipeline's report, seen from the server: the pipeline's name and end-to-end latency.
    fn finish_report(&self, mut report: Report) -> Report {
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

    /// Forwards the pipeline's events as SSE. A task owns the pipeline's stream and drops it, which
    /// frees the model, as soon as the client's side of the channel is gone.
    fn stream(self, mut events: ChatStream, include_usage: bool) -> Response {
        let (sender, receiver) = mpsc::channel::<Event>(64);
        let task = async move {
            let send = |data: String| {
                let sender = sender.clone();
                async move { sender.send(Event::default().data(data)).await.is_ok() }
            };
            let first = self.delta(
                Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    tool_calls: None,
                },
                None,
            );
            if !send(to_json(&first)).await {
                return;
            }
            let mut first_text = true;
            let status = loop {
                // Waiting for the client to leave alongside the next event notices a departure
                // even while the request is queued or prefilling and no event is due.
                let event = tokio::select! {
                    event = events.next() => event,
                    () = sender.closed() => {
                        tracing::info!("the client left; generation stopped");
                        return;
                    }
                };
                let error = match event {
                    Some(Ok(ChatEvent::Delta { text, logprobs })) => {
                        if first_text && !text.is_empty() {
                            first_text = false;
                            metrics::record_first_token(&self.pipeline, self.started.elapsed());
                        }
                        let logprobs = self
                            .wants_logprobs
                            .then_some(ChoiceLogprobs { content: logprobs });
                        let delta = self.delta(
                            Delta {
                                role: None,
                                content: Some(text),
                                tool_calls: None,
                            },
                            logprobs,
                        );
                        if !send(to_json(&delta)).await {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(ChatEvent::ToolCall(call))) => {
                        let delta = self.delta(
                            Delta {
                                role: None,
                                content: None,
                                tool_calls: Some(vec![call]),
                            },
                            None,
                        );
                        if !send(to_json(&delta)).await {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(ChatEvent::Done(done))) => {
                        let report = self.finish_report(done.report);
                        metrics::record_report(&report);
                        self.charge(&report).await;
                        let mut last = self.chunk(vec![ChunkChoice {
                            index: 0,
                            delta: Delta::default(),
                            logprobs: None,
                            finish_reason: Some(done.finish_reason),
                        }]);
                        if include_usage {
                            if !send(to_json(&last)).await {
                                return;
                            }
                            last = self.chunk(Vec::new());
                            last.usage = Some(done.usage);
                        }
                        last.tandem = Some(report);
                        if send(to_json(&last)).await {
                            send("[DONE]".to_string()).await;
                        }
                        break 200;
                    }
                    Some(Err(error)) => error,
                    // A clean close here would pass a cut-off answer for a whole one.
                    None => {
                        ModelError::Internal("the generation ended without its final event".into())
                    }
                };
                // Headers are gone: the error travels as the last event, without [DONE].
                let error = ApiError::from(error);
                count_rejection(&self.pipeline, &error);
                send(to_json::<ErrorBody>(&error.body)).await;
                break error.status.as_u16();
            };
            finished(&self.pipeline, status, self.started);
        };
        tokio::spawn(task.instrument(Span::current()));
        let stream = ReceiverStream::new(receiver).map(Ok::<_, Infallible>);
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response()
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("response types always serialise")
}
