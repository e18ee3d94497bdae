//! `POST /v1/responses`, stateless: the one translation between OpenAI's Responses API and the
//! chat path. A request becomes a [`ChatCompletionRequest`] (`instructions` a system turn, input
//! items messages, `function_call` and `function_call_output` items an assistant turn's
//! `tool_calls` and `tool` turns, `text.format` the `response_format`), so every pipeline serves
//! it; the chat events come back as a `response` object or its stream of typed events.
//!
//! Tandem keeps no state between requests: `previous_response_id` and `store: true` are refused
//! with a 400 (send the whole conversation in `input`), as is any field it does not honour.

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tandem_core::openai::{
    ChatCompletionRequest, FinishReason, FunctionCall, FunctionDefinition, FunctionName,
    JsonSchemaFormat, Message, NamedToolChoice, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
    ToolChoiceMode,
};
use tandem_core::validate::validate;
use tandem_core::{ChatEvent, ChatOutput, ModelError, Report};

use crate::chat::{accept, EndpointRequest, Reply};
use crate::error::ApiError;
use crate::{metrics, spending, sse, unix_now, AppState, Tenant};

/// A `POST /v1/responses` body. Parts with many shapes stay JSON so that a refusal can name the
/// exact place (`input[2].content[0].type`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ResponsesRequest {
    model: String,
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stream: bool,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// Fields of the Responses API Tandem knows but does not honour, with the reason given.
const UNSUPPORTED_FIELDS: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "Tandem is stateless and stores no responses; send the whole conversation in `input`",
    ),
    (
        "store",
        "Tandem is stateless and stores no responses; send `store: false` or leave it out",
    ),
    (
        "conversation",
        "Tandem is stateless and keeps no conversations; send the whole conversation in `input`",
    ),
    ("background", "background responses are not supported"),
    ("reasoning", "`reasoning` is not supported"),
    ("include", "`include` (extra output data) is not supported"),
    (
        "metadata",
        "`metadata` is for stored responses, which are not supported",
    ),
    (
        "prompt",
        "stored prompt templates are not supported; send `input`",
    ),
    ("service_tier", "`service_tier` is not supported"),
    (
        "top_logprobs",
        "`top_logprobs` is not supported on /v1/responses; use /v1/chat/completions",
    ),
    ("max_tool_calls", "`max_tool_calls` is not supported"),
];

fn invalid(param: &str, message: impl Into<String>) -> ModelError {
    ModelError::invalid(param, message)
}

