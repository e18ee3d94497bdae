//! `tandem eval privacy --quality N`: whether an answer survives the privacy stages. N multi-turn
//! requests built from the labelled sentences (each ends with a task that needs the private
//! details: a summary, a reply, a list of contacts, a follow-up e-mail) are answered by the large
//! model with the full prompt (the reference), through `redact` with tags and with stand-ins, and
//! through `rewrite` when a local model is given, greedily. The large model then judges each
//! answer as PAPILLON (Li et al., 2024) does: seeing the request, is the answer at least as good as
//! the reference, and is the reference at least as good as the answer (from its token
//! probabilities)? An answer is preserved unless the judge, consistently, finds it worse: no to
//! the first question and yes to the second.
//! A control bounds the judge's leniency: each reference against another request's reference
//! (what it says when everything differs). Two checks need no judge: the labelled values the
//! reference repeats that the candidate repeats too, and answers that still show a placeholder
//! after restoration.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use rand::{Rng, SeedableRng};
use tandem_core::logprobs::one_token_question;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::stats::wilson;
use tandem_core::ChatModel;
use tandem_privacy::eval::labelled::Sample;
use tandem_privacy::stage::{Guard, Redact, Rewrite};
use tandem_privacy::vault::Placeholders;
use tandem_privacy::Kind;
use tandem_route::signal::yes_probability;

/// Requests answered at once: each runs its reference and its candidates together, so a local
/// engine with four sequences stays full.
const REQUESTS_AT_ONCE: usize = 2;

/// Pairs judged at once; each asks its two questions together, so four run on the engine.
const PAIRS_AT_ONCE: usize = 2;

/// The last user message of each request, drawn with the seed.
const TASKS: [&str; 4] = [
    "Summarise the conversation above in two or three sentences. Keep the names, dates, numbers \
     and contact details.",
    "Write a short reply to the last message above.",
    "List every person, organisation, address and contact detail mentioned above, one per line.",
    "Write a short e-mail that follows up on the conversation above.",
];

/// PAPILLON's quality question, asked of the judge in both orders.
const JUDGE_QUESTION: &str = "You are comparing the quality of two responses, given a user's \
request. Is response A at least as good as response B? Answer yes or no.";

/// The control runs on every this-many-th request.
const CONTROL_EVERY: usize = 5;

/// What one run of the quality pass needs.
pub struct QualityRun<'a> {
    pub samples: &'a [Sample],
    pub seed: u64,
    pub count: usize,
    /// The pipeline's detector and name judge, as the leakage pass uses them.
    pub guard: &'a Guard,
    /// Answers (the reference and behind the stages) and judges.
    pub large: Arc<dyn ChatModel>,
    /// Rewrites and composes for the `rewrite` policy; `None` leaves that policy out.
    pub local: Option<Arc<dyn ChatModel>>,
    pub max_tokens: u32,
    /// Where to write every request, its answers and their verdicts (JSON lines)
    pub write: Option<&'a std::path::Path>,
}

/// One request of the pass, with the labelled values its messages hold.
struct Item {
    messages: Vec<Message>,
    values: Vec<String>,
}

