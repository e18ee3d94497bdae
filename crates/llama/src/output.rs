//! What a request asks of a local model's output beyond sampling settings: tools in the prompt,
//! a grammar when a tool call is required or JSON is asked for, and reading tool calls out of the
//! generated text.

use std::sync::Arc;

use tandem_core::constraint::Constraint;
use tandem_core::grammar::GrammarBuilder;
use tandem_core::openai::{ChatCompletionRequest, ResponseFormat, ToolChoice, ToolChoiceMode};
use tandem_core::tools::{self, ToolCallFormat};
use tandem_core::validate::uses_tools;
use tandem_core::{ChatStream, ModelError, TokenId};

use crate::grammar::GrammarConstraint;
use crate::LoadedModel;

/// A validated request, ready for the scheduler.
pub(crate) struct Prepared {
    pub(crate) prompt: Vec<TokenId>,
    pub(crate) constraint: Option<Box<dyn Constraint>>,
    /// How to read tool calls out of the output, when the model may call one.
    tool_calls: Option<(&'static dyn ToolCallFormat, bool)>,
    tool_names: Vec<String>,
}

impl Prepared {
    pub(crate) fn new(
        model: &Arc<LoadedModel>,
        request: &ChatCompletionRequest,
    ) -> Result<Self, ModelError> {
        if request.n.is_some_and(|n| n > 1) {
            return Err(ModelError::invalid(
                "n",
                "the engine generates one choice per request; the server sends `n` requests for `n` choices",
            ));
        }
        if model.tool_format().is_none() {
            if let Some(i) = request.messages.iter().position(|m| m.tool_calls.is_some()) {
                return Err(ModelError::invalid(
                    &format!("messages[{i}].tool_calls"),
                    "this model's chat template does not render tool calls",
                ));
            }
        }
        let calls = uses_tools(request);
        let format = match calls {
            true => Some(model.tool_format().ok_or_else(|| {
                ModelError::invalid(
                    "tools",
                    "this model's chat template does not show how it calls tools (Tandem reads Hermes `<tool_call>` and Mistral `[TOOL_CALLS]` formats)",
                )
            })?),
            false => None,
        };
        let offered = if calls {
            request.tools.as_deref()
        } else {
            None
        };
        let prompt = model.chat_prompt_with_tools(&request.messages, offered)?;
        let parallel = request.parallel_tool_calls.unwrap_or(true);
        let grammar = match format {
            Some(format) => call_grammar(format, request, parallel)?,
            None => output_grammar(request.response_format.as_ref())?,
        };
        let constraint = match grammar {
            Some(grammar) => {
                Some(Box::new(GrammarConstraint::new(model, &grammar)?) as Box<dyn Constraint>)
            }
            None => None,
        };
        Ok(Prepared {
            prompt,
            constraint,
            tool_calls: format.map(|f| (f, parallel)),
            tool_names: offered
                .unwrap_or_default()
                .iter()
                .map(|t| t.function.name.clone())
                .collect(),
        })
    }

    /// The scheduler's events, with tool calls read out when the model may make them.
    pub(crate) fn read(&self, events: ChatStream) -> ChatStream {
        match self.tool_calls {
            Some((format, parallel)) => {
                tools::read_tool_calls(events, format, parallel, self.tool_names.clone())
            }
            None => events,
        }
    }
}

/// The grammar of a required or named call; none when the model chooses (`auto`).
fn call_grammar(
    format: &dyn ToolCallFormat,
    request: &ChatCompletionRequest,
    parallel: bool,
) -> Result<Option<String>, ModelError> {
    let offered: Vec<_> = request
        .tools
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, tool)| (i, &tool.function))
        .collect();
    let grammar = match &request.tool_choice {
        Some(ToolChoice::Named(named)) => {
            let chosen: Vec<_> = offered
                .into_iter()
                .filter(|(_, f)| f.name == named.function.name)
                .collect();
            tools::call_grammar(format, &chosen, false)?
        }
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => {
            tools::call_grammar(format, &offered, parallel)?
        }
        _ => return Ok(None),
    };
    Ok(Some(grammar))
}

/// The grammar of a JSON `response_format`.
fn output_grammar(format: Option<&ResponseFormat>) -> Result<Option<String>, ModelError> {
    let mut grammar = GrammarBuilder::default();
    let root = match format {
        None | Some(ResponseFormat::Text) => return Ok(None),
        Some(ResponseFormat::JsonObject) => grammar.any_object(),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema.schema.as_ref().ok_or_else(|| {
                ModelError::invalid(
                    "response_format.json_schema.schema",
                    "`json_schema` needs a `schema`",
                )
            })?;
            grammar.schema(schema).map_err(|e| {
                ModelError::invalid(
                    &format!("response_format.json_schema.schema.{}", e.path),
                    e.to_string(),
                )
            })?
        }
    };
    Ok(Some(grammar.finish(&root)))
}
