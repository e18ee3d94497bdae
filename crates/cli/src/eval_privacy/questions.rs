//! `tandem eval privacy --questions N`: whether an answer survives the privacy stages, measured
//! without a judge. Each request is a conversation of labelled sentences (as the quality pass
//! builds them) that ends with a question whose answer is one of its private values: "What is the
//! e-mail address in the conversation above?", or, where a sentence ties a value to a person,
//! "What is Ann Lee's phone number, as given in the conversation above?" (the name is in the
//! question too, so the stage must give it the same placeholder there as in the conversation).
//! An answer is right when it holds the value, compared as [`canonical`] writes values (letters
//! and digits, whatever the case and separators). The large model answers with the full prompt
//! (the reference) and through each policy; quality is kept where the reference is right and the
//! answer through the stage is right too. The control scores another request's reference against
//! this request's value: the check passes it only by chance.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use tandem_core::openai::{Message, Role};
use tandem_core::stats::wilson;
use tandem_privacy::eval::labelled::Sample;
use tandem_privacy::normalize::canonical;
use tandem_privacy::Kind;

use super::quality::{placeholder_pattern, turns, Answered, QualityRun};

/// The kinds a question may ask for, with what the question calls the value.
const ASKED: [(Kind, &str); 12] = [
    (Kind::Email, "e-mail address"),
    (Kind::Phone, "phone number"),
    (Kind::CreditCard, "payment card number"),
    (Kind::Iban, "IBAN"),
    (Kind::NationalId, "national identity number"),
    (Kind::IpAddress, "IP address"),
    (Kind::CredentialUrl, "URL with a user name and password"),
    (Kind::Secret, "key, token or password"),
    (Kind::DateOfBirth, "date of birth"),
    (Kind::StreetAddress, "street address"),
    (Kind::Person, "full name of the person"),
    (Kind::Organization, "name of the company or organisation"),
];

/// The kinds asked of a person named in the same sentence ("Ann Lee's phone number").
const OWNED: [Kind; 4] = [
    Kind::Email,
    Kind::Phone,
    Kind::StreetAddress,
    Kind::DateOfBirth,
];

/// How every question ends: the value alone, so that the check reads one value.
const REPLY: &str = "Reply with it alone, exactly as written there.";

/// One request of the pass and the value that answers it.
struct Question {
    messages: Vec<Message>,
    kind: Kind,
    /// The person the value belongs to, as the question names them; `None` asks for the only
    /// value of its kind in the conversation.
    of: Option<String>,
    value: String,
}

impl Question {
    /// The label of its row in the per-question table.
    fn label(&self) -> String {
        match self.of {
            Some(_) => format!("{} of a person", self.kind),
            None => self.kind.to_string(),
        }
    }
}

/// Whether `answer` holds `value`, whatever its case, spacing and separators.
fn holds(answer: &str, value: &str) -> bool {
    let value = canonical(value);
    !value.is_empty() && canonical(answer).contains(&value)
}

/// `count` questions: the sentences grouped into conversations of two to five turns (a seeded
/// draw), each asked about a value it holds exactly once of its kind, or, with even odds where
/// there is one, about a value of [`OWNED`] kind tied to the only person of its sentence (a person
/// named in no other sentence of the conversation). Conversations with nothing to ask are skipped.
fn questions(samples: &[Sample], seed: u64, count: usize) -> Vec<Question> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(2));
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    while out.len() < count && at < samples.len() {
        let n = rng.random_range(2..=5).min(samples.len() - at);
        let group = &samples[at..at + n];
        at += n;
        // Every labelled value: (sentence, kind, value).
        let values: Vec<(usize, Kind, &str)> = group
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.spans
                    .iter()
                    .map(move |(kind, span)| (i, *kind, &s.text[span.clone()]))
            })
            .collect();
        let distinct = |kind: Kind, sentence: Option<usize>| -> Vec<&str> {
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for &(i, k, value) in &values {
                if k == kind && sentence.is_none_or(|s| s == i) {
                    seen.entry(canonical(value)).or_insert(value);
                }
            }
            seen.into_values().collect()
        };
        let only = |kind: Kind| -> Vec<(Kind, Option<String>, String)> {
            match distinct(kind, None)[..] {
                [value] => vec![(kind, None, value.to_string())],
                _ => Vec::new(),
            }
        };
        let alone: Vec<_> = ASKED.iter().flat_map(|&(kind, _)| only(kind)).collect();
        let mut owned = Vec::new();
        for sentence in 0..group.len() {
            let [person] = distinct(Kind::Person, Some(sentence))[..] else {
                continue;
            };
            let elsewhere = values.iter().any(|&(i, k, v)| {
                i != sentence && k == Kind::Person && canonical(v) == canonical(person)
            });
            if elsewhere {
                continue;
            }
            for kind in OWNED {
                if let [value] = distinct(kind, Some(sentence))[..] {
                    owned.push((kind, Some(person.to_string()), value.to_string()));
                }
            }
        }
        let pool = if !owned.is_empty() && (alone.is_empty() || rng.random_bool(0.5)) {
            owned
        } else {
            alone
        };
        if pool.is_empty() {
            continue;
        }
        let (kind, of, value) = pool[rng.random_range(0..pool.len())].clone();
        let noun = ASKED
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, noun)| *noun)
            .expect("every asked kind has a noun");
        let ask = match &of {
            Some(person) => {
                format!("What is {person}'s {noun}, as given in the conversation above? {REPLY}")
            }
            None => format!("What is the {noun} in the conversation above? {REPLY}"),
        };
        let mut messages = turns(group);
        messages.push(Message::new(Role::User, ask));
        out.push(Question {
            messages,
            kind,
            of,
            value,
        });
    }
    out
}

