//! What leaves the machine: a recording upstream (a real HTTP server on loopback standing in for
//! the cloud model) receives every request of a corpus with planted private values, through the
//! `redact` stage over the real remote client, and none of the values may arrive in any spelling
//! the detector covers. The upstream echoes the placeholders it received, split across stream
//! chunks, so the test also sees the answer restored. Bad input is refused with a clear error and
//! sends nothing; the egress audit survives reopening its database and holds no value.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::openai::{ChatCompletionRequest, Content, ContentPart, Message, Role, Stop};
use tandem_core::{ChatEvent, ChatModel, ModelError};
use tandem_privacy::normalize::canonical;
use tandem_privacy::stage::{Guard, KeepLocal, Redact, Rewrite};
use tandem_privacy::vault::Placeholders;
use tandem_privacy::{Detector, DetectorConfig};
use tandem_remote::{RemoteModel, RemoteOptions};
use tandem_store::{EgressQuery, SqliteStore, Store};

/// An upstream that keeps every body it receives and answers, streamed three characters a chunk,
/// what `answer` makes of the body.
struct Upstream {
    base_url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Upstream {
    /// Answers "Got:" followed by every tag it saw.
    async fn start() -> Upstream {
        Upstream::answering(tags_seen).await
    }

    async fn answering(answer: fn(&[u8]) -> String) -> Upstream {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let log = bodies.clone();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |body: Bytes| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(body.to_vec());
                    stream(&answer(&body))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream { base_url, bodies }
    }

    fn model(&self) -> Arc<dyn ChatModel> {
        Arc::new(RemoteModel::new(RemoteOptions::new("cloud", &self.base_url, "gpt-x")).unwrap())
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

fn tags_seen(body: &[u8]) -> String {
    let placeholders = regex::Regex::new(r"\[[A-Z]+(?:_[A-Z]+)*_[0-9]+\]").unwrap();
    let text = String::from_utf8_lossy(body);
    let mut seen: Vec<&str> = placeholders.find_iter(&text).map(|m| m.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    format!("Got: {}.", seen.join(" "))
}

/// The text of the last message it was sent, its parts joined by spaces.
fn last_message(body: &[u8]) -> String {
    let request: ChatCompletionRequest = serde_json::from_slice(body).unwrap();
    match &request.messages.last().unwrap().content {
        Content::Text(text) => text.clone(),
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|p| p.text.clone())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `answer` as an OpenAI stream, three characters a chunk.
fn stream(answer: &str) -> Response {
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant"}), Value::Null)];
    let chars: Vec<char> = answer.chars().collect();
    for piece in chars.chunks(3) {
        events.push(chunk(
            json!({"content": piece.iter().collect::<String>()}),
            Value::Null,
        ));
    }
    events.push(chunk(json!({}), json!("stop")));
    events.push(format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    ));
    events.push("data: [DONE]\n\n".into());
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(events.concat()))
        .unwrap()
}

/// A planted value, the other spellings of it the corpus uses, and the sentence it sits in (`{}`
/// marks its place; sentences without one contain the value itself).
struct Planted {
    value: &'static str,
    spellings: &'static [&'static str],
    sentence: &'static str,
}

const PLANTED: &[Planted] = &[
    Planted {
        value: "jane.doe@acme-mail.com",
        spellings: &["JANE.DOE@ACME-MAIL.COM", "Jane.Doe@Acme-Mail.com"],
        sentence: "Write to {} today.",
    },
    Planted {
        value: "+44 20 7946 0958",
        spellings: &["+44-20-7946-0958", "+442079460958"],
        sentence: "Call me on {} after six.",
    },
    Planted {
        value: "(415) 555-0132",
        spellings: &["415.555.0132", "415-555-0132"],
        sentence: "My cell is {} if needed.",
    },
    Planted {
        value: "4111 1111 1111 1111",
        spellings: &["4111-1111-1111-1111", "4111111111111111"],
        sentence: "Charge card {} please.",
    },
    Planted {
        value: "DE89 3704 0044 0532 0130 00",
        spellings: &["de89370400440532013000", "DE89-3704-0044-0532-0130-00"],
        sentence: "Wire it to IBAN {} by Friday.",
    },
    Planted {
        value: "123-45-6789",
        spellings: &["123 45 6789", "123.45.6789"],
        sentence: "My SSN is {} for the form.",
    },
    Planted {
        value: "10.20.30.40",
        spellings: &[],
        sentence: "The server at {} is down.",
    },
    Planted {
        value: "2001:db8::8a2e:370:7334",
        spellings: &["2001:DB8::8A2E:370:7334"],
        sentence: "Ping {} again.",
    },
    Planted {
        value: "postgres://admin:Sup3rS3cret@db.internal:5432/app",
        spellings: &["POSTGRES://admin:Sup3rS3cret@db.internal:5432/app"],
        sentence: "Connect with {} now.",
    },
    Planted {
        value: "sk-proj-Abc123Def456Ghi789Jkl012Mno345",
        spellings: &[],
        sentence: "export OPENAI_API_KEY={}",
    },
    Planted {
        value: "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        spellings: &[],
        sentence: "git clone with token {} fails",
    },
    Planted {
        value: "AKIAIOSFODNN7EXAMPLE",
        spellings: &[],
        sentence: "aws key id {} in the logs",
    },
    Planted {
        value: "hunter2horse",
        spellings: &[],
        sentence: "DB_PASSWORD={}",
    },
    Planted {
        value: "Zx8fQ2LmP0aR7tYv3NcW9kBd",
        spellings: &[],
        sentence: r#"{"client_secret": "{}"}"#,
    },
    Planted {
        value: "14/03/1987",
        spellings: &["14.03.1987", "14-03-1987"],
        sentence: "I was born on {} in Ulm.",
    },
    Planted {
        value: "742 Evergreen Terrace, Springfield, OR 97475",
        spellings: &[],
        sentence: "Ship it to {} please.",
    },
    Planted {
        value: "Hauptstraße 5, 10115 Berlin",
        spellings: &["Hauptstrasse 5, 10115 Berlin"],
        sentence: "Our office is at {} now.",
    },
    Planted {
        value: "Priya Raman",
        spellings: &["PRIYA RAMAN", "priya raman"],
        sentence: "Yesterday {} called.",
    },
    Planted {
        value: "Alvarez Quintero",
        spellings: &[],
        sentence: "Please ask Dr. {} first.",
    },
    Planted {
        value: "Globex Widgets Ltd",
        spellings: &[],
        sentence: "The invoice from {} is late.",
    },
    Planted {
        value: "Project Bluebird",
        spellings: &["project-blue bird", "PROJECT BLUEBIRD"],
        sentence: "Status of {} is secret.",
    },
];

fn config() -> DetectorConfig {
    DetectorConfig {
        deny: vec!["Project Bluebird".into()],
        ..Default::default()
    }
}

fn place(planted: &Planted, spelling: &str) -> String {
    planted.sentence.replace("{}", spelling)
}

/// Requests that carry each planted value in every part of a request that is sent: each role,
/// text parts, names, stop sequences, the `user` field, and the arguments of an earlier tool call.
fn corpus() -> Vec<ChatCompletionRequest> {
    let mut requests = Vec::new();
    for planted in PLANTED {
        let spelling = |i: usize| planted.spellings.get(i).copied().unwrap_or(planted.value);
        let mut call = Message::new(Role::Assistant, "");
        call.extra.insert(
            "tool_calls".into(),
            json!([{"id": "call_1", "type": "function", "function": {"name": "lookup",
                "arguments": json!({"query": place(planted, spelling(1))}).to_string()}}]),
        );
        let mut tool = Message::new(Role::Tool, place(planted, spelling(0)));
        tool.extra.insert("tool_call_id".into(), json!("call_1"));
        requests.push(ChatCompletionRequest {
            model: "private".into(),
            messages: vec![
                Message::new(
                    Role::System,
                    format!("Context: {}", place(planted, planted.value)),
                ),
                Message::new(Role::User, place(planted, planted.value)),
                call,
                tool,
                Message::new(
                    Role::Assistant,
                    format!("Noted: {}", place(planted, spelling(0))),
                ),
                Message {
                    role: Role::User,
                    content: Content::Parts(vec![
                        ContentPart {
                            kind: "text".into(),
                            text: Some("Again:".into()),
                        },
                        ContentPart {
                            kind: "text".into(),
                            text: Some(place(planted, spelling(1))),
                        },
                    ]),
                    name: None,
                    tool_calls: None,
                    tool_call_id: None,
                    extra: Default::default(),
                },
            ],
            max_tokens: Some(16),
            ..Default::default()
        });
    }
    let mut all = Message::new(
        Role::User,
        PLANTED
            .iter()
            .map(|p| place(p, p.value))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    all.name = Some("Priya Raman".into());
    requests.push(ChatCompletionRequest {
        model: "private".into(),
        messages: vec![all],
        stop: Some(Stop::Many(vec!["jane.doe@acme-mail.com".into()])),
        user: Some("jane.doe@acme-mail.com".into()),
        ..Default::default()
    });
    requests
}

/// Every planted value that reached the upstream, in any spelling: as written, in another case, or
/// with other spacing and separators (letters and digits compared alone).
fn leaks(bodies: &[String]) -> Vec<String> {
    let mut leaked = Vec::new();
    for body in bodies {
        let lower = body.to_lowercase();
        let squeezed = canonical(body);
        for planted in PLANTED {
            for spelling in planted.spellings.iter().chain([&planted.value]) {
                if lower.contains(&spelling.to_lowercase())
                    || squeezed.contains(&canonical(spelling))
                {
                    leaked.push(format!("{spelling} in {body}"));
                }
            }
        }
    }
    leaked
}

fn assert_no_leaks(bodies: &[String]) {
    let leaked = leaks(bodies);
    assert!(
        leaked.is_empty(),
        "{} leaks, first: {}",
        leaked.len(),
        leaked[0]
    );
}

async fn answer(model: &dyn ChatModel, request: ChatCompletionRequest) -> (String, Vec<String>) {
    let mut stream = model.stream(request).await.expect("the stream starts");
    let mut text = String::new();
    let mut pieces = Vec::new();
    while let Some(event) = stream.next().await {
        match event.expect("no error mid-stream") {
            ChatEvent::Delta { text: piece, .. } => {
                text.push_str(&piece);
                pieces.push(piece);
            }
            ChatEvent::Done(done) => {
                let entry = &done.report.strategies[0];
                assert_eq!(
                    (entry.pipeline.as_str(), entry.strategy.as_str()),
                    ("private", "redact")
                );
                let shown = serde_json::to_string(&done.report).unwrap();
                assert!(
                    leaks(std::slice::from_ref(&shown)).is_empty(),
                    "the report shows a value: {shown}"
                );
            }
            ChatEvent::ToolCall(call) => panic!("the upstream made no tool call: {call:?}"),
        }
    }
    (text, pieces)
}

#[tokio::test]
async fn no_planted_value_reaches_the_upstream_in_any_spelling() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.sqlite");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let guard = Guard::new("private", Detector::new(&config()).unwrap()).with_audit(store.clone());
    let redact = Redact::new(guard, upstream.model());

    let corpus = corpus();
    for request in &corpus {
        let (text, pieces) = answer(&redact, request.clone()).await;
        assert!(pieces.len() > 1, "the answer streamed in pieces");
        assert!(
            !text.contains("_1]"),
            "a placeholder was not restored: {text}"
        );
    }
    // Restoration gives back the value as first written, one value per placeholder.
    let (text, _) = answer(&redact, corpus[0].clone()).await;
    assert_eq!(text, "Got: jane.doe@acme-mail.com.");
    let whole = redact.complete(corpus[3].clone()).await.unwrap();
    assert_eq!(whole.text, "Got: 4111 1111 1111 1111.");

    let bodies = upstream.bodies();
    assert_eq!(bodies.len(), corpus.len() + 2);
    assert_no_leaks(&bodies);
    // The requests did reach the upstream, with their placeholders and tool calls.
    assert!(
        bodies[0].contains("[EMAIL_1]") && bodies[0].contains("tool_calls"),
        "{}",
        bodies[0]
    );

    drop((redact, store));
    let reopened = SqliteStore::open(&db).unwrap();
    let records = reopened.egress(&EgressQuery::default()).unwrap();
    assert_eq!(records.len(), corpus.len() + 2);
    assert!(records
        .iter()
        .all(|r| r.model == "cloud" && r.strategy == "redact" && r.bytes > 0));
    assert_eq!(records[0].redacted["email"], 6, "{:?}", records[0].redacted);
    let mut stored = String::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        stored.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.unwrap().path()).unwrap(),
        ));
    }
    let leaked = leaks(&[stored]);
    assert!(leaked.is_empty(), "the audit holds a value: {}", leaked[0]);
}

