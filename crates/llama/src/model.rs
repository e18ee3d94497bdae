//! Loading GGUF files and what a loaded model knows on its own: vocabulary, chat template,
//! token text. Shared (behind an `Arc`) by the batching engine and the handles it lends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tandem_core::openai::{Message, Role};
use tandem_core::{ModelError, TokenId};

use crate::chat::{self, SpecialTokens};
use crate::cpu::{self, CpuKernels};

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
    template: LlamaChatTemplate,
    specials: SpecialTokens,
    path: PathBuf,
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
        let template = match chat_template {
            Some(name) => LlamaChatTemplate::new(name).map_err(|e| {
                ModelError::Internal(format!("invalid chat template override: {e}"))
            })?,
            None => match model.chat_template(None) {
                Ok(template) => template,
                Err(_) => {
                    let name = fallback_template(&model);
                    tracing::warn!(
                        path = %path.display(),
                        template = name,
                        "the model has no chat template; using its family's (set `chat_template` to choose)"
                    );
                    LlamaChatTemplate::new(name).expect("no NUL in a literal")
                }
            },
        };
        Ok(Arc::new(LoadedModel {
            specials: SpecialTokens::of(&model),
            model,
            template,
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

    /// The prompt tokens of a chat, ending with the assistant's turn opened. The template's own
    /// markers are special tokens; message content is tokenized as text, so a `<|im_end|>` typed
    /// in a message stays text (see [`crate::chat`]). Roles are fixed names and `name` fields are
    /// not rendered, so content is the only text a client controls.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<TokenId>, ModelError> {
        let mut roles = Vec::with_capacity(messages.len());
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
            roles.push(match message.role {
                Role::Developer => Role::System,
                role => role,
            });
            contents.push(content);
        }
        let vocab = self.model.vocab();
        let mut tokens = Vec::new();
        // What `tokenize(prompt, add_special = true)` adds around a whole prompt.
        if vocab.should_add_bos() {
            tokens.push(vocab.bos().0);
        }
        tokens.extend(chat::chat_tokens(
            &self.specials,
            &contents,
            |contents| self.render(&roles, contents),
            |text| self.tokenize_bytes(text, false),
        )?);
        if vocab.should_add_eos() {
            tokens.push(vocab.eos().0);
        }
        Ok(tokens)
    }

    /// A chat as the template renders it, markers included: the prompt text llama.cpp's own
    /// tools (which parse special tokens in their prompt) read as [`LoadedModel::chat_prompt`]'s
    /// tokens, for benchmarks that run them beside Tandem.
    pub fn chat_text(&self, messages: &[Message]) -> Result<String, ModelError> {
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
    pub(crate) fn render(&self, roles: &[Role], contents: &[String]) -> Result<String, ModelError> {
        let chat = roles
            .iter()
            .zip(contents)
            .map(|(role, content)| {
                LlamaChatMessage::new(role.as_str().to_string(), content.clone())
                    .map_err(|e| ModelError::Internal(format!("chat message: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| ModelError::Internal(format!("chat template failed: {e}")))
    }

    /// Tokenizes text as text: `add_special` adds BOS where the model wants one, and special
    /// tokens written in the text (such as `<|im_start|>`) stay text. Token-level strategies feed
    /// this text that users or models wrote, so nothing in it may become a control token; chat
    /// prompts come from [`LoadedModel::chat_prompt`].
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<TokenId> {
        self.tokenize_bytes(text.as_bytes(), add_special)
    }

    fn tokenize_bytes(&self, text: &[u8], add_special: bool) -> Vec<TokenId> {
        self.model
            .vocab()
            .tokenize(text, add_special, false)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// The bytes a token stands for; control tokens (end of turn and the like) have none.
    pub fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        self.model
            .vocab()
            .token_to_piece(LlamaToken(token), false, None)
    }

    pub fn is_end_of_generation(&self, token: TokenId) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }
}
