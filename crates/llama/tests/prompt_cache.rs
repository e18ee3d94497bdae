//! The engine's prompt cache with a real model (SmolLM2-135M-Instruct, `tandem models pull
//! smollm2-135m`): a request reuses the KV cache of the longest common token prefix an earlier
//! request of the same tenant left, and answers as without it.
//!
//! "As without it" is up to rounding: with the cache, the tokens after the common prefix are read
//! in a smaller batch than the whole prompt (often one token), and llama.cpp's CPU kernels round a
//! batch of one differently from larger ones (see crates/llama/tests/speculative.rs). Greedy
//! answers are therefore compared as the speculative tests compare them: equal, or a first
//! difference where the uncached run's top two log probabilities are within [`NEAR_TIE`] and the
//! cached run took the second.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::{ChatEvent, ChatModel, ChatOutput, TokenId};
use tandem_llama::{EngineOptions, LlamaEngine, LoadedModel};

/// Largest gap between the top two log probabilities that counts as a tie under rounding noise
/// (the speculative tests' bound, measured there between a one-token and a longer batch).
const NEAR_TIE: f32 = 0.5;

const SYSTEM: &str = "You are a patient assistant for a small bakery. You answer questions about \
    bread, cakes and pastries in one or two short sentences, plainly, without lists. The bakery \
    opens at seven in the morning and closes at six in the evening, every day but Monday.";

fn loaded_model() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            LoadedModel::load(&tandem_fetch::test_model(), None, 0).expect("model loads")
        })
        .clone()
}

fn engine(parallel: u32, prompt_cache: bool) -> LlamaEngine {
    let mut options = EngineOptions::new(if prompt_cache { "cached" } else { "uncached" });
    options.context_size = 1024;
    options.parallel = parallel;
    options.threads = 1;
    options.prompt_cache = prompt_cache;
    LlamaEngine::start(loaded_model(), options).expect("engine starts")
}

fn request(messages: Vec<Message>, tenant: Option<&str>) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "m".into(),
        messages,
        temperature: Some(0.0),
        max_tokens: Some(24),
        logprobs: Some(true),
        top_logprobs: Some(2),
        tenant: tenant.map(str::to_string),
        ..Default::default()
    }
}

fn with_system(user: &str) -> Vec<Message> {
    vec![
        Message::new(Role::System, SYSTEM),
        Message::new(Role::User, user),
    ]
}

fn cached(out: &ChatOutput) -> u32 {
    let stage = out.report.stages[0].cached_prompt_tokens;
    assert_eq!(
        stage,
        out.usage.cached_tokens(),
        "the stage and the usage agree"
    );
    stage.expect("an engine with the prompt cache says how many tokens it reused")
}