#[tokio::test]
async fn stand_ins_leave_no_planted_value_and_come_back_as_the_values() {
    let upstream = Upstream::answering(last_message).await;
    let mut guard = Guard::new("private", Detector::new(&config()).unwrap());
    guard.placeholders = Placeholders::Surrogates;
    let redact = Redact::new(guard, upstream.model());

    let corpus = corpus();
    for (request, planted) in corpus.iter().zip(PLANTED) {
        // The upstream echoes the last message, "Again:" and the sentence with the value in its
        // second spelling: it comes back as first written.
        let (text, pieces) = answer(&redact, request.clone()).await;
        assert!(pieces.len() > 1, "the answer streamed in pieces");
        assert_eq!(text, format!("Again: {}", place(planted, planted.value)));
    }
    let everything = corpus.last().unwrap().clone();
    let whole = redact.complete(everything.clone()).await.unwrap();
    assert_eq!(whole.text, everything.messages[0].content.text().unwrap());

    let bodies = upstream.bodies();
    assert_no_leaks(&bodies);
    // What was sent reads as ordinary text: no tags but the deny-listed value's, and no note.
    let sent = bodies.last().unwrap();
    let tags = regex::Regex::new(r"\[[A-Z]+(?:_[A-Z]+)*_[0-9]+\]").unwrap();
    let shown: Vec<&str> = tags.find_iter(sent).map(|m| m.as_str()).collect();
    assert_eq!(shown, ["[PRIVATE_1]"], "{sent}");
    assert!(!sent.contains("Private details"), "{sent}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_sends_nothing() {
    let upstream = Upstream::start().await;
    let guard = Guard::new("private", Detector::new(&config()).unwrap());
    let redact = Redact::new(guard, upstream.model());
    let request = |content: Content| ChatCompletionRequest {
        model: "private".into(),
        messages: vec![Message {
            role: Role::User,
            content,
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Default::default(),
        }],
        ..Default::default()
    };
    let refusal = |result: Result<(), ModelError>| match result {
        Err(ModelError::InvalidRequest { message, param }) => (message, param),
        Err(other) => panic!("not a refusal: {other}"),
        Ok(()) => panic!("accepted"),
    };

    let huge = format!("{} jane.doe@acme-mail.com", "word ".repeat(300_000));
    let (message, param) = refusal(redact.stream(request(Content::Text(huge))).await.map(drop));
    assert!(message.contains("bytes of text"), "{message}");
    assert_eq!(param.as_deref(), Some("messages"));

    let image = Content::Parts(vec![ContentPart {
        kind: "image_url".into(),
        text: None,
    }]);
    let (message, _) = refusal(redact.stream(request(image)).await.map(drop));
    assert!(message.contains("image_url"), "{message}");

    let mut nested = json!("jane.doe@acme-mail.com");
    for _ in 0..200 {
        nested = json!([{"type": "text", "text": nested}]);
    }
    let mut deep = request(Content::Text("hi".into()));
    deep.messages[0]
        .extra
        .insert("content_parts".into(), nested);
    let (message, _) = refusal(redact.stream(deep).await.map(drop));
    assert!(message.contains("deeper than 64"), "{message}");

    let mut logprobs = request(Content::Text("hi".into()));
    logprobs.logprobs = Some(true);
    let (_, param) = refusal(redact.stream(logprobs).await.map(drop));
    assert_eq!(param.as_deref(), Some("logprobs"));
    assert!(upstream.bodies().is_empty(), "a refused request was sent");

    // Binary junk around planted values: answered, and the values still do not leave.
    let junk: String = (0u32..4000)
        .map(|i| char::from_u32((i * 7919) % 0x2FF).unwrap_or('\u{FFFD}'))
        .collect();
    let text =
        format!("{junk} jane.doe@acme-mail.com \u{0}\u{7f}\u{FFFD} 4111-1111-1111-1111 {junk}");
    redact.complete(request(Content::Text(text))).await.unwrap();
    assert_eq!(upstream.bodies().len(), 1);
    let leaked = leaks(&upstream.bodies());
    assert!(leaked.is_empty(), "{}", leaked[0]);
}

/// SmolLM2 on one thread, shared by the tests of this binary.
fn smollm2() -> Arc<dyn ChatModel> {
    static ENGINE: OnceLock<Arc<tandem_llama::LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let model =
                tandem_llama::LoadedModel::load(&tandem_fetch::test_model(), None, 0).unwrap();
            let mut options = tandem_llama::EngineOptions::new("smollm2");
            options.context_size = 2048;
            options.parallel = 1;
            options.threads = 1;
            Arc::new(tandem_llama::LlamaEngine::start(model, options).unwrap())
        })
        .clone()
}

