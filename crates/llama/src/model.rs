//! Loading GGUF files and what a loaded model knows on its own: vocabulary, chat template,
//! token text. Shared (behind an `Arc`) by the batching engine and the handles it lends.
//! token text, the format of its tool calls. Shared (behind an `Arc`) by the batching engine and
//! by token-level sessions.
//!
//! A model's chat template is the Jinja in its file, rendered with minijinja ([`crate::jinja`]),
//! which renders tools and tool calls as the model was trained on them. The configuration's
//! `chat_template` override (a name or template llama.cpp knows), a file without a template, and
//! a template minijinja cannot read go through llama.cpp's built-in template matcher instead,
//! which renders roles and content only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde_json::Value as Json;
use tandem_core::openai::{Message, Role, Tool};
use tandem_core::tools::{self, ToolCallFormat};
use tandem_core::{ModelError, TokenId};

use crate::chat::{self, Shield, SpecialTokens};
use crate::cpu::{self, CpuKernels};
use crate::jinja::JinjaTemplate;

/// llama.cpp's process-wide backend and the CPU kernels it runs: set up once, never torn down.
fn started() -> Result<&'static (LlamaBackend, CpuKernels), ModelError> {
    static STARTED: OnceLock<Result<(LlamaBackend, CpuKernels), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            // llama.cpp logs through `tracing` (debug level) instead of writing to stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            // Variant modules must be loaded before the backend starts.
            let kernels = cpu::load()?;
            let backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            tracing::info!(kernels = %kernels, device = %cpu::cpu_device(), "llama.cpp CPU kernels");
            Ok((backend, kernels))
        })
        .as_ref()
        .map_err(|e| ModelError::Internal(format!("cannot start llama.cpp: {e}")))
}

/// llama.cpp's process-wide backend.
pub(crate) fn backend() -> Result<&'static LlamaBackend, ModelError> {
    Ok(&started()?.0)
}

/// The CPU kernels llama.cpp runs in this process (loading them on first use).
pub fn cpu_kernels() -> Result<&'static CpuKernels, ModelError> {
    Ok(&started()?.1)
}

/// A GGUF model in memory with its chat template.
pub struct LoadedModel {
    pub(crate) model: LlamaModel,
    template: Template,
    specials: SpecialTokens,
    /// Control tokens whose text belongs in the output: the tool-call markers of the model's
    /// format, which llama.cpp would otherwise render as nothing.
    preserved: Vec<TokenId>,
    path: PathBuf,
}

enum Template {
    /// The file's own template.
    Jinja {
        template: Box<JinjaTemplate>,
        tool_format: Option<&'static dyn ToolCallFormat>,
    },
    /// A template llama.cpp's built-in matcher knows.
    Builtin(LlamaChatTemplate),
}

/// The file's Jinja template, if it has one that minijinja reads and renders a simple chat with.
fn jinja_template(model: &LlamaModel, path: &Path) -> Option<JinjaTemplate> {
    let source = model.chat_template(None).ok()?.to_string().ok()?;
    let probe = serde_json::json!([{"role": "user", "content": "hi"}]);
    match JinjaTemplate::new(&source).and_then(|t| t.render(&probe, None, "", "").map(|_| t)) {
        Ok(template) => Some(template),
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "the model's Jinja chat template cannot be rendered; using llama.cpp's built-in template matcher, without tools"
            );
            None
        }
    }
}

/// A llama.cpp template name for a model without a template: base models of a family are usually
/// fine-tuned with that family's format (Gemma's turns), and chatml is the most common otherwise.
fn fallback_template(model: &LlamaModel) -> &'static str {
    let architecture = model
        .meta_val_str("general.architecture")
        .unwrap_or_default();
    if architecture.starts_with("gemma") {
        "gemma"
    } else {
        "chatml"
    }
}