impl Item {
    /// The request as the judge reads it: each turn under its role, the task last.
    fn transcript(&self) -> String {
        self.messages
            .iter()
            .map(|m| {
                let role = if m.role == Role::User {
                    "User"
                } else {
                    "Assistant"
                };
                format!("{role}: {}", m.content.text().unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

pub(super) struct Answered {
    pub(super) reference: String,
    /// Per policy, in [`QualityRun::stages`] order.
    pub(super) candidates: Vec<String>,
}

/// The judge's two answers about one pair, as P(yes).
#[derive(Clone, Copy)]
struct Verdict {
    /// Is the answer at least as good as the reference?
    answer_as_good: f64,
    /// Is the reference at least as good as the answer?
    reference_as_good: f64,
}

impl Verdict {
    /// PAPILLON's rule: preserved unless the judge, consistently, finds the answer worse (no to
    /// the first question, yes to the second). An inconsistent judge counts as a tie.
    fn preserved(self) -> bool {
        let (answer, reference) = (self.answer_as_good >= 0.5, self.reference_as_good >= 0.5);
        answer || !reference
    }
}

/// One policy's row of the table.
#[derive(Default)]
struct Row {
    requests: usize,
    /// Pairs the judge was asked about (all but the identical ones).
    judged: usize,
    /// Identical, or preserved by [`Verdict::preserved`].
    preserved: usize,
    /// Identical, or judged at least as good as the reference (the first question alone).
    as_good: usize,
    answer_as_good_sum: f64,
    reference_as_good_sum: f64,
    identical: usize,
    values_in_reference: usize,
    values_kept: usize,
    /// Answers that still show a placeholder (`PERSON_1`, bracketed or not) after restoration.
    placeholders: usize,
}

impl QualityRun<'_> {
    /// Each policy's label and stage: `redact` with tags and with stand-ins, then `rewrite` when a
    /// local model is given.
    pub(super) fn stages(&self) -> Vec<(&'static str, Arc<dyn ChatModel>)> {
        let redact = |placeholders| -> Arc<dyn ChatModel> {
            let guard = Guard {
                placeholders,
                ..self.guard.clone()
            };
            Arc::new(Redact::new(guard, Arc::clone(&self.large)))
        };
        let mut stages = vec![
            ("redact, tags", redact(Placeholders::Tags)),
            ("redact, surrogates", redact(Placeholders::Surrogates)),
        ];
        if let Some(local) = &self.local {
            stages.push((
                "rewrite",
                Arc::new(Rewrite::new(
                    self.guard.clone(),
                    Arc::clone(local),
                    Arc::clone(&self.large),
                )),
            ));
        }
        stages
    }

    pub async fn run(&self) -> Result<()> {
        let items = &requests(self.samples, self.seed, self.count);
        let policies: Vec<&str> = self.stages().into_iter().map(|(label, _)| label).collect();
        let started = std::time::Instant::now();
        let requests: Vec<&[Message]> = items.iter().map(|i| &i.messages[..]).collect();
        let answered = self.answer("quality", &requests).await?;

        // Every pair to judge: (item, reference, answer, row). The control is the last row, on
        // every [`CONTROL_EVERY`]-th request: a reference against the next request's.
        let other = policies.len();
        let mut pairs: Vec<(usize, &str, &str, usize)> = Vec::new();
        for (i, answer) in answered.iter().enumerate() {
            for (p, candidate) in answer.candidates.iter().enumerate() {
                pairs.push((i, &answer.reference, candidate, p));
            }
            if i % CONTROL_EVERY == 0 && answered.len() > 1 {
                let next = &answered[(i + 1) % answered.len()].reference;
                pairs.push((i, &answer.reference, next, other));
            }
        }
        // By index: a closure over each pair's reference would not be `Send` for every lifetime.
        let verdicts: Vec<Option<Verdict>> = futures::stream::iter(0..pairs.len())
            .map(|k| {
                let (i, reference, answer, _) = pairs[k];
                let request = items[i].transcript();
                async move {
                    // An answer equal to its reference needs no judge: both questions would be the
                    // same prompt, so the judge could not find it worse.
                    if reference.trim() == answer.trim() {
                        return Ok(None);
                    }
                    let (answer_as_good, reference_as_good) = futures::future::try_join(
                        self.judge(&request, answer, reference),
                        self.judge(&request, reference, answer),
                    )
                    .await?;
                    Ok::<_, anyhow::Error>(Some(Verdict {
                        answer_as_good,
                        reference_as_good,
                    }))
                }
            })
            .buffered(PAIRS_AT_ONCE)
            .try_collect()
            .await?;
        eprintln!(
            "quality: {} requests answered and judged in {:.0} s",
            items.len(),
            started.elapsed().as_secs_f64()
        );

        let placeholder = placeholder_pattern();
        let mut rows: Vec<Row> = (0..=other).map(|_| Row::default()).collect();
        for (&(i, first, second, p), &judged) in pairs.iter().zip(&verdicts) {
            let row = &mut rows[p];
            row.requests += 1;
            row.identical += usize::from(first.trim() == second.trim());
            match judged {
                Some(verdict) => {
                    row.judged += 1;
                    row.answer_as_good_sum += verdict.answer_as_good;
                    row.reference_as_good_sum += verdict.reference_as_good;
                    row.preserved += usize::from(verdict.preserved());
                    row.as_good += usize::from(verdict.answer_as_good >= 0.5);
                }
                None => {
                    row.preserved += 1;
                    row.as_good += 1;
                }
            }
            row.placeholders += usize::from(placeholder.is_match(second));
            let (first, second) = (first.to_lowercase(), second.to_lowercase());
            for value in &items[i].values {
                let value = value.to_lowercase();
                if first.contains(&value) {
                    row.values_in_reference += 1;
                    row.values_kept += usize::from(second.contains(&value));
                }
            }
        }
        if let Some(path) = self.write {
            write_answers(path, items, &answered, &policies, &pairs, &verdicts)?;
        }
        print_table(&policies, &rows, self.max_tokens);
        Ok(())
    }

    /// Each request answered greedily with the full prompt (the reference) and through every
    /// policy of [`QualityRun::stages`], in order; progress is logged under `pass`.
    pub(super) async fn answer(
        &self,
        pass: &str,
        requests: &[&[Message]],
    ) -> Result<Vec<Answered>> {
        let stages: Vec<Arc<dyn ChatModel>> =
            self.stages().into_iter().map(|(_, stage)| stage).collect();
        let started = std::time::Instant::now();
        futures::stream::iter(0..requests.len())
            .map(|i| {
                let (messages, stages, large) = (requests[i], &stages, &self.large);
                async move {
                    let request = self.request(messages);
                    let reference = large.complete(request.clone());
                    let candidates = futures::future::try_join_all(
                        stages.iter().map(|stage| stage.complete(request.clone())),
                    );
                    let (reference, candidates) =
                        futures::future::try_join(reference, candidates).await?;
                    if (i + 1) % 10 == 0 {
                        eprintln!(
                            "{pass}: {} of {} requests answered, {:.0} s",
                            i + 1,
                            requests.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                    Ok::<_, tandem_core::ModelError>(Answered {
                        reference: reference.text,
                        candidates: candidates.into_iter().map(|c| c.text).collect(),
                    })
                }
            })
            .buffered(REQUESTS_AT_ONCE)
            .try_collect()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn request(&self, messages: &[Message]) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "eval".into(),
            messages: messages.to_vec(),
            temperature: Some(0.0),
            max_tokens: Some(self.max_tokens),
            ..Default::default()
        }
    }

    /// The large model's P(yes) that response `a` to the request is at least as good as `b`.
    /// The judge reads the whole request, private details included, as PAPILLON's judge reads the
    /// user's query: it can tell which answer has the details right.
    async fn judge(&self, request: &str, a: &str, b: &str) -> Result<f64> {
        let prompt = format!(
            "The user's request (a conversation that ends with the user's task):\n\n{request}\n\n\
             Response A:\n{a}\n\nResponse B:\n{b}\n\n{JUDGE_QUESTION}"
        );
        let request = ChatCompletionRequest {
            model: "eval".into(),
            ..one_token_question(vec![Message::new(Role::User, prompt)])
        };
        let output = self
            .large
            .complete(request)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let first_token = output.logprobs.and_then(|l| l.into_iter().next());
        Ok(yes_probability(first_token.as_ref()))
    }
}

/// `count` requests of two to five labelled sentences each, as turns of a user and an assistant,
/// then a task drawn from [`TASKS`].
fn requests(samples: &[Sample], seed: u64, count: usize) -> Vec<Item> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    let mut items = Vec::with_capacity(count);
    let mut at = 0;
    while items.len() < count && at < samples.len() {
        let n = rng.random_range(2..=5).min(samples.len() - at);
        let group = &samples[at..at + n];
        at += n;
        let mut messages = turns(group);
        messages.push(Message::new(
            Role::User,
            TASKS[rng.random_range(0..TASKS.len())],
        ));
        let values = group
            .iter()
            .flat_map(|s| {
                s.spans
                    .iter()
                    .map(|(_, span)| s.text[span.clone()].to_string())
            })
            .collect();
        items.push(Item { messages, values });
    }
    items
}

/// The sentences as turns of a user and an assistant, the user first.
pub(super) fn turns(group: &[Sample]) -> Vec<Message> {
    group
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            Message::new(role, s.text.clone())
        })
        .collect()
}

/// A placeholder of any kind, with or without its brackets.
pub(super) fn placeholder_pattern() -> regex::Regex {
    let tags: Vec<&str> = Kind::ALL.iter().map(|k| k.tag()).collect();
    regex::Regex::new(&format!(r"\b(?:{})_\d+\b", tags.join("|"))).expect("a valid pattern")
}

fn write_answers(
    path: &std::path::Path,
    items: &[Item],
    answered: &[Answered],
    policies: &[&str],
    pairs: &[(usize, &str, &str, usize)],
    verdicts: &[Option<Verdict>],
) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    // Each (request, row) is judged at most once.
    let verdict: std::collections::HashMap<(usize, usize), Option<Verdict>> = pairs
        .iter()
        .zip(verdicts)
        .map(|(&(item, _, _, row), &judged)| ((item, row), judged))
        .collect();
    for (i, (item, answer)) in items.iter().zip(answered).enumerate() {
        let judged = |row: usize| {
            verdict.get(&(i, row)).copied().flatten().map(|v| {
                serde_json::json!({
                    "p_answer_as_good": v.answer_as_good,
                    "p_reference_as_good": v.reference_as_good,
                    "preserved": v.preserved(),
                })
            })
        };
        let candidates: serde_json::Map<String, serde_json::Value> = policies
            .iter()
            .zip(&answer.candidates)
            .enumerate()
            .map(|(p, (policy, text))| {
                (
                    policy.to_string(),
                    serde_json::json!({ "answer": text, "verdict": judged(p) }),
                )
            })
            .collect();
        let line = serde_json::json!({
            "messages": item.messages,
            "values": item.values,
            "reference": answer.reference,
            "policies": candidates,
            "other_answer_verdict": judged(policies.len()),
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn print_table(policies: &[&str], rows: &[Row], max_tokens: u32) {
    println!(
        "\nQuality through the stages: each request answered greedily (at most {max_tokens} \
         tokens) with the full prompt (the reference) and through each policy. An answer \
         identical to its reference is preserved. The large model judges the others as PAPILLON \
         does, reading the whole request: is response A at least as good as response B, asked \
         with the answer as A and then with the reference as A (P(yes) from its token \
         probabilities, yes at 0.5). Preserved: all but the answers the judge consistently finds \
         worse (no, then yes); an inconsistent judge counts as a tie. As good: yes to the first \
         question alone. On every {CONTROL_EVERY}th request the control asks the same about \
         another request's reference, in place of the answer. Values kept: of the labelled \
         values the reference repeats, the share the answer repeats too. Answers with a \
         placeholder: answers that show a tag such as `[PERSON_2]` after restoration (tags the \
         model made up: held ones are restored).\n"
    );
    println!(
        "| policy | requests | identical | judged | preserved | 95% interval | as good | mean \
         P(answer as good) | mean P(reference as good) | values kept | answers with a \
         placeholder |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    let labels = policies
        .iter()
        .copied()
        .chain(["control: another request's answer"]);
    for (label, row) in labels.zip(rows) {
        let n = row.requests.max(1) as f64;
        let judged = row.judged.max(1) as f64;
        let (low, high) = wilson(row.preserved, row.requests);
        println!(
            "| {label} | {} | {:.1}% | {} | {:.1}% | {:.1}-{:.1}% | {:.1}% | {:.3} | {:.3} | {} | \
             {} |",
            row.requests,
            100.0 * row.identical as f64 / n,
            row.judged,
            100.0 * row.preserved as f64 / n,
            100.0 * low,
            100.0 * high,
            100.0 * row.as_good as f64 / n,
            row.answer_as_good_sum / judged,
            row.reference_as_good_sum / judged,
            if row.values_in_reference == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:.1}% of {}",
                    100.0 * row.values_kept as f64 / row.values_in_reference as f64,
                    row.values_in_reference
                )
            },
            row.placeholders
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Sample {
        let text = format!("Call Ann {i} today.");
        Sample {
            spans: vec![(Kind::Person, 5..8 + i.to_string().len() + 1)],
            text,
            source: "test",
        }
    }

    #[test]
    fn requests_are_seeded_turns_of_the_sentences_then_a_task() {
        let samples: Vec<Sample> = (0..40).map(sample).collect();
        let items = requests(&samples, 7, 5);
        assert_eq!(items.len(), 5);
        let mut next = 0;
        for item in &items {
            let turns = &item.messages[..item.messages.len() - 1];
            assert!((2..=5).contains(&turns.len()), "{}", turns.len());
            for (i, turn) in turns.iter().enumerate() {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                assert_eq!(turn.role, role);
                assert_eq!(turn.content.text().unwrap(), samples[next].text);
                assert_eq!(item.values[i], format!("Ann {next}"));
                next += 1;
            }
            assert_eq!(item.messages.last().unwrap().role, Role::User);
            let task = item.messages.last().unwrap().content.text().unwrap();
            assert!(TASKS.contains(&task.as_str()));
            let transcript = item.transcript();
            assert!(transcript.starts_with(&format!("User: {}", samples[next - turns.len()].text)));
            assert!(transcript.ends_with(&format!("User: {task}")));
        }
        let again = requests(&samples, 7, 5);
        assert!(items
            .iter()
            .zip(&again)
            .all(|(a, b)| a.messages == b.messages));
        let other = requests(&samples, 8, 5);
        assert!(items
            .iter()
            .zip(&other)
            .any(|(a, b)| a.messages != b.messages));
    }

    #[test]
    fn an_answer_is_lost_only_where_the_judge_consistently_finds_it_worse() {
        let verdict = |answer_as_good, reference_as_good| Verdict {
            answer_as_good,
            reference_as_good,
        };
        // As good, better, and the two inconsistent cases (a tie) are preserved.
        assert!(verdict(0.8, 0.7).preserved());
        assert!(verdict(0.8, 0.2).preserved());
        assert!(verdict(0.3, 0.4).preserved());
        assert!(verdict(0.5, 0.5).preserved());
        // No to "answer as good", yes to "reference as good": worse.
        assert!(!verdict(0.3, 0.6).preserved());
        assert!(!verdict(0.49, 0.5).preserved());
    }

    #[test]
    fn placeholders_are_found_with_or_without_brackets() {
        let pattern = placeholder_pattern();
        for shown in [
            "Dear [PERSON_2],",
            "ADDRESS_1: 5 Main St",
            "mail EMAIL_12 now",
        ] {
            assert!(pattern.is_match(shown), "{shown}");
        }
        for clean in ["PERSONAL_1", "[ORGANISATION_1]", "Dear Ann,", "PERSON_"] {
            assert!(!pattern.is_match(clean), "{clean}");
        }
    }
}
