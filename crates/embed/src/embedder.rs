//! [`Embedder`]: tokenizes a batch, runs BERT on candle's CPU backend, mean-pools over the real
//! (unpadded) tokens and L2-normalises, as sentence-transformers does.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::layout::Layout;
use crate::EmbedError;

/// Texts run through the model together at most; larger requests are split into batches of this
/// size, which bounds the memory one forward pass takes.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Vectors for a list of texts, with the word pieces read (special tokens included).
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Word pieces the model read for all texts together, after truncation: what OpenAI's
    /// `usage.prompt_tokens` reports.
    pub tokens: usize,
}

/// A sentence-embedding model loaded in memory. Cheap to share behind an `Arc`; [`Embedder::embed`]
/// takes `&self` and may run on several threads at once.
///
/// ```no_run
/// # fn demo() -> Result<(), tandem_embed::EmbedError> {
/// let dir = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
///     .resolve_local("all-minilm-l6-v2")
///     .expect("run `tandem models pull all-minilm-l6-v2` first");
/// let embedder = tandem_embed::Embedder::load(&dir)?;
/// let vectors = embedder.embed(&["A cat sits on the mat.", "Un chat est assis."])?.vectors;
/// assert_eq!(vectors[0].len(), embedder.dimensions());
/// # Ok(())
/// # }
/// ```
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    layout: Layout,
    device: Device,
    batch_size: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dimensions", &self.layout.dimensions)
            .field("max_tokens", &self.layout.max_tokens)
            .field("normalize", &self.layout.normalize)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl Embedder {
    /// Loads a sentence-transformers directory: `config.json`, `modules.json`, the pooling
    /// config, `tokenizer.json` and `model.safetensors` (see the crate docs for what is accepted).
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let layout = Layout::read(dir)?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), &layout)?;
        let device = Device::Cpu;
        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|source| EmbedError::Read {
            path: weights_path.clone(),
            source,
        })?;
        let weights_error = |source| EmbedError::Weights {
            path: weights_path.clone(),
            source,
        };
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(weights_error)?;
        let model = BertModel::load(vars, &layout.bert).map_err(weights_error)?;
        Ok(Embedder {
            model,
            tokenizer,
            layout,
            device,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Pulls a catalog model (e.g. `all-minilm-l6-v2`) into the fetcher's cache if needed, then
    /// loads it. Blocks on reading the weights: call it where blocking is fine.
    pub async fn pull(
        fetcher: &tandem_fetch::Fetcher,
        name: &str,
    ) -> Result<(Embedder, PathBuf), EmbedError> {
        let dir = fetcher.pull(name).await?;
        let embedder = Embedder::load(&dir)?;
        Ok((embedder, dir))
    }

    /// Sets how many texts one forward pass takes (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Embedder {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Length of every vector (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.layout.dimensions
    }

    /// Word pieces read per text, special tokens included; the rest of a longer text is ignored.
    pub fn max_tokens(&self) -> usize {
        self.layout.max_tokens
    }

    /// Embeds `texts` in batches of the batch size. Every text must be non-empty; texts longer
    /// than [`Embedder::max_tokens`] are truncated, as sentence-transformers truncates them.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Embeddings, EmbedError> {
        if texts.is_empty() {
            return Err(EmbedError::NoInput);
        }
        if let Some(index) = texts.iter().position(|text| text.as_ref().is_empty()) {
            return Err(EmbedError::EmptyText { index });
        }
        let mut embeddings = Embeddings {
            vectors: Vec::with_capacity(texts.len()),
            tokens: 0,
        };
        for (batch_index, batch) in texts.chunks(self.batch_size).enumerate() {
            let first_index = batch_index * self.batch_size;
            let (vectors, tokens) = self.embed_batch(batch, first_index)?;
            embeddings.vectors.extend(vectors);
            embeddings.tokens += tokens;
        }
        Ok(embeddings)
    }

    fn embed_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        first_index: usize,
    ) -> Result<(Vec<Vec<f32>>, usize), EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(|error| {
            // The tokenizer does not say which text failed; encode one by one to find it.
            let index = texts
                .iter()
                .position(|text| self.tokenizer.encode(text.as_ref(), true).is_err())
                .unwrap_or(0);
            EmbedError::Tokenize {
                index: first_index + index,
                message: error.to_string(),
            }
        })?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        let mut tokens = 0;
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
            tokens += encoding
                .get_attention_mask()
                .iter()
                .filter(|&&m| m == 1)
                .count();
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;

        // Mean over the real tokens only: padding rows are zeroed and not counted.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mut pooled = summed.broadcast_div(&counts)?;
        if self.layout.normalize {
            // As torch.nn.functional.normalize: divide by the norm, floored at 1e-12.
            let norms = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            pooled = pooled.broadcast_div(&norms)?;
        }
        Ok((pooled.to_vec2::<f32>()?, tokens))
    }
}

/// The tokenizer with the model's truncation and batch padding, overriding what `tokenizer.json`
/// says (all-MiniLM-L6-v2's pads every text to 128 and truncates at 128, where the model reads 256).
fn load_tokenizer(path: &Path, layout: &Layout) -> Result<Tokenizer, EmbedError> {
    let tokenizer_error = |message: String| EmbedError::Tokenizer {
        path: PathBuf::from(path),
        message,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| tokenizer_error(e.to_string()))?;
    let pad_id = layout.bert.pad_token_id as u32;
    let pad_token = tokenizer.id_to_token(pad_id).ok_or_else(|| {
        tokenizer_error(format!("pad_token_id {pad_id} is not in the vocabulary"))
    })?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: layout.max_tokens,
            ..TruncationParams::default()
        }))
        .map_err(|e| tokenizer_error(e.to_string()))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id,
        pad_token,
        ..PaddingParams::default()
    }));
    Ok(tokenizer)
}