/// Whether an extra field asks for nothing beyond what Tandem does anyway.
fn asks_for_nothing(name: &str, value: &Value) -> bool {
    match name {
        _ if value.is_null() => true,
        "store" => *value == Value::Bool(false),
        "truncation" => value == "disabled",
        "include" => value.as_array().is_some_and(Vec::is_empty),
        "metadata" => value.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

impl ResponsesRequest {
    /// The chat request this asks for; every refusal names the Responses parameter.
    fn to_chat(&self) -> Result<ChatCompletionRequest, ModelError> {
        if let Some((name, _)) = self
            .extra
            .iter()
            .find(|(name, value)| !asks_for_nothing(name, value))
        {
            let message = match UNSUPPORTED_FIELDS.iter().find(|(field, _)| field == name) {
                Some((_, reason)) => format!("`{name}` cannot be honoured: {reason}"),
                None => format!("unrecognised parameter `{name}`; Tandem does not honour it"),
            };
            return Err(invalid(name, message));
        }
        let mut messages = Vec::new();
        if let Some(instructions) = &self.instructions {
            messages.push(Message::new(Role::System, instructions.clone()));
        }
        input_messages(&self.input, &mut messages)?;
        let request = ChatCompletionRequest {
            model: self.model.clone(),
            messages,
            temperature: self.temperature,
            top_p: self.top_p,
            max_completion_tokens: self.max_output_tokens,
            tools: self.tools.as_deref().map(tools).transpose()?,
            tool_choice: self.tool_choice.as_ref().map(tool_choice).transpose()?,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: self.text.as_ref().map(text_format).transpose()?,
            user: self.user.clone(),
            stream: self.stream,
            ..Default::default()
        };
        validate(&request).map_err(responses_param)?;
        Ok(request)
    }
}

/// A chat parameter's name in a refusal, as the Responses API calls it.
fn responses_param(error: ModelError) -> ModelError {
    let ModelError::InvalidRequest { message, param } = error else {
        return error;
    };
    let param = param.map(|param| {
        let renames = [
            ("max_completion_tokens", "max_output_tokens"),
            ("response_format.json_schema.", "text.format."),
            ("response_format", "text.format"),
            ("messages", "input"),
        ];
        for (chat, responses) in renames {
            if let Some(rest) = param.strip_prefix(chat) {
                return format!("{responses}{rest}");
            }
        }
        param
    });
    ModelError::InvalidRequest { message, param }
}

fn role(value: &Value, param: &str) -> Result<Role, ModelError> {
    match value.as_str() {
        Some("user") => Ok(Role::User),
        Some("assistant") => Ok(Role::Assistant),
        Some("system") => Ok(Role::System),
        Some("developer") => Ok(Role::Developer),
        _ => Err(invalid(
            param,
            format!("a message's role is user, assistant, system or developer, got {value}"),
        )),
    }
}

/// A message's content: text, or a list of text parts.
fn content_text(content: &Value, param: &str) -> Result<String, ModelError> {
    if let Some(text) = content.as_str() {
        return Ok(text.to_string());
    }
    let parts = content
        .as_array()
        .ok_or_else(|| invalid(param, "`content` is a string or a list of parts"))?;
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let kind = part["type"].as_str().unwrap_or_default();
        if !matches!(kind, "input_text" | "output_text" | "text") {
            return Err(invalid(
                &format!("{param}[{j}].type"),
                format!("only text parts are supported (input_text, output_text), got `{kind}`"),
            ));
        }
        let text = part["text"]
            .as_str()
            .ok_or_else(|| invalid(&format!("{param}[{j}].text"), "a text part needs `text`"))?;
        texts.push(text.to_string());
    }
    Ok(texts.join("\n"))
}

/// `input` as chat messages: consecutive `function_call` items become one assistant turn.
fn input_messages(input: &Value, messages: &mut Vec<Message>) -> Result<(), ModelError> {
    if let Some(text) = input.as_str() {
        messages.push(Message::new(Role::User, text));
        return Ok(());
    }
    let items = input
        .as_array()
        .ok_or_else(|| invalid("input", "`input` is a string or a list of items"))?;
    if items.is_empty() {
        return Err(invalid("input", "`input` must not be empty"));
    }
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let kind = item["type"].as_str().unwrap_or("message");
        match kind {
            "message" => {
                let role = role(&item["role"], &format!("{param}.role"))?;
                let text = content_text(&item["content"], &format!("{param}.content"))?;
                messages.push(Message::new(role, text));
            }
            "function_call" => {
                let field = |name: &str| {
                    item[name].as_str().map(str::to_string).ok_or_else(|| {
                        invalid(
                            &format!("{param}.{name}"),
                            format!("a `function_call` item needs `{name}`"),
                        )
                    })
                };
                let call = ToolCall {
                    id: field("call_id")?,
                    kind: "function".into(),
                    function: FunctionCall {
                        name: field("name")?,
                        arguments: field("arguments")?,
                    },
                };
                match messages.last_mut() {
                    // Text and calls of one assistant turn are one chat message.
                    Some(last) if last.role == Role::Assistant => {
                        last.tool_calls.get_or_insert_with(Vec::new).push(call);
                    }
                    _ => {
                        let mut turn = Message::new(Role::Assistant, "");
                        turn.tool_calls = Some(vec![call]);
                        messages.push(turn);
                    }
                }
            }
            "function_call_output" => {
                let call_id = item["call_id"].as_str().ok_or_else(|| {
                    invalid(
                        &format!("{param}.call_id"),
                        "a `function_call_output` item needs `call_id`",
                    )
                })?;
                let output = match &item["output"] {
                    Value::String(text) => text.clone(),
                    Value::Null => {
                        return Err(invalid(
                            &format!("{param}.output"),
                            "a `function_call_output` item needs `output`",
                        ))
                    }
                    other => content_text(other, &format!("{param}.output"))?,
                };
                let mut turn = Message::new(Role::Tool, output);
                turn.tool_call_id = Some(call_id.to_string());
                messages.push(turn);
            }
            other => {
                return Err(invalid(
                    &format!("{param}.type"),
                    format!(
                        "input items of type `{other}` are not supported (message, function_call, function_call_output are)"
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Responses function tools (`{type, name, description, parameters, strict}`) as chat tools.
fn tools(tools: &[Value]) -> Result<Vec<Tool>, ModelError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let kind = tool["type"].as_str().unwrap_or_default();
            if kind != "function" {
                return Err(invalid(
                    &format!("tools[{i}].type"),
                    format!("only function tools are supported, got `{kind}`"),
                ));
            }
            let name = tool["name"].as_str().ok_or_else(|| {
                invalid(&format!("tools[{i}].name"), "a function tool needs `name`")
            })?;
            Ok(Tool {
                kind: "function".into(),
                function: FunctionDefinition {
                    name: name.to_string(),
                    description: tool["description"].as_str().map(str::to_string),
                    parameters: tool.get("parameters").filter(|p| !p.is_null()).cloned(),
                    strict: tool["strict"].as_bool(),
                },
            })
        })
        .collect()
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, ModelError> {
    let mode = |mode| Ok(ToolChoice::Mode(mode));
    match choice {
        Value::String(s) if s == "auto" => mode(ToolChoiceMode::Auto),
        Value::String(s) if s == "none" => mode(ToolChoiceMode::None),
        Value::String(s) if s == "required" => mode(ToolChoiceMode::Required),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid("tool_choice.name", "a function `tool_choice` needs `name`")
            })?;
            Ok(ToolChoice::Named(NamedToolChoice {
                kind: "function".into(),
                function: FunctionName {
                    name: name.to_string(),
                },
            }))
        }
        other => Err(invalid(
            "tool_choice",
            format!("`tool_choice` is auto, none, required or a function, got {other}"),
        )),
    }
}

/// `text.format` as a chat `response_format`.
fn text_format(text: &Value) -> Result<ResponseFormat, ModelError> {
    if let Some((name, _)) = text
        .as_object()
        .into_iter()
        .flatten()
        .find(|(name, value)| *name != "format" && !value.is_null())
    {
        return Err(invalid(
            &format!("text.{name}"),
            format!("`text.{name}` is not supported"),
        ));
    }
    let format = &text["format"];
    match format["type"].as_str() {
        None if format.is_null() => Ok(ResponseFormat::Text),
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => Ok(ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: format["name"].as_str().unwrap_or_default().to_string(),
                description: format["description"].as_str().map(str::to_string),
                schema: format.get("schema").filter(|s| !s.is_null()).cloned(),
                strict: format["strict"].as_bool(),
            },
        }),
        _ => Err(invalid(
            "text.format.type",
            format!(
                "`text.format.type` is text, json_object or json_schema, got {}",
                format["type"]
            ),
        )),
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    body: Result<Json<ResponsesRequest>, JsonRejection>,
) -> Response {
    let tenant = tenant.map(|Extension(Tenant(id))| id);
    accept("responses", &state, body, |request, started| {
        handle(&state, request, tenant, started)
    })
    .await
}

impl EndpointRequest for ResponsesRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

async fn handle(
    state: &AppState,
    request: ResponsesRequest,
    tenant: Option<String>,
    started: Instant,
) -> Result<Response, ApiError> {
    let mut chat = request.to_chat()?;
    let model = state
        .pipelines
        .get(&request.model)
        .ok_or_else(|| ModelError::NotFound(request.model.clone()))?
        .clone();
    let charge = spending::admit(state.spending.as_ref(), tenant.as_deref()).await?;
    chat.tenant = tenant;
    let shape = Shape {
        reply: Reply {
            id: format!("resp_{:016x}", rand::random::<u64>()),
            created: unix_now(),
            pipeline: request.model.clone(),
            wants_logprobs: false,
            started,
        },
        request,
    };
    if chat.stream {
        let events = model.stream(chat).await.map_err(responses_param)?;
        let pipeline = shape.reply.pipeline.clone();
        let render = ResponsesRender {
            shape,
            sequence: 0,
            items: Vec::new(),
            open: None,
            pending_space: String::new(),
        };
        return Ok(sse::forward(events, render, pipeline, started, charge));
    }
    chat.stream = false;
    let output = model.complete(chat).await.map_err(responses_param)?;
    let report = shape.reply.finish_report(output.report.clone());
    spending::settle(charge.as_ref(), &report).await;
    let items = output_items(&output);
    Ok(Json(shape.response(
        status_of(output.finish_reason),
        items,
        Some((output.usage, report)),
    ))
    .into_response())
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": if status == "in_progress" {
            json!([])
        } else {
            json!([text_part(text)])
        },
    })
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn call_item(id: &str, call: &ToolCall, status: &str) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call.id,
        "name": call.function.name,
        "arguments": call.function.arguments,
        "status": status,
    })
}

