//! Tool calls in model output: how a model family writes them ([`ToolCallFormat`], one module per
//! format), reading them out of a generation as it streams ([`ToolCallReader`], [`read_tool_calls`])
//! and the grammar that makes a model write well-formed calls ([`call_grammar`]).
//!
//! Every format here puts calls after a start marker, as JSON objects with a `name` and
//! `arguments`: Hermes (Qwen2.5, Hermes, many fine-tunes) wraps each call in
//! `<tool_call>...</tool_call>`, Mistral writes `[TOOL_CALLS]` and then a JSON list. Adding a
//! format is a module that implements [`ToolCallFormat`] and a line in [`detect`].

mod hermes;
mod mistral;

use futures::StreamExt;
use serde_json::Value;

use crate::error::ModelError;
use crate::grammar::{literal, GrammarBuilder, SchemaError};
use crate::model::{ChatEvent, ChatStream};
use crate::openai::{FinishReason, FunctionCallChunk, FunctionDefinition, ToolCallChunk};

pub use hermes::Hermes;
pub use mistral::Mistral;

/// One call read from model output.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    pub name: String,
    /// The arguments as JSON text, as OpenAI sends them.
    pub arguments: String,
}

/// How one family of models writes tool calls.
pub trait ToolCallFormat: Send + Sync {
    fn name(&self) -> &'static str;
    /// The text that opens the calls.
    fn start(&self) -> &'static str;
    /// The text that closes one call, after which text (or another call) may follow; `None` when
    /// the calls run to the end of the output.
    fn end(&self) -> Option<&'static str>;
    /// The calls in the text between [`ToolCallFormat::start`] and [`ToolCallFormat::end`].
    fn parse(&self, body: &str) -> Option<Vec<ParsedCall>>;
    /// A grammar expression for the whole output: one call (`calls` are the alternatives, each a
    /// JSON object expression), or several when `parallel`.
    fn output(&self, calls: &str, parallel: bool) -> String;
}

/// The format a chat template teaches its model, recognised by the markers the template writes.
pub fn detect(template: &str) -> Option<&'static dyn ToolCallFormat> {
    if template.contains(Hermes.start()) {
        Some(&Hermes)
    } else if template.contains(Mistral.start()) {
        Some(&Mistral)
    } else {
        None
    }
}

/// Reads `{"name": ..., "arguments": {...}}` (or `"parameters"`, as some models write).
pub(crate) fn call_from_json(value: &Value) -> Option<ParsedCall> {
    let object = value.as_object()?;
    let name = object.get("name")?.as_str()?.to_string();
    let arguments = match object.get("arguments").or_else(|| object.get("parameters")) {
        None => "{}".to_string(),
        // Some models write the arguments as JSON inside a string, as OpenAI sends them.
        Some(Value::String(text)) if serde_json::from_str::<Value>(text).is_ok() => text.clone(),
        Some(value @ Value::Object(_)) => value.to_string(),
        Some(_) => return None,
    };
    Some(ParsedCall { name, arguments })
}

/// A grammar under which the model writes only calls of `tools` in `format`: one, or any number
/// (at least one) when `parallel`. A tool whose parameters schema cannot be enforced is refused
/// with the keyword, under `param_of(tool index)`.
pub fn call_grammar(
    format: &dyn ToolCallFormat,
    tools: &[(usize, &FunctionDefinition)],
    parallel: bool,
) -> Result<String, ModelError> {
    let mut grammar = GrammarBuilder::default();
    let mut alternatives = Vec::with_capacity(tools.len());
    for &(index, function) in tools {
        let empty = serde_json::json!({"type": "object"});
        let schema = function.parameters.as_ref().unwrap_or(&empty);
        let arguments = grammar.schema(schema).map_err(|e| schema_error(e, index))?;
        let name = literal(&Value::String(function.name.clone()).to_string());
        let space = grammar.space();
        let body = format!(
            r#""{{" {space} "\"name\"" {space} ":" {space} {name} {space} "," {space} "\"arguments\"" {space} ":" {space} {arguments} "}}" {space}"#
        );
        alternatives.push(grammar.rule(&format!("call-{}", function.name), body));
    }
    let calls = format!("({})", alternatives.join(" | "));
    Ok(grammar.finish(&format.output(&calls, parallel)))
}

