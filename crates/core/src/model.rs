//! [`ChatModel`]: an OpenAI-shaped request in, a stream of text deltas out. Local engines, remote
//! clients and every collaboration strategy implement it, so strategies compose. Token-level
//! strategies (speculative decoding and the like) work on the llama.cpp engine's sequence handles
//! (`tandem_llama::SequenceHandle`), which batch with everything else the engine runs.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::completions::CompletionRequest;
use crate::error::ModelError;
use crate::openai::{
    ChatCompletionRequest, FinishReason, FunctionCall, TokenLogprob, ToolCall, ToolCallChunk, Usage,
};
use crate::report::Report;

/// One event of a generation.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// New text. Never splits a UTF-8 character; `logprobs` holds the tokens generated since the
    /// previous delta when the request asked for log probabilities.
    Delta {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// A piece of a tool call the model made (see [`ToolCallChunk`]); calls come after any text.
    ToolCall(ToolCallChunk),
    /// The last event of every successful stream.
    Done(Completion),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub report: Report,
}

pub type ChatStream = BoxStream<'static, Result<ChatEvent, ModelError>>;

/// A whole generation, as [`ChatModel::complete`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOutput {
    pub text: String,
    /// `Some` when the request asked for log probabilities.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// The tools the model called, in order; empty when it called none.
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub report: Report,
}

/// A model at the text level.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The name the configuration gives this model.
    fn name(&self) -> &str;

    /// Starts a generation. Errors that can be known before the first token (bad parameters, a
    /// prompt that does not fit) are returned here, not inside the stream.
    async fn stream(&self, request: ChatCompletionRequest) -> Result<ChatStream, ModelError>;

    /// A whole generation. By default the stream, collected, so both paths give the same text.
    async fn complete(&self, request: ChatCompletionRequest) -> Result<ChatOutput, ModelError> {
        let wants_logprobs = request.logprobs.unwrap_or(false);
        collect(self.stream(request).await?, wants_logprobs).await
    }

    /// Continues one raw prompt (`request.prompt` is one text; see
    /// [`CompletionRequest::split`]) without a chat template, as `POST /v1/completions` asks.
    /// Models that hold raw text (a local engine, a remote upstream) implement it; a strategy
    /// built on chat turns keeps this default, which refuses with a 400.
    async fn stream_text(&self, request: CompletionRequest) -> Result<ChatStream, ModelError> {
        let _ = request;
        Err(ModelError::invalid(
            "model",
            format!(
                "`{}` cannot complete raw text (it works on chat turns); use /v1/chat/completions, or a pipeline of one local or remote model",
                self.name()
            ),
        ))
    }
}

/// Collects a stream into one output.
pub async fn collect(
    mut stream: ChatStream,
    wants_logprobs: bool,
) -> Result<ChatOutput, ModelError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    let mut tool_calls: Vec<ToolCall> = Vec::new();
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta {
                text: piece,
                logprobs: lp,
            } => {
                text.push_str(&piece);
                logprobs.extend(lp);
            }
            ChatEvent::ToolCall(chunk) => add_tool_call_chunk(&mut tool_calls, chunk)?,
            ChatEvent::Done(done) => {
                return Ok(ChatOutput {
                    text,
                    logprobs: wants_logprobs.then_some(logprobs),
                    tool_calls,
                    finish_reason: done.finish_reason,
                    usage: done.usage,
                    report: done.report,
                })
            }
        }
    }
    Err(ModelError::Internal(
        "the generation ended without a final event".into(),
    ))
}

/// Adds a streamed piece to the calls assembled so far: a piece with an id opens call `index`,
/// which must be the next one; later pieces append to its arguments.
fn add_tool_call_chunk(calls: &mut Vec<ToolCall>, chunk: ToolCallChunk) -> Result<(), ModelError> {
    let index = chunk.index as usize;
    if let Some(id) = chunk.id {
        if index != calls.len() {
            return Err(ModelError::Internal(format!(
                "tool call {index} opened after {} calls",
                calls.len()
            )));
        }
        calls.push(ToolCall {
            id,
            kind: chunk.kind.unwrap_or_else(|| "function".into()),
            function: FunctionCall {
                name: String::new(),
                arguments: String::new(),
            },
        });
    }
    let call = calls.get_mut(index).ok_or_else(|| {
        ModelError::Internal(format!("a piece of tool call {index}, which never opened"))
    })?;
    if let Some(name) = chunk.function.name {
        call.function.name.push_str(&name);
    }
    if let Some(arguments) = chunk.function.arguments {
        call.function.arguments.push_str(&arguments);
    }
    Ok(())
}

pub type TokenId = i32;
