//! `tandem eval privacy --quality N`: whether an answer survives the privacy stages. N multi-turn
//! requests built from the labelled sentences (each ends with a task that needs the private
//! details: a summary, a reply, a list of contacts, a follow-up e-mail) are answered by the large
//! model with the full prompt (the reference), through `redact` with tags and with stand-ins, and
//! through `rewrite` when a local model is given, greedily. The large model then judges, from its
//! token probabilities and in both orders, whether the two answers give the user the same
//! information.
//! Two controls bound the judge: each reference against itself (what it says when nothing was
//! lost) and against another request's reference (what it says when everything differs). Two
//! checks need no judge: the labelled values the reference repeats that the candidate repeats too,
//! and answers that still show a placeholder after restoration.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use rand::{Rng, SeedableRng};
use tandem_core::logprobs::one_token_question;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};
use tandem_core::ChatModel;
use tandem_eval::report::wilson;
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

const JUDGE_QUESTION: &str = "Do the two answers give the user the same information, with the \
same names, numbers and details, so that either would serve the user equally well? Answer yes or \
no.";

/// The controls run on every this-many-th request.
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
    /// The last user message: what both answers answer.
    fn task(&self) -> String {
        self.messages
            .last()
            .and_then(|m| m.content.text())
            .unwrap_or_default()
    }
}

struct Answered {
    reference: String,
    /// Per policy, in [`QualityRun::stages`] order.
    candidates: Vec<String>,
}

/// One policy's row of the table.
#[derive(Default)]
struct Row {
    requests: usize,
    /// Pairs the judge was asked about (all but the identical ones, outside the controls).
    judged: usize,
    /// Identical, or judged the same at P(yes) >= 0.5.
    preserved: usize,
    yes_sum: f64,
    identical: usize,
    values_in_reference: usize,
    values_kept: usize,
    /// Answers that still show a placeholder (`PERSON_1`, bracketed or not) after restoration.
    placeholders: usize,
}