impl LoadedModel {
    /// Loads `path`. `chat_template` overrides the template stored in the file: a name llama.cpp
    /// knows (`chatml`, `llama3`, `gemma`, ...) or a template string.
    pub fn load(
        path: &Path,
        chat_template: Option<&str>,
        gpu_layers: u32,
    ) -> Result<Arc<Self>, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Internal(format!(
                "model file {} does not exist",
                path.display()
            )));
        }
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend()?, path, &params)
            .map_err(|e| ModelError::Internal(format!("cannot load {}: {e}", path.display())))?;
        let builtin = |model: &LlamaModel| match model.chat_template(None) {
            Ok(template) => template,
            Err(_) => {
                let name = fallback_template(model);
                tracing::warn!(
                    path = %path.display(),
                    template = name,
                    "the model has no chat template; using its family's (set `chat_template` to choose)"
                );
                LlamaChatTemplate::new(name).expect("no NUL in a literal")
            }
        };
        let template = match chat_template {
            Some(name) => Template::Builtin(LlamaChatTemplate::new(name).map_err(|e| {
                ModelError::Internal(format!("invalid chat template override: {e}"))
            })?),
            None => match jinja_template(&model, path) {
                Some(template) => Template::Jinja {
                    tool_format: tools::detect(template.source()),
                    template: Box::new(template),
                },
                None => Template::Builtin(builtin(&model)),
            },
        };
        let preserved = match &template {
            Template::Jinja {
                tool_format: Some(format),
                ..
            } => [Some(format.start()), format.end()]
                .into_iter()
                .flatten()
                .filter_map(|marker| {
                    match model.vocab().tokenize(marker.as_bytes(), false, true)[..] {
                        [token] => Some(token.0),
                        _ => None,
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Arc::new(LoadedModel {
            specials: SpecialTokens::of(&model),
            model,
            template,
            preserved,
            path: path.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn vocab_size(&self) -> usize {
        self.model.n_vocab().max(0) as usize
    }

    /// The context length the model was trained with.
    pub fn trained_context(&self) -> u32 {
        self.model.n_ctx_train()
    }

    /// How this model writes tool calls; `None` when its template does not render tools.
    pub fn tool_format(&self) -> Option<&'static dyn ToolCallFormat> {
        match &self.template {
            Template::Jinja { tool_format, .. } => *tool_format,
            Template::Builtin(_) => None,
        }
    }

    /// The prompt tokens of a chat, ending with the assistant's turn opened. The template's own
    /// markers are special tokens; message content is tokenized as text, so a `<|im_end|>` typed
    /// in a message stays text (see [`crate::chat`]).
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<TokenId>, ModelError> {
        self.chat_prompt_with_tools(messages, None)
    }

    /// [`LoadedModel::chat_prompt`] with `tools` offered to the model. Tool definitions, tool
    /// calls and tool results are client text like content: none of it becomes a control token.
    pub fn chat_prompt_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
    ) -> Result<Vec<TokenId>, ModelError> {
        let mut contents = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let content = message.content.text().ok_or_else(|| {
                ModelError::invalid(
                    &format!("messages[{i}].content"),
                    "only text content parts are supported",
                )
            })?;
            if content.contains('\0') {
                return Err(ModelError::invalid(
                    &format!("messages[{i}].content"),
                    "content must not contain NUL characters",
                ));
            }
            contents.push(content);
        }
        let vocab = self.model.vocab();
        let body = match &self.template {
            Template::Jinja { template, .. } => self.jinja_tokens(template, messages, tools)?,
            Template::Builtin(_) => {
                self.refuse_tools_for_builtin(messages, tools)?;
                let roles: Vec<Role> = messages.iter().map(|m| template_role(m.role)).collect();
                // Roles are fixed names and `name` fields are not rendered, so content is the
                // only text a client controls.
                chat::chat_tokens(
                    &self.specials,
                    &contents,
                    |contents| self.render(&roles, contents),
                    |text| self.tokenize_bytes(text, false),
                )?
            }
        };
        let mut tokens = Vec::with_capacity(body.len() + 2);
        // What `tokenize(prompt, add_special = true)` adds around a whole prompt, unless the
        // template wrote it already.
        if vocab.should_add_bos() && body.first() != Some(&vocab.bos().0) {
            tokens.push(vocab.bos().0);
        }
        tokens.extend(body);
        if vocab.should_add_eos() {
            tokens.push(vocab.eos().0);
        }
        Ok(tokens)
    }

    /// A chat as the template renders it, markers included: the prompt text llama.cpp's own
    /// tools (which parse special tokens in their prompt) read as [`LoadedModel::chat_prompt`]'s
    /// tokens, for benchmarks that run them beside Tandem.
    pub fn chat_text(&self, messages: &[Message]) -> Result<String, ModelError> {
        if let Template::Jinja { template, .. } = &self.template {
            let messages = Json::Array(messages.iter().map(template_message).collect());
            return self.render_jinja(template, &messages, None);
        }
        let roles: Vec<Role> = messages
            .iter()
            .map(|m| match m.role {
                Role::Developer => Role::System,
                role => role,
            })
            .collect();
        let contents = messages
            .iter()
            .map(|m| {
                m.content
                    .text()
                    .ok_or_else(|| ModelError::Internal("only text content is supported".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.render(&roles, &contents)
    }

    /// The template applied to messages of `roles` with `contents`.
    fn refuse_tools_for_builtin(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
    ) -> Result<(), ModelError> {
        let why = "this model's chat template is llama.cpp's built-in one (the configuration overrides the file's, or the file has none minijinja can render), which cannot render tools";
        if tools.is_some_and(|t| !t.is_empty()) {
            return Err(ModelError::invalid("tools", why));
        }
        if let Some(i) = messages.iter().position(|m| m.tool_calls.is_some()) {
            return Err(ModelError::invalid(
                &format!("messages[{i}].tool_calls"),
                why,
            ));
        }
        Ok(())
    }

    /// The chat rendered by the file's template from shielded client text, as tokens.
    fn jinja_tokens(
        &self,
        template: &JinjaTemplate,
        messages: &[Message],
        tools: Option<&[Tool]>,
    ) -> Result<Vec<TokenId>, ModelError> {
        let mut messages = Json::Array(messages.iter().map(template_message).collect());
        let mut tools = tools.map(|t| serde_json::to_value(t).expect("tools serialise"));
        let client_text = serde_json::to_string(&(&messages, &tools)).expect("JSON serialises");
        let shield = Shield::new(&self.specials, &[template.source(), &client_text]);
        shield.hide_json(&mut messages);
        if let Some(tools) = &mut tools {
            shield.hide_json(tools);
        }
        let rendered = self.render_jinja(template, &messages, tools.as_ref())?;
        shield.tokens(&rendered, |text| self.tokenize_bytes(text, false))
    }

    fn render_jinja(
        &self,
        template: &JinjaTemplate,
        messages: &Json,
        tools: Option<&Json>,
    ) -> Result<String, ModelError> {
        let vocab = self.model.vocab();
        let text = |token: LlamaToken| {
            vocab
                .text(token)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        template
            .render(messages, tools, &text(vocab.bos()), &text(vocab.eos()))
            .map_err(|e| {
                ModelError::invalid(
                    "messages",
                    format!("the model's chat template cannot render this chat: {e}"),
                )
            })
    }

    /// The chat as the template renders it, without shielding: what the prompt's text is.
    #[cfg(test)]
    pub(crate) fn rendered_chat(&self, messages: &[Message], tools: Option<&[Tool]>) -> String {
        match &self.template {
            Template::Jinja { template, .. } => {
                let messages = Json::Array(messages.iter().map(template_message).collect());
                let tools = tools.map(|t| serde_json::to_value(t).unwrap());
                self.render_jinja(template, &messages, tools.as_ref())
                    .unwrap()
            }
            Template::Builtin(_) => {
                let roles: Vec<Role> = messages.iter().map(|m| template_role(m.role)).collect();
                let contents: Vec<String> =
                    messages.iter().map(|m| m.content.text().unwrap()).collect();
                self.render(&roles, &contents).unwrap()
            }
        }
    }

    /// The built-in template applied to messages of `roles` with `contents`.
    pub(crate) fn render(&self, roles: &[Role], contents: &[String]) -> Result<String, ModelError> {
        let Template::Builtin(template) = &self.template else {
            return Err(ModelError::Internal(
                "a built-in rendering of a Jinja template".into(),
            ));
        };
        let chat = roles
            .iter()
            .zip(contents)
            .map(|(role, content)| {
                LlamaChatMessage::new(role.as_str().to_string(), content.clone())
                    .map_err(|e| ModelError::Internal(format!("chat message: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.model
            .apply_chat_template(template, &chat, true)
            .map_err(|e| ModelError::Internal(format!("chat template failed: {e}")))
    }

    /// Tokenizes text as text: `add_special` adds BOS where the model wants one, and special
    /// tokens written in the text (such as `<|im_start|>`) stay text. Token-level strategies feed
    /// this text that users or models wrote, so nothing in it may become a control token; chat
    /// prompts come from [`LoadedModel::chat_prompt`].
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<TokenId> {
        self.tokenize_bytes(text.as_bytes(), add_special)
    }

    /// As [`LoadedModel::tokenize`], for text given as bytes (UTF-8, possibly cut inside a
    /// character).
    pub(crate) fn tokenize_bytes(&self, text: &[u8], add_special: bool) -> Vec<TokenId> {
        self.model
            .vocab()
            .tokenize(text, add_special, false)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// The bytes a token stands for; control tokens (end of turn and the like) have none, except
    /// tool-call markers, which the output needs.
    pub fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        let special = self.preserved.contains(&token);
        self.model
            .vocab()
            .token_to_piece(LlamaToken(token), special, None)
    }

    pub fn is_end_of_generation(&self, token: TokenId) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }
}

/// Templates know system, user, assistant and tool turns; a developer message is a system one.
fn template_role(role: Role) -> Role {
    match role {
        Role::Developer => Role::System,
        role => role,
    }
}

/// A message in the shape chat templates expect: Hugging Face's, where a tool call's arguments
/// are an object rather than OpenAI's JSON text.
fn template_message(message: &Message) -> Json {
    let mut out = serde_json::json!({
        "role": template_role(message.role).as_str(),
        "content": message.content.text().unwrap_or_default(),
    });
    if let Some(name) = &message.name {
        out["name"] = Json::String(name.clone());
    }
    if let Some(calls) = &message.tool_calls {
        let calls: Vec<Json> = calls
            .iter()
            .map(|call| {
                let arguments = serde_json::from_str(&call.function.arguments)
                    .unwrap_or_else(|_| Json::String(call.function.arguments.clone()));
                serde_json::json!({
                    "id": call.id,
                    "type": call.kind,
                    "function": {"name": call.function.name, "arguments": arguments},
                })
            })
            .collect();
        out["tool_calls"] = Json::Array(calls);
    }
    if let Some(id) = &message.tool_call_id {
        out["tool_call_id"] = Json::String(id.clone());
    }
    out
}
