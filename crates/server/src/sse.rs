//! A pipeline's events as server-sent events, for every streaming endpoint: each endpoint renders
//! the events in its own shape (chat chunks, text-completion chunks, Responses events); this
//! module owns what they share: a task that stops the generation when the client leaves, the
//! time-to-first-token metric, the error event that ends a failed stream, charging the caller's
//! key for the answer (before the last events go out), and the request's log line.

use std::convert::Infallible;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tandem_core::openai::ErrorBody;
use tandem_core::{ChatEvent, ChatStream, ModelError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, Span};

use crate::chat::{count_rejection, finished};
use crate::error::ApiError;
use crate::metrics;
use crate::spending::Charge;

/// How an endpoint writes a stream.
pub(crate) trait Render: Send + 'static {
    /// The events before the model's first.
    fn opening(&mut self) -> Vec<Event>;
    /// The events for one of the model's; after [`ChatEvent::Done`] the stream ends.
    fn event(&mut self, event: ChatEvent) -> Vec<Event>;
    /// Whether the stream ends with `data: [DONE]` (chat and text completions; not Responses).
    fn done_marker(&self) -> bool;
}

/// Forwards `events` as SSE. A task owns the pipeline's stream and drops it, which frees the
/// model, as soon as the client's side of the channel is gone.
pub(crate) fn forward(
    mut events: ChatStream,
    mut render: impl Render,
    pipeline: String,
    started: Instant,
    charge: Option<Charge>,
) -> Response {
    let (sender, receiver) = mpsc::channel::<Event>(64);
    let task = async move {
        let send_all = |batch: Vec<Event>| {
            let sender = sender.clone();
            async move {
                for event in batch {
                    if sender.send(event).await.is_err() {
                        return false;
                    }
                }
                true
            }
        };
        if !send_all(render.opening()).await {
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
                Some(Ok(event)) => {
                    let done = matches!(event, ChatEvent::Done(_));
                    if let (ChatEvent::Done(finished), Some(charge)) = (&event, &charge) {
                        let mut report = finished.report.clone();
                        report.pipeline = pipeline.clone();
                        charge.charge(&report).await;
                    }
                    if let ChatEvent::Delta { text, .. } = &event {
                        if first_text && !text.is_empty() {
                            first_text = false;
                            metrics::record_first_token(&pipeline, started.elapsed());
                        }
                    }
                    if !send_all(render.event(event)).await {
                        return;
                    }
                    if done {
                        if render.done_marker() {
                            send_all(vec![Event::default().data("[DONE]")]).await;
                        }
                        break 200;
                    }
                    continue;
                }
                Some(Err(error)) => error,
                // A clean close here would pass a cut-off answer for a whole one.
                None => ModelError::Internal("the generation ended without its final event".into()),
            };
            // Headers are gone: the error travels as the last event, without [DONE].
            let error = ApiError::from(error);
            count_rejection(&pipeline, &error);
            send_all(vec![data::<ErrorBody>(&error.body)]).await;
            break error.status.as_u16();
        };
        finished(&pipeline, status, started);
    };
    tokio::spawn(task.instrument(Span::current()));
    let stream = ReceiverStream::new(receiver).map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One `data:` event.
pub(crate) fn data<T: serde::Serialize>(value: &T) -> Event {
    Event::default().data(to_json(value))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("response types always serialise")
}
