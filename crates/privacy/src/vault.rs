//! Reversible pseudonymisation: each distinct private value of a conversation becomes one
//! placeholder in every message, and the answer's placeholders become the values again, also when
//! a stream splits a placeholder across chunks ([`Restorer`]). A placeholder is a tag
//! (`[EMAIL_1]`, `[PERSON_2]`) or a realistic stand-in (`alvar.ashcombe@example.com`, `Brisa
//! Brennick`, see [`crate::surrogate`]), as the pipeline's [`Placeholders`] says.
//!
//! A [`Vault`] lives for one request, in memory only. Its `Debug` shows counts, never values, so
//! that no log line can carry the mapping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::detect::Finding;
use crate::kind::Kind;
use crate::normalize::canonical;
use crate::surrogate::surrogate;

/// A tag as a conversation may already hold it, with or without its brackets (`[EMAIL_1]`,
/// `EMAIL_1`): a model often drops the brackets, so a tag restores without them too.
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[?\b[A-Z]+(?:_[A-Z]+)*_[0-9]+\b\]?").expect("valid pattern"));

/// How many stand-ins of one kind are tried before a value gets a tag instead: the conversation
/// holds them all, or they have run out (a kind has a few thousand; a person's given name is
/// used once). Few, so that a conversation of many values costs a few tries each, not thousands.
const MAX_SURROGATE_TRIES: u32 = 64;

/// What stands in for a private value in what is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placeholders {
    /// `[EMAIL_1]`: unmistakable, and a system note tells the model what the tags are.
    #[default]
    Tags,
    /// A made-up value of the same kind and shape, which the model reads as ordinary text;
    /// deny-listed values, which can be anything, still get tags.
    Surrogates,
}

#[derive(Default)]
pub struct Vault {
    style: Placeholders,
    /// (kind, canonical value) to placeholder: the same value in another spelling is the same
    /// placeholder.
    placeholders: HashMap<(Kind, String), String>,
    /// What an answer may hold to the value it restores to: each placeholder, and the parts of a
    /// stand-in that restore alone (a person's given name). Sorted, so the keys that start with
    /// a text follow it.
    values: BTreeMap<String, String>,
    /// The lengths of the keys of `values`, longest first, so a whole stand-in wins over its
    /// parts: restoring tries each length at each place, not each key.
    lengths: Vec<usize>,
    next: HashMap<Kind, u32>,
    /// Tags the conversation already contains (bare: `EMAIL_1`), never handed out.
    taken: HashSet<String>,
    /// The words of the conversation, in small letters: a stand-in all of whose words it holds is
    /// not handed out, so restoring cannot turn the user's own words into another value. (Restoring
    /// replaces whole words only, so a stand-in the conversation holds has each of its words there.)
    conversation: HashSet<String>,
    replaced: BTreeMap<Kind, u32>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("style", &self.style)
            .field("values", &self.placeholders.len())
            .field("replaced", &self.replaced)
            .finish()
    }
}

