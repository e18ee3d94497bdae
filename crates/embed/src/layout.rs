//! Reads a sentence-transformers model directory: which modules it chains (`modules.json`), how the
//! token vectors are pooled (`1_Pooling/config.json`), how many word pieces it reads
//! (`sentence_bert_config.json`), and the BERT configuration (`config.json`).
//!
//! Only the chain this crate reproduces exactly is accepted: a BERT transformer, mean pooling, and
//! optionally L2 normalisation. Anything else (a `Dense` layer, CLS or max pooling) is refused
//! rather than embedded differently from the reference implementation.

use std::path::{Path, PathBuf};

use candle_transformers::models::bert;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::EmbedError;

const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

/// What the directory says about how to embed.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub bert: bert::Config,
    /// Word pieces per text, special tokens included; longer texts are truncated.
    pub max_tokens: usize,
    /// Whether the pooled vector is scaled to unit length.
    pub normalize: bool,
    pub dimensions: usize,
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

impl Layout {
    pub(crate) fn read(dir: &Path) -> Result<Layout, EmbedError> {
        let bert: bert::Config = read_json(&dir.join("config.json"))?;
        let modules_path = dir.join("modules.json");
        let modules: Vec<Module> = read_json(&modules_path)?;
        let unsupported = |reason: String| EmbedError::Unsupported {
            path: modules_path.clone(),
            reason,
        };
        let [transformer, pooling, rest @ ..] = modules.as_slice() else {
            return Err(unsupported(format!(
                "expected at least a {TRANSFORMER} and a {POOLING} module"
            )));
        };
        if transformer.kind != TRANSFORMER {
            return Err(unsupported(format!(
                "the first module must be {TRANSFORMER}"
            )));
        }
        if pooling.kind != POOLING {
            return Err(unsupported(format!("the second module must be {POOLING}")));
        }
        let normalize = match rest {
            [] => false,
            [last] if last.kind == NORMALIZE => true,
            rest => {
                let names: Vec<&str> = rest.iter().map(|m| m.kind.as_str()).collect();
                return Err(unsupported(format!(
                    "only {NORMALIZE} may follow the pooling, not {}",
                    names.join(", ")
                )));
            }
        };

        let pooling_path = dir.join(&pooling.path).join("config.json");
        let pooling_config: PoolingConfig = read_json(&pooling_path)?;
        let other_modes = pooling_config.pooling_mode_cls_token
            || pooling_config.pooling_mode_max_tokens
            || pooling_config.pooling_mode_mean_sqrt_len_tokens
            || pooling_config.pooling_mode_weightedmean_tokens
            || pooling_config.pooling_mode_lasttoken;
        if !pooling_config.pooling_mode_mean_tokens || other_modes {
            return Err(EmbedError::Unsupported {
                path: pooling_path,
                reason: "only mean pooling (pooling_mode_mean_tokens alone) is supported".into(),
            });
        }
        if pooling_config.word_embedding_dimension != bert.hidden_size {
            return Err(EmbedError::Unsupported {
                path: pooling_path,
                reason: format!(
                    "word_embedding_dimension {} differs from the model's hidden_size {}",
                    pooling_config.word_embedding_dimension, bert.hidden_size
                ),
            });
        }

        // sentence-transformers reads max_seq_length from here and truncates to it, whatever
        // tokenizer.json says; without it, the position table is the limit.
        let sbert_path = dir.join("sentence_bert_config.json");
        let max_tokens = if sbert_path.is_file() {
            let sbert: SentenceBertConfig = read_json(&sbert_path)?;
            sbert.max_seq_length.min(bert.max_position_embeddings)
        } else {
            bert.max_position_embeddings
        };
        if max_tokens < 3 {
            return Err(EmbedError::Unsupported {
                path: sbert_path,
                reason: format!("max_seq_length {max_tokens} leaves no room for text"),
            });
        }
        Ok(Layout {
            dimensions: bert.hidden_size,
            bert,
            max_tokens,
            normalize,
        })
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Read {
        path: PathBuf::from(path),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| EmbedError::Parse {
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERT: &str = r#"{"vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,
        "num_attention_heads": 1, "intermediate_size": 8, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;
    const MEAN: &str = r#"{"word_embedding_dimension": 4, "pooling_mode_mean_tokens": true}"#;

    fn directory(modules: &str, pooling: &str, sbert: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), BERT).unwrap();
        std::fs::write(dir.path().join("modules.json"), modules).unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(dir.path().join("1_Pooling/config.json"), pooling).unwrap();
        if let Some(sbert) = sbert {
            std::fs::write(dir.path().join("sentence_bert_config.json"), sbert).unwrap();
        }
        dir
    }

    fn modules(kinds: &[&str]) -> String {
        let entries: Vec<String> = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let path = if i == 1 { "1_Pooling" } else { "" };
                format!(r#"{{"path": "{path}", "type": "sentence_transformers.models.{kind}"}}"#)
            })
            .collect();
        format!("[{}]", entries.join(","))
    }

    fn refusal(dir: &tempfile::TempDir) -> String {
        match Layout::read(dir.path()) {
            Err(error @ EmbedError::Unsupported { .. }) => error.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn mean_pooling_with_and_without_normalize() {
        let sbert = Some(r#"{"max_seq_length": 256}"#);
        let dir = directory(
            &modules(&["Transformer", "Pooling", "Normalize"]),
            MEAN,
            sbert,
        );
        let layout = Layout::read(dir.path()).unwrap();
        assert!(layout.normalize);
        assert_eq!((layout.max_tokens, layout.dimensions), (256, 4));

        let dir = directory(&modules(&["Transformer", "Pooling"]), MEAN, None);
        let layout = Layout::read(dir.path()).unwrap();
        assert!(!layout.normalize);
        assert_eq!(layout.max_tokens, 512);
    }

    #[test]
    fn chains_it_cannot_reproduce_are_refused() {
        let dense = directory(&modules(&["Transformer", "Pooling", "Dense"]), MEAN, None);
        assert!(refusal(&dense).contains("sentence_transformers.models.Dense"));

        let cls = r#"{"word_embedding_dimension": 4, "pooling_mode_mean_tokens": false,
            "pooling_mode_cls_token": true}"#;
        let cls = directory(&modules(&["Transformer", "Pooling"]), cls, None);
        assert!(refusal(&cls).contains("only mean pooling"));

        let alone = directory(&modules(&["Transformer"]), MEAN, None);
        assert!(refusal(&alone).contains("Pooling"));

        let wide = r#"{"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true}"#;
        let wide = directory(&modules(&["Transformer", "Pooling"]), wide, None);
        assert!(refusal(&wide).contains("hidden_size 4"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = Layout::read(dir.path()).unwrap_err();
        assert!(matches!(error, EmbedError::Read { .. }));
        assert!(error.to_string().contains("config.json"), "{error}");
    }
}