fn item_id(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// The output items of a whole generation: its text as a message (left out when the turn only
/// calls tools), then one item per call.
fn output_items(output: &ChatOutput) -> Vec<Value> {
    let mut items = Vec::new();
    if output.tool_calls.is_empty() || !output.text.trim().is_empty() {
        items.push(message_item(&item_id("msg"), &output.text, "completed"));
    }
    for call in &output.tool_calls {
        items.push(call_item(&item_id("fc"), call, "completed"));
    }
    items
}

/// `completed`, or `incomplete` when the output ran out of tokens.
fn status_of(finish_reason: FinishReason) -> &'static str {
    match finish_reason {
        FinishReason::Length => "incomplete",
        _ => "completed",
    }
}

/// What every `response` object of one request shares.
struct Shape {
    reply: Reply,
    request: ResponsesRequest,
}

impl Shape {
    fn response(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Option<(tandem_core::openai::Usage, Report)>,
    ) -> Value {
        let request = &self.request;
        let mut response = json!({
            "id": self.reply.id,
            "object": "response",
            "created_at": self.reply.created,
            "status": status,
            "error": null,
            "incomplete_details": if status == "incomplete" {
                json!({"reason": "max_output_tokens"})
            } else {
                Value::Null
            },
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": self.reply.pipeline,
            "output": output,
            "parallel_tool_calls": request.parallel_tool_calls.unwrap_or(true),
            "previous_response_id": null,
            "store": false,
            "temperature": request.temperature,
            "text": request.text.clone().unwrap_or_else(|| json!({"format": {"type": "text"}})),
            "tool_choice": request.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            "tools": request.tools.clone().unwrap_or_default(),
            "top_p": request.top_p,
            "truncation": "disabled",
            "user": request.user,
            "metadata": {},
            "usage": null,
        });
        if let Some((usage, report)) = usage {
            response["usage"] = json!({
                "input_tokens": usage.prompt_tokens,
                "input_tokens_details": {
                    "cached_tokens": usage.cached_tokens().unwrap_or(0),
                    "cache_write_tokens": 0
                },
                "output_tokens": usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.total_tokens,
            });
            response["tandem"] = serde_json::to_value(report).expect("reports serialise");
        }
        response
    }
}