impl Vault {
    /// A vault for a conversation whose texts are `texts`: placeholders they already contain are
    /// not handed out, so restoring cannot turn a user's literal `[EMAIL_1]` (or a name that
    /// happens to be a stand-in) into a value.
    pub fn for_texts<'a>(style: Placeholders, texts: impl IntoIterator<Item = &'a str>) -> Vault {
        let mut vault = Vault {
            style,
            ..Vault::default()
        };
        for text in texts {
            vault.taken.extend(
                TAG.find_iter(text)
                    .map(|m| m.as_str().trim_matches(['[', ']']).to_string()),
            );
            if style == Placeholders::Surrogates {
                vault.conversation.extend(words(text));
            }
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
        let placeholder = match self.style {
            Placeholders::Surrogates => self.stand_in(kind, value),
            Placeholders::Tags => None,
        }
        .unwrap_or_else(|| self.tag(kind, value));
        self.placeholders.insert(key, placeholder.clone());
        self.insert(placeholder.clone(), value.to_string());
        placeholder
    }

    /// The next tag of `kind` that the conversation does not hold, bracketed or bare; its bare
    /// form is registered to restore too.
    fn tag(&mut self, kind: Kind, value: &str) -> String {
        loop {
            let n = self.next.entry(kind).or_default();
            *n += 1;
            let bare = format!("{}_{}", kind.tag(), n);
            if !self.taken.contains(&bare) && !self.values.contains_key(&bare) {
                let tag = format!("[{bare}]");
                self.insert(bare, value.to_string());
                return tag;
            }
        }
    }

    /// The next stand-in of `kind` that neither the conversation nor another stand-in holds, with
    /// its parts registered; `None` when the kind has none.
    fn stand_in(&mut self, kind: Kind, value: &str) -> Option<String> {
        for _ in 0..MAX_SURROGATE_TRIES {
            let n = self.next.get(&kind).map_or(1, |n| n + 1);
            let candidate = surrogate(kind, value, n)?;
            self.next.insert(kind, n);
            let free = |text: &str| {
                !words(text).all(|w| self.conversation.contains(&w))
                    && !self.values.contains_key(text)
            };
            let differs = canonical(&candidate.text) != canonical(value);
            if differs
                && free(&candidate.text)
                && candidate.parts.iter().all(|(part, _)| free(part))
            {
                for (part, restores_to) in candidate.parts {
                    self.insert(part, restores_to);
                }
                return Some(candidate.text);
            }
        }
        None
    }

    /// Registers `key` as restoring to `value`. Every key is new: [`Vault::tag`] and
    /// [`Vault::stand_in`] hand out only what `values` does not hold yet.
    fn insert(&mut self, key: String, value: String) {
        debug_assert!(
            !self.values.contains_key(&key),
            "a placeholder handed out twice"
        );
        if let Err(at) = self.lengths.binary_search_by(|l| key.len().cmp(l)) {
            self.lengths.insert(at, key.len());
        }
        self.values.insert(key, value);
    }

    /// How many values of each kind were replaced (occurrences, not distinct values).
    pub fn replaced(&self) -> &BTreeMap<Kind, u32> {
        &self.replaced
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.placeholders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.placeholders.is_empty()
    }

    pub fn style(&self) -> Placeholders {
        self.style
    }

    /// The placeholders handed out, sorted.
    pub fn placeholders(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.placeholders.values().map(String::as_str).collect();
        all.sort_unstable();
        all
    }

    /// `text` with every known placeholder replaced by its value; unknown ones stay as written.
    pub fn restore(&self, text: &str) -> String {
        self.restore_upto(text, None, true, false).0
    }

    /// Restores `text`, which follows the character `before`, up to a tail that could still become
    /// a placeholder when more text follows (none when `last`): the restored text, and how many
    /// bytes of `text` it covers. With `json`, each value is written as it would be inside a JSON
    /// string (quotes, backslashes and line breaks escaped).
    ///
    /// A placeholder that starts or ends with a letter or digit counts only as a whole word
    /// (`Alvar` in "Alvar's", not in "Alvarez" or "_Alvar"); the longest one that fits wins.
    fn restore_upto(
        &self,
        text: &str,
        mut before: Option<char>,
        last: bool,
        json: bool,
    ) -> (String, usize) {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            let c = rest.chars().next().expect("at < text.len()");
            // Every key that fits here starts with `c`; one that starts with a letter or digit
            // counts only at the start of a word.
            let may_start = !(c.is_alphanumeric() && before.is_some_and(in_word));
            if may_start {
                match self.key_at(rest, last) {
                    Found::Hold => return (out, at),
                    Found::Key(key) => {
                        let value = &self.values[key];
                        if json {
                            let quoted = serde_json::to_string(value).expect("a string serialises");
                            out.push_str(&quoted[1..quoted.len() - 1]);
                        } else {
                            out.push_str(value);
                        }
                        at += key.len();
                        before = key.chars().next_back();
                        continue;
                    }
                    Found::None => {}
                }
            }
            out.push(c);
            at += c.len_utf8();
            before = Some(c);
        }
        (out, at)
    }

    /// The key that `rest` starts with, the longest first; `Hold` where the text ends in what may
    /// still grow into a key (or a longer word) unless `last`.
    fn key_at<'a>(&self, rest: &'a str, last: bool) -> Found<'a> {
        // The keys that start with `rest` follow it in sorted order.
        let longer = self
            .values
            .range::<str, _>((Bound::Excluded(rest), Bound::Unbounded))
            .next()
            .is_some_and(|(key, _)| key.starts_with(rest));
        if !last && longer {
            return Found::Hold;
        }
        for &length in &self.lengths {
            let Some(key) = rest.get(..length) else {
                continue;
            };
            if !self.values.contains_key(key) {
                continue;
            }
            let next = rest[length..].chars().next();
            let ends_word = key.ends_with(char::is_alphanumeric);
            if next.is_none() && ends_word && !last {
                // The next chunk may continue the word.
                return Found::Hold;
            }
            if !(ends_word && next.is_some_and(in_word)) {
                return Found::Key(key);
            }
        }
        Found::None
    }
}

/// What [`Vault::key_at`] finds at the start of a text.
enum Found<'a> {
    /// The longest key there that is a whole word, or not a word at all.
    Key(&'a str),
    /// Text that may still become a key (or a longer one) when more text follows.
    Hold,
    None,
}