impl QualityRun<'_> {
    /// Each policy's label and stage: `redact` with tags and with stand-ins, then `rewrite` when a
    /// local model is given.
    fn stages(&self) -> Vec<(&'static str, Arc<dyn ChatModel>)> {
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
        let (policies, stages): (Vec<&str>, Vec<Arc<dyn ChatModel>>) =
            self.stages().into_iter().unzip();
        let started = std::time::Instant::now();
        let answered: Vec<Answered> = futures::stream::iter(0..items.len())
            .map(|i| {
                let (item, stages, large) = (&items[i], &stages, &self.large);
                async move {
                    let request = self.request(&item.messages);
                    let reference = large.complete(request.clone());
                    let candidates = futures::future::try_join_all(
                        stages.iter().map(|stage| stage.complete(request.clone())),
                    );
                    let (reference, candidates) =
                        futures::future::try_join(reference, candidates).await?;
                    if (i + 1) % 10 == 0 {
                        eprintln!(
                            "quality: {} of {} requests answered, {:.0} s",
                            i + 1,
                            items.len(),
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
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        // Every pair to judge: (item, first answer, second answer, row). The controls are the last
        // two rows, on every [`CONTROL_EVERY`]-th request: a reference against itself, and
        // against the next request's.
        let (same, other) = (policies.len(), policies.len() + 1);
        let mut pairs: Vec<(usize, &str, &str, usize)> = Vec::new();
        for (i, answer) in answered.iter().enumerate() {
            for (p, candidate) in answer.candidates.iter().enumerate() {
                pairs.push((i, &answer.reference, candidate, p));
            }
            if i % CONTROL_EVERY == 0 && answered.len() > 1 {
                let next = &answered[(i + 1) % answered.len()].reference;
                pairs.push((i, &answer.reference, &answer.reference, same));
                pairs.push((i, &answer.reference, next, other));
            }
        }
        // By index: a closure over each pair's reference would not be `Send` for every lifetime.
        let verdicts: Vec<Option<f64>> = futures::stream::iter(0..pairs.len())
            .map(|k| {
                let (i, first, second, row) = pairs[k];
                let task = items[i].task();
                async move {
                    // An answer equal to its reference needs no judge; the control asks anyway.
                    if row < same && first.trim() == second.trim() {
                        return Ok(None);
                    }
                    // Both orders, so the judge's preference for a position cancels out.
                    let (a, b) = futures::future::try_join(
                        self.judge(&task, first, second),
                        self.judge(&task, second, first),
                    )
                    .await?;
                    Ok::<_, anyhow::Error>(Some((a + b) / 2.0))
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
        for (&(i, first, second, p), &yes) in pairs.iter().zip(&verdicts) {
            let row = &mut rows[p];
            row.requests += 1;
            row.identical += usize::from(first.trim() == second.trim());
            match yes {
                Some(yes) => {
                    row.judged += 1;
                    row.yes_sum += yes;
                    row.preserved += usize::from(yes >= 0.5);
                }
                None => row.preserved += 1,
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

    fn request(&self, messages: &[Message]) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "eval".into(),
            messages: messages.to_vec(),
            temperature: Some(0.0),
            max_tokens: Some(self.max_tokens),
            ..Default::default()
        }
    }

    /// The large model's P(yes) that `first` and `second` give the user the same information.
    /// The judge sees the task and the two answers, not the conversation: the question is whether
    /// the answers agree, and a shorter prompt keeps the pass affordable on a CPU.
    async fn judge(&self, task: &str, first: &str, second: &str) -> Result<f64> {
        let prompt = format!(
            "A user asked an assistant: \"{task}\"\n\nHere are two answers.\n\nAnswer 1:\n\
             {first}\n\nAnswer 2:\n{second}\n\n{JUDGE_QUESTION}"
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
        let mut messages: Vec<Message> = group
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
            .collect();
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

/// A placeholder of any kind, with or without its brackets.
fn placeholder_pattern() -> regex::Regex {
    let tags: Vec<&str> = Kind::ALL.iter().map(|k| k.tag()).collect();
    regex::Regex::new(&format!(r"\b(?:{})_\d+\b", tags.join("|"))).expect("a valid pattern")
}

fn write_answers(
    path: &std::path::Path,
    items: &[Item],
    answered: &[Answered],
    policies: &[&str],
    pairs: &[(usize, &str, &str, usize)],
    verdicts: &[Option<f64>],
) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    // Each (request, row) is judged at most once.
    let verdict: std::collections::HashMap<(usize, usize), Option<f64>> = pairs
        .iter()
        .zip(verdicts)
        .map(|(&(item, _, _, row), &yes)| ((item, row), yes))
        .collect();
    for (i, (item, answer)) in items.iter().zip(answered).enumerate() {
        let judged = |row: usize| verdict.get(&(i, row)).copied().flatten();
        let candidates: serde_json::Map<String, serde_json::Value> = policies
            .iter()
            .zip(&answer.candidates)
            .enumerate()
            .map(|(p, (policy, text))| {
                (
                    policy.to_string(),
                    serde_json::json!({ "answer": text, "p_yes": judged(p) }),
                )
            })
            .collect();
        let line = serde_json::json!({
            "messages": item.messages,
            "values": item.values,
            "reference": answer.reference,
            "policies": candidates,
            "same_answer_p_yes": judged(policies.len()),
            "other_answer_p_yes": judged(policies.len() + 1),
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn print_table(policies: &[&str], rows: &[Row], max_tokens: u32) {
    println!(
        "\nQuality through the stages: each request answered greedily (at most {max_tokens} \
         tokens) with the full prompt and through each policy. An answer identical to its \
         reference is preserved; the large model judges the others, seeing the task and the two \
         answers: do they give the user the same information (P(yes) from its token \
         probabilities, averaged over both orders; preserved at 0.5)? On every \
         {CONTROL_EVERY}th request the controls ask the judge about the reference against itself \
         and against another request's. Values kept: of the labelled values the reference \
         repeats, the share the answer repeats too. Answers with a placeholder: answers that show \
         a tag such as `[PERSON_2]` after restoration (tags the model made up: held ones are \
         restored).\n"
    );
    println!(
        "| policy | requests | identical | judged | preserved | 95% interval | mean P(yes) of the \
         judged | values kept | answers with a placeholder |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|");
    let labels = policies.iter().copied().chain([
        "control: the same answer",
        "control: another request's answer",
    ]);
    for (label, row) in labels.zip(rows) {
        let n = row.requests.max(1) as f64;
        let (low, high) = wilson(row.preserved, row.requests);
        println!(
            "| {label} | {} | {:.1}% | {} | {:.1}% | {:.1}-{:.1}% | {:.3} | {} | {} |",
            row.requests,
            100.0 * row.identical as f64 / n,
            row.judged,
            100.0 * row.preserved as f64 / n,
            100.0 * low,
            100.0 * high,
            row.yes_sum / row.judged.max(1) as f64,
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
            assert!(TASKS.contains(&item.task().as_str()));
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