fn schema_error(error: SchemaError, tool: usize) -> ModelError {
    let param = format!("tools[{tool}].function.parameters.{}", error.path);
    ModelError::invalid(&param, error.to_string())
}

/// Splits a generation into text and tool calls as it streams.
///
/// Small models often leave the markers out and answer with the call's JSON alone, bare or in a
/// Markdown code block (llama.cpp's Hermes reader accepts that too): an output that begins with
/// `{` or a code fence is held to its end, and read as a call if it is exactly a call of an
/// offered tool, as text otherwise.
pub struct ToolCallReader {
    format: &'static dyn ToolCallFormat,
    /// Text not yet emitted: a possible start of a marker, or the body of an open call.
    held: String,
    in_call: bool,
    /// The output so far began like a bare call.
    bare: bool,
    /// Whether any text was emitted or decided on yet.
    started: bool,
    calls: u32,
    /// Calls after the first are dropped when parallel calls are off.
    parallel: bool,
    /// The offered tools, which a bare call must name.
    names: Vec<String>,
}

/// What a piece of generation turned into.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Text(String),
    Call(ToolCallChunk),
}

impl ToolCallReader {
    pub fn new(format: &'static dyn ToolCallFormat, parallel: bool, names: Vec<String>) -> Self {
        ToolCallReader {
            format,
            held: String::new(),
            in_call: false,
            bare: false,
            started: false,
            calls: 0,
            parallel,
            names,
        }
    }

    /// Calls read so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Reads the next piece of text.
    pub fn push(&mut self, text: &str) -> Vec<Read> {
        self.held.push_str(text);
        let mut out = Vec::new();
        if !self.started {
            let start = self.held.trim_start();
            if start.is_empty() || "```".starts_with(start) {
                return out;
            }
            self.started = true;
            self.bare = start.starts_with('{') || start.starts_with("```");
        }
        if self.bare {
            return out;
        }
        loop {
            if self.in_call {
                let Some(end) = self.format.end() else {
                    return out;
                };
                let Some(at) = self.held.find(end) else {
                    return out;
                };
                let body: String = self.held.drain(..at + end.len()).collect();
                self.in_call = false;
                self.emit_calls(&body[..at], &mut out);
            } else if let Some(at) = self.held.find(self.format.start()) {
                if at > 0 {
                    out.push(Read::Text(self.held[..at].to_string()));
                }
                self.held.drain(..at + self.format.start().len());
                self.in_call = true;
            } else {
                let keep = partial_suffix(&self.held, self.format.start());
                let emit: String = self.held.drain(..self.held.len() - keep).collect();
                if !emit.is_empty() {
                    out.push(Read::Text(emit));
                }
                return out;
            }
        }
    }

    /// The end of the generation: an open call is read as it stands (a format without an end
    /// marker ends here; a cut-off call that does not parse is returned as text).
    pub fn finish(&mut self) -> Vec<Read> {
        let held = std::mem::take(&mut self.held);
        let mut out = Vec::new();
        if self.bare {
            self.bare = false;
            match self.bare_calls(&held) {
                Some(calls) => {
                    for call in calls {
                        self.push_call(call, &mut out);
                    }
                }
                None => {
                    self.held = held;
                    self.started = true;
                    out = self.push("");
                    out.extend(self.finish());
                }
            }
            return out;
        }
        if self.in_call {
            self.in_call = false;
            self.emit_calls(&held, &mut out);
        } else if !held.is_empty() {
            out.push(Read::Text(held));
        }
        out
    }

    fn emit_calls(&mut self, body: &str, out: &mut Vec<Read>) {
        let Some(calls) = self.format.parse(body) else {
            // Not a call after all: keep what the model wrote.
            let mut text = self.format.start().to_string();
            text.push_str(body);
            text.push_str(self.format.end().unwrap_or_default());
            out.push(Read::Text(text));
            return;
        };
        for call in calls {
            self.push_call(call, out);
        }
    }

    /// `text` as calls of offered tools, if it is exactly that: one JSON object per call (a code
    /// fence around them is allowed).
    fn bare_calls(&self, text: &str) -> Option<Vec<ParsedCall>> {
        let mut json = text.trim();
        if let Some(fenced) = json.strip_prefix("```") {
            let fenced = fenced.strip_suffix("```")?;
            json = fenced.strip_prefix("json").unwrap_or(fenced).trim();
        }
        let calls = serde_json::Deserializer::from_str(json)
            .into_iter::<Value>()
            .map(|value| {
                let call = call_from_json(&value.ok()?)?;
                self.names.contains(&call.name).then_some(call)
            })
            .collect::<Option<Vec<_>>>()?;
        (!calls.is_empty()).then_some(calls)
    }