/// The words of `text` in small letters: its runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Restores a streamed answer chunk by chunk. Text is passed on at once, except a tail that may be
/// the start of a placeholder (`[EMA`, `Alva`), held back until it is one, or cannot become one.
pub struct Restorer {
    vault: Arc<Vault>,
    /// The answer is JSON (a tool call's arguments): values are escaped as in a JSON string.
    json: bool,
    pending: String,
    /// The last character passed on, which decides whether a placeholder starts a word.
    before: Option<char>,
}

impl Restorer {
    pub fn new(vault: Arc<Vault>) -> Restorer {
        Restorer {
            vault,
            json: false,
            pending: String::new(),
            before: None,
        }
    }

    /// A restorer of JSON text, such as a tool call's arguments, where placeholders stand inside
    /// strings: a value with a quote or a line break (a PEM key) keeps the JSON valid.
    pub fn for_json(vault: Arc<Vault>) -> Restorer {
        Restorer {
            json: true,
            ..Restorer::new(vault)
        }
    }

    /// The restored text that can be passed on after `chunk`.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        self.release(false)
    }

    /// The text still held back, restored, at the end of the stream.
    pub fn finish(&mut self) -> String {
        self.release(true)
    }

    fn release(&mut self, last: bool) -> String {
        let (restored, upto) = self
            .vault
            .restore_upto(&self.pending, self.before, last, self.json);
        if let Some(c) = self.pending[..upto].chars().next_back() {
            self.before = Some(c);
        }
        self.pending.drain(..upto);
        restored
    }
}