#[tokio::test]
async fn keep_local_answers_sensitive_requests_on_the_local_model() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    let local = smollm2();
    let guard = Guard::new("careful", Detector::new(&config()).unwrap()).with_audit(store.clone());
    let keep = KeepLocal::new(guard, local, upstream.model(), 0.8);
    let ask = |text: &str| ChatCompletionRequest {
        model: "careful".into(),
        messages: vec![Message::new(Role::User, text)],
        max_tokens: Some(4),
        temperature: Some(0.0),
        ..Default::default()
    };

    let sensitive = keep
        .complete(ask("My card is 4111 1111 1111 1111; is it valid?"))
        .await
        .unwrap();
    let entry = &sensitive.report.strategies[0];
    assert_eq!(entry.details["route"], "local");
    assert_eq!(entry.details["found"]["credit_card"], 1);
    assert_eq!(sensitive.report.model, "smollm2");
    assert!(upstream.bodies().is_empty());

    let plain = keep
        .complete(ask("What is the capital of France?"))
        .await
        .unwrap();
    assert_eq!(plain.report.strategies[0].details["route"], "remote");
    assert_eq!(plain.text, "Got: .");
    assert_eq!(upstream.bodies().len(), 1);
    let records = store.egress(&EgressQuery::default()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].strategy, "keep_local");
}