fn common_prefix(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Equal outputs, or a first difference at a near-tie of the uncached run (see the module doc).
fn assert_same_or_near_tie(plain: &ChatOutput, cached: &ChatOutput, what: &str) {
    let a = plain.logprobs.as_ref().expect("logprobs requested");
    let b = cached.logprobs.as_ref().expect("logprobs requested");
    let Some(i) = a.iter().zip(b).position(|(x, y)| x.token != y.token) else {
        assert_eq!(plain.text, cached.text, "{what}");
        return;
    };
    let top = &a[i].top_logprobs;
    let gap = top[0].logprob - top[1].logprob;
    assert!(
        gap < NEAR_TIE && b[i].token == top[1].token,
        "{what}: token {i} differs ({:?} uncached, {:?} cached) with a gap of {gap} between the \
         uncached run's top two\nuncached: {:?}\ncached: {:?}",
        a[i].token,
        b[i].token,
        plain.text,
        cached.text
    );
    eprintln!("{what}: near-tie at token {i} (gap {gap}), outputs differ from there");
}

#[tokio::test]
async fn a_multi_turn_chat_answers_as_without_the_cache_and_reuses_each_turn() {
    let model = loaded_model();
    let with = engine(1, true);
    let without = engine(1, false);
    let mut messages = vec![Message::new(Role::System, SYSTEM)];
    let questions = [
        "When do you open?",
        "Do you sell rye bread?",
        "What goes well with a croissant?",
        "Can I order a birthday cake for Sunday?",
    ];
    let mut previous: Option<Vec<TokenId>> = None;
    for (turn, question) in questions.iter().enumerate() {
        messages.push(Message::new(Role::User, *question));
        let plain = without
            .complete(request(messages.clone(), None))
            .await
            .unwrap();
        let reused = with
            .complete(request(messages.clone(), None))
            .await
            .unwrap();
        assert_same_or_near_tie(&plain, &reused, &format!("turn {}", turn + 1));
        assert_eq!(plain.usage.cached_tokens(), None, "the cache is off");
        assert_eq!(plain.report.stages[0].cached_prompt_tokens, None);
        let prompt = model.chat_prompt(&messages).unwrap();
        let n = cached(&reused) as usize;
        match &previous {
            None => assert_eq!(n, 0, "nothing to reuse on the first turn"),
            Some(before) => {
                // The cache holds the last prompt and the answer generated after it, so the reuse
                // covers at least the common prefix of the two prompts (every earlier turn), and
                // never the last prompt token.
                let floor = common_prefix(before, &prompt);
                assert!(
                    n >= floor && n < prompt.len(),
                    "turn {}: {n} cached tokens, the prompts share {floor} of {}",
                    turn + 1,
                    prompt.len()
                );
            }
        }
        previous = Some(prompt);
        // Each turn extends the last with the uncached answer, so both engines see one chat.
        messages.push(Message::new(Role::Assistant, plain.text.clone()));
    }
}

#[tokio::test]
async fn a_shared_system_prompt_is_reused_exactly_and_answers_match() {
    let model = loaded_model();
    let with = engine(1, true);
    let without = engine(1, false);
    let first = with_system("Is the bakery open on Monday?");
    let out = with.complete(request(first.clone(), None)).await.unwrap();
    assert_eq!(cached(&out), 0);
    let first_prompt = model.chat_prompt(&first).unwrap();
    for user in [
        "Do you bake sourdough?",
        "How late can I come by on Saturday?",
    ] {
        let messages = with_system(user);
        let prompt = model.chat_prompt(&messages).unwrap();
        let plain = without
            .complete(request(messages.clone(), None))
            .await
            .unwrap();
        let reused = with.complete(request(messages, None)).await.unwrap();
        assert_same_or_near_tie(&plain, &reused, user);
        // Both prompts part inside the system prompt's turn or at the user message: the cache
        // (the earlier prompt and its answer) shares exactly their common prefix.
        let shared = common_prefix(&first_prompt, &prompt);
        assert!(shared > 40, "the system prompt is shared: {shared} tokens");
        assert_eq!(cached(&reused) as usize, shared, "{user}");
    }
}

#[tokio::test]
async fn a_request_of_another_tenant_reuses_nothing() {
    // Two sequences: tenant b's request takes the least recently used one and leaves a's cache.
    let with = engine(2, true);
    let messages = with_system("Do you sell rye bread?");
    let a = with
        .complete(request(messages.clone(), Some("a")))
        .await
        .unwrap();
    assert_eq!(cached(&a), 0);
    let b = with
        .complete(request(messages.clone(), Some("b")))
        .await
        .unwrap();
    assert_eq!(cached(&b), 0, "another tenant's prefix is never reused");
    let anonymous = with
        .complete(request(messages.clone(), None))
        .await
        .unwrap();
    assert_eq!(
        cached(&anonymous),
        0,
        "nor a tenant's for a request without one"
    );
    let again = with
        .complete(request(messages.clone(), Some("b")))
        .await
        .unwrap();
    let prompt = loaded_model().chat_prompt(&messages).unwrap();
    assert_eq!(
        cached(&again) as usize,
        prompt.len() - 1,
        "the same tenant reuses all but the last prompt token"
    );
    assert_same_or_near_tie(&b, &again, "the same tenant again");
}

#[tokio::test]
async fn concurrent_requests_sharing_a_system_prompt_all_answer_correctly() {
    let with = Arc::new(engine(2, true));
    let without = engine(1, false);
    let users = [
        "Do you bake sourdough?",
        "Is there anything without gluten?",
        "How much is a baguette?",
        "Do you open on Monday?",
    ];
    let mut expected = Vec::new();
    for user in users {
        expected.push(
            without
                .complete(request(with_system(user), None))
                .await
                .unwrap(),
        );
    }
    // One request first, so that a sequence holds the system prompt when the four arrive.
    let warm = with
        .complete(request(with_system("Hello!"), None))
        .await
        .unwrap();
    assert_eq!(cached(&warm), 0);
    let outputs = futures::future::join_all(users.iter().map(|user| {
        let with = Arc::clone(&with);
        async move {
            with.complete(request(with_system(user), None))
                .await
                .unwrap()
        }
    }))
    .await;
    let mut reusing = 0;
    for ((user, plain), out) in users.iter().zip(&expected).zip(&outputs) {
        assert_same_or_near_tie(plain, out, user);
        if cached(out) > 0 {
            reusing += 1;
        }
    }
    // Two requests are seated at once (one finds the warm sequence, one a cleared one); the two
    // after them find the system prompt in both.
    assert!(
        reusing >= 3,
        "{reusing} of 4 requests reused the system prompt"
    );
    wait_idle(&with).await;
}

/// Polls until the engine holds no sequence: the scheduler frees one just after its answer ends.
async fn wait_idle(engine: &LlamaEngine) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.load().active > 0 || engine.load().waiting > 0 {
        assert!(
            Instant::now() < deadline,
            "the engine keeps a sequence: {:?}",
            engine.load()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cancelled_stream_leaves_a_usable_sequence() {
    let with = engine(1, true);
    let without = engine(1, false);
    let messages = with_system("Tell me about the breads you bake.");
    let mut r = request(messages.clone(), None);
    r.max_tokens = Some(200);
    let mut stream = with.stream(r).await.unwrap();
    let mut deltas = 0;
    while deltas < 3 {
        if let ChatEvent::Delta { .. } = stream.next().await.unwrap().unwrap() {
            deltas += 1;
        }
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(30);
    while with.load().active > 0 {
        assert!(
            Instant::now() < deadline,
            "the cancelled request keeps its sequence"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let plain = without
        .complete(request(messages.clone(), None))
        .await
        .unwrap();
    let reused = with
        .complete(request(messages.clone(), None))
        .await
        .unwrap();
    assert_same_or_near_tie(&plain, &reused, "after a cancelled stream");
    let prompt = loaded_model().chat_prompt(&messages).unwrap();
    assert_eq!(cached(&reused) as usize, prompt.len() - 1);
    // A different question still answers as without the cache, from the shared system prompt.
    let other = with_system("Do you sell cakes?");
    let plain = without
        .complete(request(other.clone(), None))
        .await
        .unwrap();
    let reused = with.complete(request(other, None)).await.unwrap();
    assert_same_or_near_tie(&plain, &reused, "another question after it");
    assert!(cached(&reused) > 0);
}