/// Whether `c` continues a word for restoring: a letter, a digit or an underscore, so that neither
/// `Alvar` in "Alvarez" nor `EMAIL_1` in "MY_EMAIL_1" is a placeholder.
fn in_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Detector, DetectorConfig};

    fn pseudonymised(texts: &[&str]) -> (Vec<String>, Vault) {
        pseudonymised_with(Placeholders::Tags, texts)
    }

    fn pseudonymised_with(style: Placeholders, texts: &[&str]) -> (Vec<String>, Vault) {
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        let mut vault = Vault::for_texts(style, texts.iter().copied());
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
    fn a_tag_restores_without_its_brackets_but_only_as_a_whole_word() {
        let (out, vault) = pseudonymised(&["mail jane@corp.io"]);
        assert_eq!(out[0], "mail [EMAIL_1]");
        assert_eq!(
            vault.restore("Write to EMAIL_1, or [EMAIL_1]."),
            "Write to jane@corp.io, or jane@corp.io."
        );
        assert_eq!(
            vault.restore("MY_EMAIL_1 EMAIL_12 EMAIL_1x"),
            "MY_EMAIL_1 EMAIL_12 EMAIL_1x"
        );
        // A bare tag the user wrote is not handed out either.
        let (out, vault) = pseudonymised(&["EMAIL_1 = jane@corp.io"]);
        assert_eq!(out[0], "EMAIL_1 = [EMAIL_2]");
        assert_eq!(
            vault.restore("EMAIL_1 is EMAIL_2"),
            "EMAIL_1 is jane@corp.io"
        );
        let mut restorer = Restorer::new(Arc::new(vault));
        assert_eq!(restorer.push("Send it to EMAI"), "Send it to ");
        assert_eq!(restorer.push("L_2 now"), "jane@corp.io now");
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
        assert_eq!(restorer.push("] now [x] [E"), "jane@corp.io now [x] ");
        assert_eq!(restorer.push("b"), "[Eb");
        assert_eq!(restorer.push(" [EMAIL_"), " ");
        assert_eq!(restorer.finish(), "[EMAIL_");
    }

    #[test]
    fn stand_ins_replace_values_and_restore_whole_or_in_parts() {
        let (out, vault) = pseudonymised_with(
            Placeholders::Surrogates,
            &["Dr. Ada Lovelace (ada@corp.io, 4111 1111 1111 1111) met Grace Hopper."],
        );
        assert_eq!(vault.len(), 4);
        for value in ["Ada", "Lovelace", "ada@corp.io", "4111", "Grace", "Hopper"] {
            assert!(!out[0].contains(value), "{value} in {}", out[0]);
        }
        assert!(!out[0].contains('['), "tags in {}", out[0]);
        assert_eq!(
            vault.restore(&out[0]),
            "Dr. Ada Lovelace (ada@corp.io, 4111 1111 1111 1111) met Grace Hopper."
        );
        // The first person is "Alvar Ashcombe": its parts restore alone, but not inside a word.
        assert!(out[0].starts_with("Dr. Alvar Ashcombe ("), "{}", out[0]);
        assert_eq!(
            vault.restore("Dear Alvar, Ms. Ashcombe's note; Alvarez and XAlvar stay."),
            "Dear Ada, Ms. Lovelace's note; Alvarez and XAlvar stay."
        );
    }

    #[test]
    fn a_stand_in_address_restores_when_the_answer_joins_its_lines_otherwise() {
        let value = "Kauê Souza\n\n8578 Midvangur\n Apt. 844\n Egilsstadir\n\n Iceland 701";
        let (out, vault) = pseudonymised_with(Placeholders::Surrogates, &[value]);
        let sent = &out[0];
        let (street, town) = sent
            .rsplit_once("\n\n")
            .and_then(|(_, address)| address.split_once('\n'))
            .unwrap_or_else(|| panic!("an address on two lines in {sent:?}"));
        let address = &value[value.find("8578").unwrap()..];
        assert!(!sent.contains("Midvangur"), "{sent}");
        let (town_name, postcode) = town.rsplit_once(' ').expect("a town and a postcode");
        for answer in [
            format!("{street}, {town}"),
            format!("It is {street} {town}."),
            format!("{street}, {town_name}, {postcode}"),
        ] {
            let restored = vault.restore(&answer);
            assert!(restored.contains(address), "{answer:?} -> {restored:?}");
        }
        // The street alone comes back as the value's first line, not as a made-up street.
        assert_eq!(vault.restore(&format!("{street}.")), "8578 Midvangur.");
    }

    #[test]
    fn values_restored_into_json_keep_it_valid() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
        let (out, vault) = pseudonymised(&[key]);
        assert_eq!(out[0], "[SECRET_1]");
        let mut restorer = Restorer::for_json(Arc::new(vault));
        let mut arguments = restorer.push(r#"{"key": "[SECRET"#);
        arguments.push_str(&restorer.push(r#"_1]"}"#));
        arguments.push_str(&restorer.finish());
        let parsed: serde_json::Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(parsed["key"], key);
    }

    #[test]
    fn stand_ins_the_conversation_holds_are_not_handed_out() {
        // "Alvar Ashcombe" is the first stand-in for a person; the user wrote it themselves.
        let (out, vault) = pseudonymised_with(
            Placeholders::Surrogates,
            &["Alvar wrote to Dr. Ada Lovelace."],
        );
        assert!(!out[0].contains("Ada"), "{}", out[0]);
        assert_eq!(vault.restore(&out[0]), "Alvar wrote to Dr. Ada Lovelace.");
    }

    #[test]
    fn a_stream_holds_back_a_possible_stand_in_until_the_word_ends() {
        let (out, vault) =
            pseudonymised_with(Placeholders::Surrogates, &["Dr. Ada Lovelace called."]);
        assert!(out[0].contains("Alvar Ashcombe"), "{}", out[0]);
        let mut restorer = Restorer::new(Arc::new(vault));
        assert_eq!(restorer.push("Hi Al"), "Hi ");
        assert_eq!(restorer.push("var"), "");
        assert_eq!(restorer.push(" Ash"), "");
        // "Alvarez" can no longer become "Alvar": it goes at once.
        assert_eq!(
            restorer.push("combe and Alvarez"),
            "Ada Lovelace and Alvarez"
        );
        assert_eq!(restorer.push("."), ".");
        assert_eq!(restorer.push(" Alvar"), " ");
        assert_eq!(restorer.finish(), "Ada");
    }

    /// A text made of plain pieces and placeholders (tags and stand-ins, whole and in parts),
    /// known and unknown.
    fn answer() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-z \\[\\]_A-Z0-9é]{0,12}",
            Just("[EMAIL_1]".to_string()),
            Just("[CARD_1]".to_string()),
            Just("[PERSON_1]".to_string()),
            Just("[EMAIL_7]".to_string()),
            Just("[[EMAIL_1]]".to_string()),
            Just("Alvar Ashcombe".to_string()),
            Just("Alvar".to_string()),
            Just("Ashcombe".to_string()),
            Just("Alvarez".to_string()),
            Just("Brisa Brennick".to_string()),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn streaming_restore_equals_whole_restore_under_any_split(
            text in answer(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            style in prop_oneof![Just(Placeholders::Tags), Just(Placeholders::Surrogates)],
        ) {
            let (_, vault) =
                pseudonymised_with(style, &["jane@corp.io 4111 1111 1111 1111, Dr. Ada Lovelace"]);
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
            style in prop_oneof![Just(Placeholders::Tags), Just(Placeholders::Surrogates)],
        ) {
            let text = format!("{filler} Dr. {name} wrote to {user}@example.org {filler}");
            let (out, vault) = pseudonymised_with(style, &[&text]);
            let address = format!("{user}@example.org");
            prop_assert!(!out[0].contains(&address), "{} leaked", address);
            prop_assert_eq!(vault.restore(&out[0]), text);
        }
    }
}