#[tokio::test]
async fn rewrite_asks_the_remote_model_without_the_private_context() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    let guard = Guard::new("papillon", Detector::new(&config()).unwrap()).with_audit(store.clone());
    let rewrite = Rewrite::new(guard, smollm2(), upstream.model());
    let mut request = corpus().pop().unwrap();
    request.max_tokens = Some(8);
    request.temperature = Some(0.0);

    let output = rewrite.complete(request).await.unwrap();
    assert!(!output.text.is_empty());
    assert_eq!(output.report.model, "smollm2");
    let entry = &output.report.strategies[0];
    assert_eq!(entry.strategy, "rewrite");
    assert_eq!(entry.details["remote"], "cloud");
    let bodies = upstream.bodies();
    assert_eq!(bodies.len(), 1, "one question went out");
    let leaked = leaks(&bodies);
    assert!(leaked.is_empty(), "{}", leaked[0]);
    let records = store.egress(&EgressQuery::default()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].strategy, "rewrite");
}

/// A store whose writes fail, as a full disk or a locked database would: a fault a real SQLite
/// file cannot be made to produce on demand.
struct BrokenStore;

impl Store for BrokenStore {
    fn record_egress(
        &self,
        _: &tandem_store::EgressRecord,
    ) -> Result<(), tandem_store::StoreError> {
        Err(tandem_store::StoreError::Directory {
            path: "/nowhere/state.sqlite".into(),
            source: std::io::Error::other("disk full"),
        })
    }