/// The output item being streamed.
enum Open {
    Message { id: String, text: String },
    Call { id: String, call: ToolCall },
}

/// The Responses stream: typed events, each with its `sequence_number`, items opened and closed
/// as the chat events arrive, and the whole response in `response.completed`.
struct ResponsesRender {
    shape: Shape,
    sequence: u64,
    /// Finished output items.
    items: Vec<Value>,
    open: Option<Open>,
    /// Leading whitespace not yet sent: a turn that only calls tools has no message item.
    pending_space: String,
}

impl ResponsesRender {
    fn event(&mut self, kind: &str, mut body: Value) -> Event {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        Event::default().event(kind).data(sse::to_json(&body))
    }

    /// Closes the open item, if any, with its `.done` events.
    fn close(&mut self, events: &mut Vec<Event>) {
        let output_index = self.items.len();
        match self.open.take() {
            None => {}
            Some(Open::Message { id, text }) => {
                events.push(self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": output_index, "content_index": 0,
                           "text": text, "logprobs": []}),
                ));
                events.push(self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": output_index, "content_index": 0,
                           "part": text_part(&text)}),
                ));
                let item = message_item(&id, &text, "completed");
                events.push(self.event(
                    "response.output_item.done",
                    json!({"output_index": output_index, "item": item}),
                ));
                self.items.push(item);
            }
            Some(Open::Call { id, call }) => {
                events.push(self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": output_index,
                           "name": call.function.name, "arguments": call.function.arguments}),
                ));
                let item = call_item(&id, &call, "completed");
                events.push(self.event(
                    "response.output_item.done",
                    json!({"output_index": output_index, "item": item}),
                ));
                self.items.push(item);
            }
        }
    }

    fn open_message(&mut self, events: &mut Vec<Event>) {
        let id = item_id("msg");
        let output_index = self.items.len();
        events.push(self.event(
            "response.output_item.added",
            json!({"output_index": output_index, "item": message_item(&id, "", "in_progress")}),
        ));
        events.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": output_index, "content_index": 0,
                   "part": text_part("")}),
        ));
        self.open = Some(Open::Message {
            id,
            text: String::new(),
        });
    }

    fn text(&mut self, text: String, events: &mut Vec<Event>) {
        let delta = if matches!(self.open, Some(Open::Message { .. })) {
            text
        } else {
            self.pending_space.push_str(&text);
            if self.pending_space.trim().is_empty() {
                return;
            }
            self.close(events);
            self.open_message(events);
            std::mem::take(&mut self.pending_space)
        };
        let output_index = self.items.len();
        let Some(Open::Message { id, text }) = &mut self.open else {
            unreachable!("a message item was opened above");
        };
        text.push_str(&delta);
        let id = id.clone();
        events.push(self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": output_index, "content_index": 0,
                   "delta": delta, "logprobs": []}),
        ));
    }
}