/// One row of a table: how many were asked and answered right, and of the reference's right
/// answers how many this one kept.
#[derive(Default, Clone, Copy)]
struct Tally {
    asked: usize,
    right: usize,
    reference_right: usize,
    kept: usize,
    placeholders: usize,
}

impl Tally {
    fn add(&mut self, reference_right: bool, right: bool, placeholder: bool) {
        self.asked += 1;
        self.right += usize::from(right);
        self.reference_right += usize::from(reference_right);
        self.kept += usize::from(reference_right && right);
        self.placeholders += usize::from(placeholder);
    }
}

fn share(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "-".into();
    }
    let (low, high) = wilson(part, whole);
    format!(
        "{:.1}% ({part} of {whole}; {:.1}-{:.1}%)",
        100.0 * part as f64 / whole as f64,
        100.0 * low,
        100.0 * high
    )
}

impl QualityRun<'_> {
    /// The questions pass: answers every question with the full prompt and through each policy,
    /// and prints how many each got right and how many of the reference's right answers it kept.
    pub async fn run_questions(&self) -> Result<()> {
        let asked = questions(self.samples, self.seed, self.count);
        let requests: Vec<&[Message]> = asked.iter().map(|q| &q.messages[..]).collect();
        let policies: Vec<&str> = self.stages().into_iter().map(|(label, _)| label).collect();
        let started = std::time::Instant::now();
        let answered = self.answer("questions", &requests).await?;
        eprintln!(
            "questions: {} asked and answered in {:.0} s",
            asked.len(),
            started.elapsed().as_secs_f64()
        );
        let placeholder = placeholder_pattern();
        // Per policy and the control (last), over all questions and per question label.
        let rows = policies.len() + 1;
        let mut total = vec![Tally::default(); rows];
        let mut by_label: BTreeMap<String, Vec<Tally>> = BTreeMap::new();
        let mut reference = Tally::default();
        for (i, (question, answer)) in asked.iter().zip(&answered).enumerate() {
            let reference_right = holds(&answer.reference, &question.value);
            reference.add(reference_right, reference_right, false);
            let other =
                (asked.len() > 1).then(|| answered[(i + 1) % asked.len()].reference.as_str());
            let candidates = answer.candidates.iter().map(String::as_str).chain(other);
            let label = by_label
                .entry(question.label())
                .or_insert_with(|| vec![Tally::default(); rows]);
            for (row, candidate) in candidates.enumerate() {
                let right = holds(candidate, &question.value);
                let shows = placeholder.is_match(candidate);
                total[row].add(reference_right, right, shows);
                label[row].add(reference_right, right, shows);
            }
        }
        if let Some(path) = self.write {
            write_answers(path, &asked, &answered, &policies)?;
        }
        print_tables(&policies, reference, &total, &by_label, self.max_tokens);
        Ok(())
    }
}