    fn egress(
        &self,
        _: &EgressQuery,
    ) -> Result<Vec<tandem_store::EgressRecord>, tandem_store::StoreError> {
        Ok(Vec::new())
    }

    fn save_router(&self, _: &tandem_store::StoredRouter) -> Result<(), tandem_store::StoreError> {
        Ok(())
    }

    fn router(
        &self,
        _: &str,
    ) -> Result<Option<tandem_store::StoredRouter>, tandem_store::StoreError> {
        Ok(None)
    }

    fn routers(&self) -> Result<Vec<String>, tandem_store::StoreError> {
        Ok(Vec::new())
    }

    fn save_cascade(
        &self,
        _: &tandem_store::StoredCascade,
    ) -> Result<(), tandem_store::StoreError> {
        Ok(())
    }

    fn cascade(
        &self,
        _: &str,
    ) -> Result<Option<tandem_store::StoredCascade>, tandem_store::StoreError> {
        Ok(None)
    }

    fn cascades(&self) -> Result<Vec<tandem_store::StoredCascade>, tandem_store::StoreError> {
        Ok(Vec::new())
    }

    fn add_spend(
        &self,
        tenant: &str,
        pipeline: &str,
        _: &tandem_store::Spend,
        at_ms: i64,
    ) -> Result<tandem_store::SpendTotals, tandem_store::StoreError> {
        Ok(tandem_store::SpendTotals {
            tenant: tenant.into(),
            pipeline: pipeline.into(),
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_usd: 0.0,
            saved_usd: 0.0,
            updated_ms: at_ms,
        })
    }

