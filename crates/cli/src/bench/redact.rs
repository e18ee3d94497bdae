//! `tandem bench redact`: what the `redact` stage's own work costs as a conversation grows, without
//! a model (the rules alone, no name judge). For each size a conversation of messages dense with
//! private values (four in each sentence: a person, one of 64, and an e-mail, a phone number and
//! a card that no other sentence holds) is pseudonymised as the stage does it (`Guard::pseudonymise`: detection, every value
//! found in every message, placeholders), and an answer that repeats every placeholder is restored
//! whole and streamed in small chunks. Time per kilobyte that stays flat as the size grows is what
//! linear cost looks like; before 2026-11-30 finding the values everywhere and restoring were
//! quadratic (a scan per value).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_privacy::detect::luhn;
use tandem_privacy::stage::Guard;
use tandem_privacy::vault::{Placeholders, Restorer};
use tandem_privacy::{Detector, DetectorConfig};

/// Bytes of each message of the conversation.
const MESSAGE_BYTES: usize = 4096;

/// Bytes of each chunk of the streamed answer (a few tokens).
const CHUNK_BYTES: usize = 12;

pub struct Settings {
    /// Conversation sizes in kilobytes.
    pub sizes: Vec<usize>,
    pub rounds: usize,
}

/// The `i`-th sentence: a person (one of 64), and an e-mail, a phone number and a card of its own.
fn sentence(i: usize) -> String {
    const GIVEN: [&str; 8] = [
        "Amara", "Bogdan", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiroshi",
    ];
    const FAMILY: [&str; 8] = [
        "Okafor",
        "Lindqvist",
        "Moreau",
        "Petrov",
        "Yilmaz",
        "Haddad",
        "Novak",
        "Tanaka",
    ];
    // A card number: fifteen digits from `i`, then the check digit that makes it pass Luhn.
    let card = (0..10)
        .map(|d| format!("4{:014}{d}", i * 7919))
        .find(|n| luhn(n))
        .expect("one check digit fits");
    format!(
        "Dr. {} {} wrote from case{i}@clinic{}.org, call +44 20 7946 {:04}, card {card}. ",
        GIVEN[i % GIVEN.len()],
        FAMILY[i / GIVEN.len() % FAMILY.len()],
        i % 97,
        i % 10_000
    )
}

/// A conversation of about `bytes` bytes, in messages of about [`MESSAGE_BYTES`], user and
/// assistant in turn.
fn conversation(bytes: usize) -> ChatCompletionRequest {
    let mut messages = Vec::new();
    let mut text = String::new();
    let mut total = 0;
    let mut i = 0;
    while total < bytes {
        let next = sentence(i);
        i += 1;
        total += next.len();
        text.push_str(&next);
        if text.len() >= MESSAGE_BYTES || total >= bytes {
            let role = if messages.len() % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            messages.push(Message::new(role, std::mem::take(&mut text)));
        }
    }
    ChatCompletionRequest {
        model: "bench".into(),
        messages,
        ..Default::default()
    }
}

/// One size's timings, in seconds.
#[derive(Default)]
struct Timing {
    pseudonymise: f64,
    restore: f64,
    stream: f64,
}