fn write_answers(
    path: &std::path::Path,
    asked: &[Question],
    answered: &[Answered],
    policies: &[&str],
) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    for (question, answer) in asked.iter().zip(answered) {
        let candidates: serde_json::Map<String, serde_json::Value> = policies
            .iter()
            .zip(&answer.candidates)
            .map(|(policy, text)| {
                (
                    policy.to_string(),
                    serde_json::json!({ "answer": text, "right": holds(text, &question.value) }),
                )
            })
            .collect();
        let line = serde_json::json!({
            "messages": question.messages,
            "kind": question.kind,
            "of": question.of,
            "value": question.value,
            "reference": answer.reference,
            "reference_right": holds(&answer.reference, &question.value),
            "policies": candidates,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn print_tables(
    policies: &[&str],
    reference: Tally,
    total: &[Tally],
    by_label: &BTreeMap<String, Vec<Tally>>,
    max_tokens: u32,
) {
    println!(
        "\nQuestions through the stages: each conversation ends with a question whose answer is \
         one of its private values (the only one of its kind, or the one tied to a person named \
         in the question). The large model answers greedily (at most {max_tokens} tokens) with \
         the full prompt (the reference) and through each policy. An answer is right when it \
         holds the value (letters and digits, whatever the case and separators). Kept: of the \
         questions the reference answers right, the share the policy answers right too. The \
         control scores the next request's reference against this request's value.\n"
    );
    println!(
        "| answered by | questions | right | kept (of the reference's right answers) | answers \
         with a placeholder |"
    );
    println!("|---|---:|---|---|---:|");
    println!(
        "| full prompt (reference) | {} | {} | - | - |",
        reference.asked,
        share(reference.right, reference.asked)
    );
    let labels: Vec<&str> = policies
        .iter()
        .copied()
        .chain(["control: another request's answer"])
        .collect();
    for (label, row) in labels.iter().zip(total) {
        println!(
            "| {label} | {} | {} | {} | {} |",
            row.asked,
            share(row.right, row.asked),
            share(row.kept, row.reference_right),
            row.placeholders
        );
    }
    println!("\nKept per question, of the reference's right answers:\n");
    println!(
        "| question | asked | reference right | {} |",
        policies.join(" | ")
    );
    println!("|---|---:|---:|{}", "---:|".repeat(policies.len()));
    for (label, rows) in by_label {
        let first = rows[0];
        let kept: Vec<String> = rows[..policies.len()]
            .iter()
            .map(|r| format!("{} of {}", r.kept, r.reference_right))
            .collect();
        println!(
            "| {label} | {} | {} | {} |",
            first.asked,
            first.reference_right,
            kept.join(" | ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, values: &[(Kind, &str)]) -> Sample {
        let spans = values
            .iter()
            .map(|&(kind, value)| {
                let start = text.find(value).expect("the value is in the text");
                (kind, start..start + value.len())
            })
            .collect();
        Sample {
            text: text.to_string(),
            spans,
            source: "test",
        }
    }

    #[test]
    fn a_value_is_held_whatever_its_case_and_separators() {
        assert!(holds("Call +1 (555) 010-2030.", "+1 555 010 2030"));
        assert!(holds("It is ANN.LEE@EXAMPLE.COM", "ann.lee@example.com"));
        assert!(!holds("Call 555 010 2031.", "555 010 2030"));
        assert!(!holds("[EMAIL_1]", "ann.lee@example.com"));
        assert!(!holds("anything", "--"));
    }

    #[test]
    fn each_question_asks_for_a_value_its_conversation_holds_once_or_ties_to_a_person() {
        let samples: Vec<Sample> = (0..60)
            .map(|i| {
                let (person, mail) = (format!("Ann Lee{i}"), format!("ann{i}@example.com"));
                let phone = format!("555 010 {:04}", i);
                let text = format!("Write to {person} at {mail}, or call {phone}.");
                sample(
                    &text,
                    &[
                        (Kind::Person, &person),
                        (Kind::Email, &mail),
                        (Kind::Phone, &phone),
                    ],
                )
            })
            .collect();
        let asked = questions(&samples, 3, 12);
        assert_eq!(asked.len(), 12);
        // Every conversation has two sentences or more, so two values of each kind: only a
        // question about a person's own value can be asked.
        for q in &asked {
            let person = q.of.as_deref().expect("tied to a person");
            assert!([Kind::Email, Kind::Phone].contains(&q.kind), "{:?}", q.kind);
            let text = q.messages.last().unwrap().content.text().unwrap();
            assert!(text.contains(&format!("{person}'s")), "{text}");
            let turns = &q.messages[..q.messages.len() - 1];
            let sentence = turns
                .iter()
                .filter_map(|m| m.content.text())
                .find(|t| t.contains(&format!("{person} ")))
                .expect("the person is in the conversation");
            assert!(sentence.contains(&q.value), "{sentence} / {}", q.value);
        }
        let again = questions(&samples, 3, 12);
        assert!(asked
            .iter()
            .zip(&again)
            .all(|(a, b)| a.messages == b.messages && a.value == b.value));
    }

    #[test]
    fn a_value_asked_alone_is_the_only_one_of_its_kind() {
        let samples: Vec<Sample> = (0..40)
            .map(|i| {
                let org = if i % 7 == 0 { "Acme Ltd" } else { "" };
                if org.is_empty() {
                    sample(&format!("Nothing private in line {i}."), &[])
                } else {
                    sample(
                        &format!("We met Acme Ltd on day {i}."),
                        &[(Kind::Organization, org)],
                    )
                }
            })
            .collect();
        let asked = questions(&samples, 5, 40);
        assert!(!asked.is_empty());
        for q in &asked {
            assert_eq!(q.kind, Kind::Organization);
            assert_eq!(q.of, None);
            assert_eq!(q.value, "Acme Ltd");
            let text = q.messages.last().unwrap().content.text().unwrap();
            assert!(
                text.starts_with("What is the name of the company or organisation"),
                "{text}"
            );
        }
        // Conversations without a value are skipped, not asked about.
        let conversations_with_acme = asked.len();
        assert!(conversations_with_acme <= 6, "{conversations_with_acme}");
    }
}
