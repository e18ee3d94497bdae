//! Reversible pseudonymisation: each distinct private value of a conversation becomes one
//! placeholder (`[EMAIL_1]`, `[PERSON_2]`) in every message, and the answer's placeholders become
//! the values again, also when a stream splits a placeholder across chunks ([`Restorer`]).
//!
//! A [`Vault`] lives for one request, in memory only. Its `Debug` shows counts, never values, so
//! that no log line can carry the mapping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use regex::Regex;

use crate::detect::Finding;
use crate::kind::Kind;
use crate::normalize::canonical;

/// The longest placeholder, in bytes: a streamed `[` followed by this much placeholder-like text
/// without a `]` is passed on as plain text.
pub const MAX_PLACEHOLDER_BYTES: usize = 32;

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[[A-Z]+(?:_[A-Z]+)*_[0-9]+\]").expect("valid pattern"));

#[derive(Default)]
pub struct Vault {
    /// (kind, canonical value) to placeholder: the same value in another spelling is the same
    /// placeholder.
    placeholders: HashMap<(Kind, String), String>,
    /// Placeholder to the value as first written.
    values: HashMap<String, String>,
    next: HashMap<Kind, u32>,
    /// Placeholder-shaped text the conversation already contains, never handed out.
    taken: HashSet<String>,
    replaced: BTreeMap<Kind, u32>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("values", &self.values.len())
            .field("replaced", &self.replaced)
            .finish()
    }
}

impl Vault {
    /// A vault for a conversation whose texts are `texts`: placeholders they already contain are
    /// not handed out, so restoring cannot turn a user's literal `[EMAIL_1]` into a value.
    pub fn for_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vault {
        let mut vault = Vault::default();
        for text in texts {
            vault
                .taken
                .extend(PLACEHOLDER.find_iter(text).map(|m| m.as_str().to_string()));
        }
        vault
    }

    /// `text` with every finding replaced by its value's placeholder. `findings` are
    /// non-overlapping and in order, as [`crate::Detector::detect`] returns them.
    pub fn pseudonymise(&mut self, text: &str, findings: &[Finding]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for finding in findings {
            let value = &text[finding.span.clone()];
            out.push_str(&text[at..finding.span.start]);
            out.push_str(&self.placeholder(finding.kind, value));
            *self.replaced.entry(finding.kind).or_default() += 1;
            at = finding.span.end;
        }
        out.push_str(&text[at..]);
        out
    }

    fn placeholder(&mut self, kind: Kind, value: &str) -> String {
        let key = (kind, canonical(value));
        if let Some(placeholder) = self.placeholders.get(&key) {
            return placeholder.clone();
        }
        let placeholder = loop {
            let n = self.next.entry(kind).or_default();
            *n += 1;
            let candidate = format!("[{}_{}]", kind.tag(), n);
            if !self.taken.contains(&candidate) {
                break candidate;
            }
        };
        self.placeholders.insert(key, placeholder.clone());
        self.values.insert(placeholder.clone(), value.to_string());
        placeholder
    }

    /// How many values of each kind were replaced (occurrences, not distinct values).
    pub fn replaced(&self) -> &BTreeMap<Kind, u32> {
        &self.replaced
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The placeholders handed out, sorted.
    pub fn placeholders(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.values.keys().map(String::as_str).collect();
        all.sort_unstable();
        all
    }

    /// `text` with every known placeholder replaced by its value; unknown ones stay as written.
    pub fn restore(&self, text: &str) -> String {
        PLACEHOLDER
            .replace_all(text, |c: &regex::Captures<'_>| {
                let placeholder = &c[0];
                self.values
                    .get(placeholder)
                    .cloned()
                    .unwrap_or_else(|| placeholder.to_string())
            })
            .into_owned()
    }
}

/// Restores a streamed answer chunk by chunk. Text is passed on at once, except a tail that may be
/// the start of a placeholder (`[EMA`), held back until it is one, or cannot become one.
pub struct Restorer {
    vault: Arc<Vault>,
    pending: String,
}

impl Restorer {
    pub fn new(vault: Arc<Vault>) -> Restorer {
        Restorer {
            vault,
            pending: String::new(),
        }
    }

    /// The restored text that can be passed on after `chunk`.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let mut out = String::new();
        loop {
            let Some(open) = self.pending.find('[') else {
                out.push_str(&self.pending);
                self.pending.clear();
                return out;
            };
            out.push_str(&self.pending[..open]);
            self.pending.drain(..open);
            match scan(&self.pending) {
                Scan::Placeholder(len) => {
                    let placeholder = &self.pending[..len];
                    match self.vault.values.get(placeholder) {
                        Some(value) => out.push_str(value),
                        None => out.push_str(placeholder),
                    }
                    self.pending.drain(..len);
                }
                Scan::Prefix => return out,
                Scan::Text => {
                    out.push('[');
                    self.pending.drain(..1);
                }
            }
        }
    }

    /// The text still held back, at the end of the stream.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