pub async fn run(settings: Settings) -> Result<String> {
    if settings.sizes.is_empty() || settings.sizes.contains(&0) || settings.rounds == 0 {
        bail!("--sizes needs at least one size, each at least 1 (kB), and --rounds must be at least 1");
    }
    let mut report = String::new();
    writeln!(
        report,
        "# redact: the stage's own work as a conversation grows\n\n\
         Rules alone (no name judge); messages of {MESSAGE_BYTES} bytes, each sentence holding a \
         person (one of 64) and an e-mail, a phone number and a card of its own. The answer repeats every \
         placeholder of the request; streamed, it comes in chunks of {CHUNK_BYTES} bytes. Best of \
         {} rounds.\n",
        settings.rounds
    )?;
    writeln!(
        report,
        "| placeholders | text | values | pseudonymise (ms) | µs/kB | restore (ms) | µs/kB | \
         streamed restore (ms) | µs/kB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for style in [Placeholders::Tags, Placeholders::Surrogates] {
        let guard = Guard {
            placeholders: style,
            max_text_bytes: usize::MAX,
            ..Guard::new("bench", Detector::new(&DetectorConfig::default())?)
        };
        // Not timed: the first call compiles the detector's patterns.
        guard
            .pseudonymise(&conversation(1024))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for &kilobytes in &settings.sizes {
            let request = conversation(kilobytes * 1024);
            let bytes: usize = request
                .messages
                .iter()
                .filter_map(|m| m.content.text())
                .map(|t| t.len())
                .sum();
            let mut best = Timing {
                pseudonymise: f64::MAX,
                restore: f64::MAX,
                stream: f64::MAX,
            };
            let mut values = 0;
            for _ in 0..settings.rounds {
                let start = Instant::now();
                let pseudonymised = guard
                    .pseudonymise(&request)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                best.pseudonymise = best.pseudonymise.min(start.elapsed().as_secs_f64());
                let vault = Arc::new(pseudonymised.vault);
                values = vault.len();
                let answer: String = vault.placeholders().join(" and ");

                let start = Instant::now();
                let restored = vault.restore(&answer);
                best.restore = best.restore.min(start.elapsed().as_secs_f64());

                let start = Instant::now();
                let mut restorer = Restorer::new(Arc::clone(&vault));
                let mut streamed = String::with_capacity(restored.len());
                let mut at = 0;
                while at < answer.len() {
                    let mut end = (at + CHUNK_BYTES).min(answer.len());
                    while !answer.is_char_boundary(end) {
                        end += 1;
                    }
                    streamed.push_str(&restorer.push(&answer[at..end]));
                    at = end;
                }
                streamed.push_str(&restorer.finish());
                best.stream = best.stream.min(start.elapsed().as_secs_f64());
                if streamed != restored {
                    bail!("the streamed restore differs from the whole one at {kilobytes} kB");
                }
            }
            let per_kb = |seconds: f64| seconds * 1e6 / (bytes as f64 / 1024.0);
            writeln!(
                report,
                "| {} | {:.0} kB | {values} | {:.1} | {:.0} | {:.1} | {:.0} | {:.1} | {:.0} |",
                match style {
                    Placeholders::Tags => "tags",
                    Placeholders::Surrogates => "stand-ins",
                },
                bytes as f64 / 1024.0,
                best.pseudonymise * 1e3,
                per_kb(best.pseudonymise),
                best.restore * 1e3,
                per_kb(best.restore),
                best.stream * 1e3,
                per_kb(best.stream),
            )?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_hold_four_values_the_detector_finds_three_of_their_own() {
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        let texts: Vec<String> = (0..50).map(sentence).collect();
        let mut seen = std::collections::HashSet::new();
        for text in &texts {
            let found = detector.detect(text);
            let kinds: Vec<_> = found.iter().map(|f| f.kind).collect();
            assert_eq!(
                kinds,
                [
                    tandem_privacy::Kind::Person,
                    tandem_privacy::Kind::Email,
                    tandem_privacy::Kind::Phone,
                    tandem_privacy::Kind::CreditCard
                ],
                "{text}"
            );
            for f in &found[1..] {
                assert!(seen.insert(text[f.span.clone()].to_string()), "{text}");
            }
        }
    }

    #[test]
    fn a_conversation_has_about_the_size_asked_in_turns() {
        let request = conversation(20_000);
        let bytes: usize = request
            .messages
            .iter()
            .map(|m| m.content.text().unwrap().len())
            .sum();
        assert!((20_000..20_000 + 200).contains(&bytes), "{bytes}");
        assert!(request.messages.len() >= 4);
        assert_eq!(request.messages[1].role, Role::Assistant);
    }
}