impl sse::Render for ResponsesRender {
    fn opening(&mut self) -> Vec<Event> {
        let response = self.shape.response("in_progress", Vec::new(), None);
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    fn event(&mut self, event: ChatEvent) -> Vec<Event> {
        let mut events = Vec::new();
        match event {
            ChatEvent::Delta { text, .. } => self.text(text, &mut events),
            ChatEvent::ToolCall(chunk) => {
                if let Some(call_id) = chunk.id {
                    self.close(&mut events);
                    let call = ToolCall {
                        id: call_id,
                        kind: "function".into(),
                        function: FunctionCall {
                            name: chunk.function.name.clone().unwrap_or_default(),
                            arguments: String::new(),
                        },
                    };
                    let id = item_id("fc");
                    let output_index = self.items.len();
                    events.push(self.event(
                        "response.output_item.added",
                        json!({"output_index": output_index,
                               "item": call_item(&id, &call, "in_progress")}),
                    ));
                    self.open = Some(Open::Call { id, call });
                } else if let (Some(name), Some(Open::Call { call, .. })) =
                    (&chunk.function.name, &mut self.open)
                {
                    call.function.name.push_str(name);
                }
                if let Some(arguments) = chunk.function.arguments.filter(|a| !a.is_empty()) {
                    let output_index = self.items.len();
                    if let Some(Open::Call { id, call }) = &mut self.open {
                        call.function.arguments.push_str(&arguments);
                        let id = id.clone();
                        events.push(self.event(
                            "response.function_call_arguments.delta",
                            json!({"item_id": id, "output_index": output_index,
                                   "delta": arguments}),
                        ));
                    }
                }
            }
            ChatEvent::Done(done) => {
                if self.open.is_none() && self.items.is_empty() {
                    self.open_message(&mut events);
                }
                self.close(&mut events);
                let report = self.shape.reply.finish_report(done.report);
                metrics::record_report(&report);
                let status = status_of(done.finish_reason);
                let response = self.shape.response(
                    status,
                    std::mem::take(&mut self.items),
                    Some((done.usage, report)),
                );
                let kind = match status {
                    "incomplete" => "response.incomplete",
                    _ => "response.completed",
                };
                events.push(self.event(kind, json!({"response": response})));
            }
        }
        events
    }

    fn done_marker(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::openai::Content;

    fn parse(body: Value) -> ResponsesRequest {
        serde_json::from_value(body).unwrap()
    }

    fn refused(body: Value) -> String {
        match parse(body.clone()).to_chat() {
            Err(ModelError::InvalidRequest { param, .. }) => param.unwrap(),
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_tool_round_trip_becomes_chat_turns() {
        let chat = parse(json!({
            "model": "m",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather",
                 "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
                {"type": "function_call", "call_id": "call_2", "name": "weather",
                 "arguments": "{\"city\":\"Lyon\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
                {"type": "function_call_output", "call_id": "call_2", "output": "20 C"}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "weather"},
            "max_output_tokens": 50,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        }))
        .to_chat();
        // json_schema with tools is refused by the chat validation, under the Responses name.
        assert!(
            matches!(chat, Err(ModelError::InvalidRequest { param: Some(ref p), .. }) if p == "text.format")
        );
        let chat = parse(json!({
            "model": "m",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": "weather in Paris?"},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
                {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "18 C"}
            ],
            "tools": [{"type": "function", "name": "weather"}],
            "max_output_tokens": 50,
        }))
        .to_chat()
        .unwrap();
        let roles: Vec<Role> = chat.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::Tool]
        );
        assert_eq!(chat.messages[2].tool_calls.as_ref().unwrap().len(), 2);
        assert_eq!(chat.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(chat.max_completion_tokens, Some(50));
        assert_eq!(chat.tools.unwrap()[0].function.name, "weather");
        assert!(matches!(chat.messages[1].content, Content::Text(_)));
    }

    #[test]
    fn what_tandem_cannot_honour_is_refused_by_name() {
        let with = |key: &str, value: Value| {
            let mut body = json!({"model": "m", "input": "hi"});
            body[key] = value;
            body
        };
        assert_eq!(
            refused(with("previous_response_id", json!("resp_1"))),
            "previous_response_id"
        );
        assert_eq!(refused(with("store", json!(true))), "store");
        assert_eq!(
            refused(with("reasoning", json!({"effort": "low"}))),
            "reasoning"
        );
        assert_eq!(refused(with("frobnicate", json!(1))), "frobnicate");
        assert_eq!(
            refused(with("tools", json!([{"type": "web_search"}]))),
            "tools[0].type"
        );
        assert_eq!(
            refused(with("tool_choice", json!("sometimes"))),
            "tool_choice"
        );
        assert_eq!(
            refused(with("text", json!({"format": {"type": "yaml"}}))),
            "text.format.type"
        );
        assert_eq!(
            refused(with("text", json!({"verbosity": "low"}))),
            "text.verbosity"
        );
        assert_eq!(
            refused(with("max_output_tokens", json!(0))),
            "max_output_tokens"
        );
        assert_eq!(refused(with("temperature", json!(3))), "temperature");
        assert_eq!(
            refused(with(
                "input",
                json!([{"role": "user", "content": [{"type": "input_image"}]}])
            )),
            "input[0].content[0].type"
        );
        assert_eq!(
            refused(with("input", json!([{"type": "reasoning"}]))),
            "input[0].type"
        );
        assert_eq!(refused(with("input", json!([]))), "input");
        for fine in [
            with("store", json!(false)),
            with("truncation", json!("disabled")),
            with("previous_response_id", Value::Null),
        ] {
            parse(fine).to_chat().unwrap();
        }
    }
}