    fn push_call(&mut self, call: ParsedCall, out: &mut Vec<Read>) {
        {
            if self.calls > 0 && !self.parallel {
                return;
            }
            let index = self.calls;
            self.calls += 1;
            out.push(Read::Call(ToolCallChunk {
                index,
                id: Some(format!("call_{:024x}", rand::random::<u128>() >> 32)),
                kind: Some("function".into()),
                function: FunctionCallChunk {
                    name: Some(call.name),
                    arguments: Some(String::new()),
                },
            }));
            out.push(Read::Call(ToolCallChunk {
                index,
                id: None,
                kind: None,
                function: FunctionCallChunk {
                    name: None,
                    arguments: Some(call.arguments),
                },
            }));
        }
    }
}

/// The length of the longest tail of `text` that is a proper prefix of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len().saturating_sub(n)) && text.ends_with(&marker[..n])
        })
        .filter(|&n| n <= text.len())
        .unwrap_or(0)
}

/// `events` with tool calls read out of their text: text deltas outside calls pass on, calls
/// become [`ChatEvent::ToolCall`]s, and a generation that called a tool finishes with
/// [`FinishReason::ToolCalls`]. Log probabilities ride on the next text delta.
pub fn read_tool_calls(
    events: ChatStream,
    format: &'static dyn ToolCallFormat,
    parallel: bool,
    names: Vec<String>,
) -> ChatStream {
    let reader = ToolCallReader::new(format, parallel, names);
    events
        .scan(reader, |reader, event| {
            let out: Vec<Result<ChatEvent, ModelError>> = match event {
                Ok(ChatEvent::Delta { text, logprobs }) => {
                    let mut out = to_events(reader.push(&text));
                    if !logprobs.is_empty() {
                        out.push(Ok(ChatEvent::Delta {
                            text: String::new(),
                            logprobs,
                        }));
                    }
                    out
                }
                Ok(ChatEvent::Done(mut done)) => {
                    let mut out = to_events(reader.finish());
                    if reader.calls() > 0 && done.finish_reason == FinishReason::Stop {
                        done.finish_reason = FinishReason::ToolCalls;
                    }
                    out.push(Ok(ChatEvent::Done(done)));
                    out
                }
                other => vec![other],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
        .boxed()
}

fn to_events(reads: Vec<Read>) -> Vec<Result<ChatEvent, ModelError>> {
    reads
        .into_iter()
        .map(|read| {
            Ok(match read {
                Read::Text(text) => ChatEvent::Delta {
                    text,
                    logprobs: Vec::new(),
                },
                Read::Call(chunk) => ChatEvent::ToolCall(chunk),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(
        format: &'static dyn ToolCallFormat,
        pieces: &[&str],
        parallel: bool,
    ) -> (String, Vec<ParsedCall>) {
        let names = ["weather", "time", "a", "b"].map(String::from).to_vec();
        let mut reader = ToolCallReader::new(format, parallel, names);
        let mut reads = Vec::new();
        for piece in pieces {
            reads.extend(reader.push(piece));
        }
        reads.extend(reader.finish());
        let mut text = String::new();
        let mut calls: Vec<ParsedCall> = Vec::new();
        for read in reads {
            match read {
                Read::Text(t) => text.push_str(&t),
                Read::Call(chunk) => {
                    if chunk.id.is_some() {
                        assert_eq!(chunk.index as usize, calls.len());
                        calls.push(ParsedCall {
                            name: chunk.function.name.unwrap(),
                            arguments: String::new(),
                        });
                    }
                    calls[chunk.index as usize]
                        .arguments
                        .push_str(&chunk.function.arguments.unwrap_or_default());
                }
            }
        }
        (text, calls)
    }

    /// Every split of `output` into two pieces reads the same.
    fn read_split_anywhere(
        format: &'static dyn ToolCallFormat,
        output: &str,
    ) -> (String, Vec<ParsedCall>) {
        let whole = read_all(format, &[output], true);
        for (at, _) in output.char_indices() {
            assert_eq!(
                read_all(format, &[&output[..at], &output[at..]], true),
                whole,
                "split at {at}"
            );
        }
        whole
    }

    #[test]
    fn reads_hermes_calls_split_anywhere() {
        let output = "Let me check.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>";
        let (text, calls) = read_split_anywhere(&Hermes, output);
        assert_eq!(text, "Let me check.\n\n");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "weather");
        assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].arguments, "{}");
    }

    #[test]
    fn reads_mistral_calls_split_anywhere() {
        let output = "[TOOL_CALLS] [{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}, {\"name\": \"time\", \"arguments\": {\"zone\": \"CET\"}}]";
        let (text, calls) = read_split_anywhere(&Mistral, output);
        assert_eq!(text, "");
        assert_eq!(
            calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["weather", "time"]
        );
        assert_eq!(calls[1].arguments, r#"{"zone":"CET"}"#);
    }

    #[test]
    fn text_without_calls_passes_whole() {
        let text = "a < b and <tool_ is not a call, nor is [TOOL";
        assert_eq!(
            read_split_anywhere(&Hermes, text),
            (text.to_string(), vec![])
        );
        assert_eq!(
            read_split_anywhere(&Mistral, text),
            (text.to_string(), vec![])
        );
    }

    #[test]
    fn a_malformed_call_stays_text() {
        let output = "<tool_call>\n{\"name\": \"weather\", \"argu\n</tool_call>";
        assert_eq!(
            read_all(&Hermes, &[output], true),
            (output.to_string(), vec![])
        );
        // Cut off by max_tokens: not a call either.
        let cut = "<tool_call>\n{\"name\": \"weather\"";
        assert_eq!(
            read_all(&Hermes, &[cut], true),
            (format!("{cut}</tool_call>"), vec![])
        );
    }

    #[test]
    fn a_bare_call_of_an_offered_tool_is_a_call() {
        let bare = "{\"name\": \"weather\", \"arguments\": {\"city\": \"Rome\"}}";
        let fenced = format!("```json\n{bare}\n```");
        for output in [bare, fenced.as_str()] {
            let (text, calls) = read_split_anywhere(&Hermes, output);
            assert_eq!(text, "");
            assert_eq!(calls[0].arguments, r#"{"city":"Rome"}"#);
        }
        let lines = format!("{bare}\n{bare}\n");
        assert_eq!(read_split_anywhere(&Hermes, &lines).1.len(), 2);
        // JSON that is not a call of an offered tool is an answer.
        for answer in [
            "{\"name\": \"Bob\", \"age\": 3}",
            "{\"name\": \"news\", \"arguments\": {}}",
            "```python\nprint(1)\n```",
        ] {
            assert_eq!(
                read_split_anywhere(&Hermes, answer),
                (answer.to_string(), vec![])
            );
        }
    }

    #[test]
    fn without_parallel_calls_only_the_first_counts() {
        let output = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>";
        let (_, calls) = read_all(&Hermes, &[output], false);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "a");
    }

    #[test]
    fn detects_the_format_of_a_template() {
        assert_eq!(
            detect("... <tool_call>\n{...}\n</tool_call> ...").map(|f| f.name()),
            Some("hermes")
        );
        assert_eq!(
            detect("{{ '[TOOL_CALLS]' }}").map(|f| f.name()),
            Some("mistral")
        );
        assert!(detect("{{ messages }}").is_none());
    }

    #[test]
    fn a_call_grammar_names_each_tool_and_refuses_by_keyword() {
        let weather = FunctionDefinition {
            name: "weather".into(),
            description: None,
            parameters: Some(serde_json::json!({"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]})),
            strict: None,
        };
        let g = call_grammar(&Hermes, &[(0, &weather)], false).unwrap();
        assert!(g.starts_with("root ::= \"<tool_call>\\n\""), "{g}");
        assert!(g.contains(r#""\"weather\"""#), "{g}");
        let mut bad = weather.clone();
        bad.parameters = Some(serde_json::json!({"type": "object",
            "properties": {"city": {"type": "string", "pattern": "^[A-Z]"}}}));
        match call_grammar(&Hermes, &[(0, &weather), (1, &bad)], true) {
            Err(ModelError::InvalidRequest { param, .. }) => assert_eq!(
                param.as_deref(),
                Some("tools[1].function.parameters.properties.city.pattern")
            ),
            other => panic!("{other:?}"),
        }
    }
}
