//! Drafting with a model of another vocabulary (SmolLM2 drafting for a Qwen target), by going
//! through text, as Hugging Face's Universal Assisted Generation does.
//!
//! The draft model reads the request in its own chat template and the answer so far as text
//! re-tokenised into its vocabulary; its drafted tokens become text again, and that text is
//! tokenised into the target's vocabulary for verification. Verification itself does not change:
//! the target checks token ids of its own vocabulary, so greedy output stays the target's argmax
//! at every position, and sampled output follows the target's distribution (the translated tokens
//! are proposals without a distribution, see [`super::verify`]).
//!
//! Two boundaries need care. The target's last translated token is dropped: it ends where the
//! draft's last token ends, which may be inside a word the target would spell with a longer
//! token. And the answer's text is handed to the draft only up to its last complete UTF-8
//! character: a target token may end inside a character, and the draft would then read a
//! different text than the one the target continues (that step decodes plainly).

use std::sync::Arc;

use tandem_core::TokenId;

use crate::LoadedModel;

/// One request's bridge between the draft's vocabulary and the target's.
pub(crate) struct Translation {
    draft: Arc<LoadedModel>,
    target: Arc<LoadedModel>,
    /// The request in the draft's own chat template.
    prompt: Vec<TokenId>,
    /// The answer's text so far, and how many of the target's answer tokens it holds.
    answer_text: Vec<u8>,
    answer_tokens: usize,
}

impl Translation {
    pub fn new(draft: Arc<LoadedModel>, target: Arc<LoadedModel>, prompt: Vec<TokenId>) -> Self {
        Translation {
            draft,
            target,
            prompt,
            answer_text: Vec::new(),
            answer_tokens: 0,
        }
    }

    /// The draft's own prompt.
    pub fn prompt(&self) -> &[TokenId] {
        &self.prompt
    }

    /// What the draft's cache must hold to continue `answer` (the target's answer tokens so
    /// far): its prompt and the answer's text in its vocabulary. `None` while that text ends
    /// inside a character.
    pub fn draft_context(&mut self, answer: &[TokenId]) -> Option<Vec<TokenId>> {
        for &token in &answer[self.answer_tokens..] {
            self.answer_text
                .extend_from_slice(&self.target.token_bytes(token));
        }
        self.answer_tokens = answer.len();
        // Invalid bytes stay as they are; only a character still being completed waits.
        if let Err(e) = std::str::from_utf8(&self.answer_text) {
            e.error_len()?;
        }
        let mut context = self.prompt.clone();
        context.extend(self.draft.tokenize_bytes(&self.answer_text, false));
        Some(context)
    }

    /// Whether a drafted token can be translated: it stands for text (end-of-turn and other
    /// control tokens do not).
    pub fn is_text(&self, token: TokenId) -> bool {
        !self.draft.is_end_of_generation(token) && !self.draft.token_bytes(token).is_empty()
    }

    /// The drafted tokens' text in the target's vocabulary, at most `most` tokens, without the
    /// last one (it may end inside a word) and without a trailing partial character.
    pub fn to_target(&self, drafted: &[TokenId], most: usize) -> Vec<TokenId> {
        let mut text = Vec::new();
        for &token in drafted {
            text.extend_from_slice(&self.draft.token_bytes(token));
        }
        let complete = match std::str::from_utf8(&text) {
            Ok(_) => text.len(),
            Err(e) => e.valid_up_to(),
        };
        text.truncate(complete);
        if text.is_empty() {
            return Vec::new();
        }
        let mut tokens = self.target.tokenize_bytes(&text, false);
        tokens.pop();
        tokens.truncate(most);
        tokens
    }
}
