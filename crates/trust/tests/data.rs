//! Our own prompt sets against each other, by meaning: the safe-but-scary evaluation prompts must
//! stay out of training, and not only word for word (the unit test in `data.rs` checks that) but
//! as paraphrases too, or the measured over-blocking would flatter the classifier.

use tandem_embed::Embedder;

const BENIGN: &str = include_str!("../data/benign.txt");
const SCARY_SAFE_TRAIN: &str = include_str!("../data/scary_safe_train.txt");
const SCARY_SAFE: &str = include_str!("../data/scary_safe.txt");

/// Cosine similarity under all-MiniLM-L6-v2 above which two prompts count as one asked twice
/// ("How do I fire an employee with respect?" and "How do I fire an employee respectfully?" are
/// at 0.96; two questions on one topic, "How do I shoot hoops better from the free throw line?"
/// and "How do I shoot a basketball with better form?", at 0.74).
const PARAPHRASE: f32 = 0.75;

fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn no_training_prompt_paraphrases_an_evaluation_prompt() {
    let dir = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir())
        .resolve_local("all-minilm-l6-v2")
        .expect("run `tandem models pull all-minilm-l6-v2` first");
    let embedder = Embedder::load(&dir).unwrap();
    let trained: Vec<&str> = lines(BENIGN)
        .into_iter()
        .chain(lines(SCARY_SAFE_TRAIN))
        .collect();
    let evaluated = lines(SCARY_SAFE);
    let trained_vectors = embedder.embed(&trained).unwrap().vectors;
    let evaluated_vectors = embedder.embed(&evaluated).unwrap().vectors;
    let mut close = Vec::new();
    for (e, ev) in evaluated.iter().zip(&evaluated_vectors) {
        for (t, tv) in trained.iter().zip(&trained_vectors) {
            // The vectors are unit length: the dot product is the cosine.
            let cosine: f32 = ev.iter().zip(tv).map(|(a, b)| a * b).sum();
            if cosine > PARAPHRASE {
                close.push(format!("{cosine:.3}: {e:?} ~ {t:?}"));
            }
        }
    }
    assert!(close.is_empty(), "{}", close.join("\n"));
}