enum Scan {
    /// A whole placeholder of this many bytes.
    Placeholder(usize),
    /// Could still become a placeholder.
    Prefix,
    /// Cannot.
    Text,
}

/// What `text`, which starts with `[`, holds at its start.
fn scan(text: &str) -> Scan {
    for (i, c) in text.char_indices().skip(1) {
        if i >= MAX_PLACEHOLDER_BYTES {
            return Scan::Text;
        }
        match c {
            'A'..='Z' | '0'..='9' | '_' => {}
            ']' => {
                return match PLACEHOLDER.find(&text[..=i]) {
                    Some(m) if m.start() == 0 => Scan::Placeholder(i + 1),
                    _ => Scan::Text,
                }
            }
            _ => return Scan::Text,
        }
    }
    if text.len() < MAX_PLACEHOLDER_BYTES {
        Scan::Prefix
    } else {
        Scan::Text
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Detector, DetectorConfig};

    fn pseudonymised(texts: &[&str]) -> (Vec<String>, Vault) {
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        let mut vault = Vault::for_texts(texts.iter().copied());
        let out = texts
            .iter()
            .map(|t| vault.pseudonymise(t, &detector.detect(t)))
            .collect();
        (out, vault)
    }

    #[test]
    fn one_value_one_placeholder_across_messages_and_spellings() {
        let (out, vault) = pseudonymised(&[
            "Card 4111 1111 1111 1111, mail jane@corp.io",
            "Again: 4111-1111-1111-1111 and JANE@corp.io; also bob@corp.io",
        ]);
        assert_eq!(out[0], "Card [CARD_1], mail [EMAIL_1]");
        assert_eq!(out[1], "Again: [CARD_1] and [EMAIL_1]; also [EMAIL_2]");
        assert_eq!(vault.len(), 3);
        assert_eq!(vault.replaced()[&Kind::Email], 3);
        assert_eq!(
            vault.restore("Sent to [EMAIL_2] and [EMAIL_1], not [EMAIL_9]"),
            "Sent to bob@corp.io and jane@corp.io, not [EMAIL_9]"
        );
    }

    #[test]
    fn placeholders_the_user_wrote_are_not_handed_out() {
        let (out, vault) = pseudonymised(&["I typed [EMAIL_1] literally; mine is a@b.io"]);
        assert_eq!(out[0], "I typed [EMAIL_1] literally; mine is [EMAIL_2]");
        assert_eq!(vault.restore("[EMAIL_1] [EMAIL_2]"), "[EMAIL_1] a@b.io");
    }

    #[test]
    fn debug_shows_no_values() {
        let (_, vault) = pseudonymised(&["mail jane@corp.io"]);
        let shown = format!("{vault:?}");
        assert!(!shown.contains("jane"), "{shown}");
        assert!(shown.contains("Email"), "{shown}");
    }

    #[test]
    fn holds_back_only_a_possible_placeholder() {
        let (_, vault) = pseudonymised(&["mail jane@corp.io"]);
        let mut restorer = Restorer::new(Arc::new(vault));
        assert_eq!(restorer.push("Write to [EM"), "Write to ");
        assert_eq!(restorer.push("AIL_1"), "");
        assert_eq!(restorer.push("] now [x] [A"), "jane@corp.io now [x] ");
        assert_eq!(restorer.push("b"), "[Ab");
        assert_eq!(restorer.push(" [EMAIL_"), " ");
        assert_eq!(restorer.finish(), "[EMAIL_");
    }

    /// A text made of plain pieces and placeholders, known and unknown.
    fn answer() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-z \\[\\]_A-Z0-9é]{0,12}",
            Just("[EMAIL_1]".to_string()),
            Just("[CARD_1]".to_string()),
            Just("[PERSON_1]".to_string()),
            Just("[EMAIL_7]".to_string()),
            Just("[[EMAIL_1]]".to_string()),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn streaming_restore_equals_whole_restore_under_any_split(
            text in answer(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let (_, vault) = pseudonymised(&["jane@corp.io 4111 1111 1111 1111, Dr. Ada Lovelace"]);
            let whole = vault.restore(&text);
            let boundaries: Vec<usize> =
                text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| boundaries[c.index(boundaries.len())]).collect();
            cuts.sort_unstable();
            let mut restorer = Restorer::new(Arc::new(vault));
            let mut streamed = String::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                streamed.push_str(&restorer.push(&text[at..cut]));
                at = cut;
            }
            streamed.push_str(&restorer.finish());
            prop_assert_eq!(streamed, whole);
        }

        #[test]
        fn pseudonymise_then_restore_round_trips(
            name in "(Ada|Grace|Alan) (Lovelace|Hopper|Turing)",
            user in "[a-z]{1,8}",
            filler in "[a-z ,.]{0,20}",
        ) {
            let text = format!("{filler} Dr. {name} wrote to {user}@example.org {filler}");
            let (out, vault) = pseudonymised(&[&text]);
            let address = format!("{user}@example.org");
            prop_assert!(!out[0].contains(&address), "{} leaked", address);
            prop_assert_eq!(vault.restore(&out[0]), text);
        }
    }
}
