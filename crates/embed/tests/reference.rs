//! The Rust embedder against sentence-transformers' own `encode` of all-MiniLM-L6-v2, whose
//! vectors `scripts/embedding-reference.py` wrote into `tests/data/minilm-reference.json`, plus
//! batching, truncation and the refusals.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;
use tandem_embed::{EmbedError, Embedder};

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    sentences: Vec<String>,
    tokens: Vec<usize>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let text = include_str!("data/minilm-reference.json");
    serde_json::from_str(text).expect("the fixture parses")
}

fn model_dir() -> PathBuf {
    tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
        .resolve_local("all-minilm-l6-v2")
        .expect("all-MiniLM-L6-v2 is not downloaded: run `tandem models pull all-minilm-l6-v2`")
}

/// Loaded once: the tests in this file share it, as a server shares one embedder.
fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| Embedder::load(&model_dir()).expect("the model loads"))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn max_abs_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn vectors_match_sentence_transformers() {
    let reference = reference();
    let embedder = embedder();
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.max_tokens(), reference.max_seq_length);

    let out = embedder.embed(&reference.sentences).unwrap();
    assert_eq!(out.tokens, reference.tokens.iter().sum::<usize>());
    for (i, (ours, theirs)) in out.vectors.iter().zip(&reference.vectors).enumerate() {
        assert_eq!(ours.len(), theirs.len());
        let similarity = cosine(ours, theirs);
        assert!(
            similarity > 0.999,
            "sentence {i} {:?}: cosine {similarity}",
            reference.sentences[i]
        );
        let norm = ours.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "sentence {i} has norm {norm}");
    }
}

#[test]
fn a_padded_batch_gives_the_vectors_of_one_text_at_a_time() {
    let sentences = reference().sentences;
    let embedder = embedder();
    let batched = embedder.embed(&sentences).unwrap();
    let mut single_tokens = 0;
    let singles: Vec<Vec<f32>> = sentences
        .iter()
        .map(|sentence| {
            let out = embedder.embed(&[sentence]).unwrap();
            single_tokens += out.tokens;
            out.vectors.into_iter().next().unwrap()
        })
        .collect();
    assert_eq!(batched.tokens, single_tokens);
    let difference = max_abs_difference(&batched.vectors, &singles);
    assert!(difference < 1e-5, "largest difference {difference}");
}

#[test]
fn batches_smaller_than_the_input_keep_the_order() {
    let sentences = reference().sentences;
    let whole = embedder().embed(&sentences).unwrap();
    let in_threes = Embedder::load(&model_dir())
        .unwrap()
        .with_batch_size(3)
        .embed(&sentences)
        .unwrap();
    assert_eq!(whole.tokens, in_threes.tokens);
    let difference = max_abs_difference(&whole.vectors, &in_threes.vectors);
    assert!(difference < 1e-5, "largest difference {difference}");
}

#[test]
fn long_texts_are_cut_at_the_model_length() {
    let reference = reference();
    let long = reference.sentences.last().unwrap();
    let longer = format!("{long} These extra words lie past the cut and change nothing.");
    let out = embedder().embed(&[long.as_str(), longer.as_str()]).unwrap();
    assert_eq!(out.tokens, 2 * embedder().max_tokens());
    let difference = max_abs_difference(&out.vectors[..1], &out.vectors[1..]);
    assert_eq!(difference, 0.0);

    // The same extra words on a short text do change its vector: the equality above is the cut.
    let short = "Sentence number 0 talks about topic 0 and then moves on.";
    let extended = format!("{short} These extra words lie past the cut and change nothing.");
    let out = embedder().embed(&[short, extended.as_str()]).unwrap();
    assert!(cosine(&out.vectors[0], &out.vectors[1]) < 0.99);
}

#[test]
fn empty_input_is_refused() {
    let none: [&str; 0] = [];
    assert!(matches!(embedder().embed(&none), Err(EmbedError::NoInput)));
    let error = embedder().embed(&["fine", "", "also fine"]).unwrap_err();
    assert!(
        matches!(error, EmbedError::EmptyText { index: 1 }),
        "{error}"
    );
    assert!(error.to_string().contains("text 1 is empty"), "{error}");
}