    fn spent_usd(&self, _: &str) -> Result<f64, tandem_store::StoreError> {
        Ok(0.0)
    }

    fn spending(&self) -> Result<Vec<tandem_store::SpendTotals>, tandem_store::StoreError> {
        Ok(Vec::new())
    }

    fn cache_put(
        &self,
        _: &tandem_store::CacheEntry,
        _: usize,
    ) -> Result<(), tandem_store::StoreError> {
        Ok(())
    }

    fn cache_exact(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
    ) -> Result<Option<tandem_store::CacheEntry>, tandem_store::StoreError> {
        Ok(None)
    }

    fn cache_candidates(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
    ) -> Result<Vec<tandem_store::CacheEntry>, tandem_store::StoreError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn nothing_is_sent_when_the_audit_cannot_be_written() {
    let upstream = Upstream::start().await;
    let guard =
        Guard::new("private", Detector::new(&config()).unwrap()).with_audit(Arc::new(BrokenStore));
    let redact = Redact::new(guard, upstream.model());
    let error = redact
        .stream(corpus()[0].clone())
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("cannot write the egress audit"),
        "{error}"
    );
    assert!(upstream.bodies().is_empty());
}

/// A name no rule knows ("Why is Zyborin so quiet?") reaches the upstream through the rules alone,
/// and not once a local model judges the capitalised words they left: the real SmolLM2 answers the
/// lettered question, and with a threshold of 0 any person or organisation it reads from its token
/// probabilities is replaced. What the rules found ("Kalvenport Ltd") is not asked about. The answer
/// comes back with the name restored.
#[tokio::test]
async fn a_name_the_rules_miss_is_judged_by_the_local_model_and_never_sent() {
    use tandem_privacy::names::{NameJudge, NameJudgeConfig};

    let request = ChatCompletionRequest {
        model: "private".into(),
        messages: vec![Message::new(
            Role::User,
            "Why is Zyborin so quiet today? Kalvenport Ltd knows.",
        )],
        ..Default::default()
    };
    let upstream = Upstream::start().await;
    let rules = Redact::new(
        Guard::new("private", Detector::new(&config()).unwrap()),
        upstream.model(),
    );
    rules.complete(request.clone()).await.unwrap();
    assert!(
        upstream.bodies()[0].contains("Zyborin"),
        "the rules alone miss it"
    );

    let upstream = Upstream::start().await;
    let judge = NameJudge::new(
        &NameJudgeConfig {
            model: "smollm2".into(),
            threshold: 0.0,
            max_questions: 8,
        },
        smollm2(),
    )
    .unwrap();
    let judged = Redact::new(
        Guard::new("private", Detector::new(&config()).unwrap()).with_name_judge(judge),
        upstream.model(),
    );
    let output = judged.complete(request).await.unwrap();
    let bodies = upstream.bodies();
    assert_eq!(bodies.len(), 1);
    assert!(!bodies[0].contains("Zyborin"), "{}", bodies[0]);
    assert!(!bodies[0].contains("Kalvenport"), "{}", bodies[0]);
    assert!(output.text.contains("Zyborin"), "restored: {}", output.text);
    let entry = &output.report.strategies[0];
    assert_eq!(entry.details["name_judge"]["asked"], 1, "{entry:?}");
    assert_eq!(entry.details["name_judge"]["found"], 1, "{entry:?}");
}
