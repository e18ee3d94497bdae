//! Detection: every span of a text that holds private data, with its kind and a confidence.
//!
//! Recognisers are rules: regular expressions checked by checksums (Luhn for cards, mod-97 for
//! IBANs), known key prefixes, entropy, context words and small name lists. Each proposes
//! candidates; [`Detector::detect`] drops those below the configured confidence or on the
//! allow-list, adds deny-listed values, and resolves overlaps (a credential URL wins over the
//! e-mail-like text inside it). Values match whatever their casing, spacing or separators, so
//! `4111 1111 1111 1111` and `4111-1111-1111-1111` are the same card.

pub mod context;
pub(crate) mod language;
mod secrets;
pub(crate) mod structured;

pub use structured::luhn;

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::normalize::{canonical, loose_pattern, Squeezed};
use crate::PrivacyError;

/// One span of private data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// Byte range in the text it was found in; always on character boundaries.
    pub span: Range<usize>,
    /// 0 to 1: how sure the recogniser is.
    pub confidence: f32,
}

impl Finding {
    pub(crate) fn new(kind: Kind, span: Range<usize>, confidence: f32) -> Finding {
        Finding {
            kind,
            span,
            confidence,
        }
    }
}

/// What to detect; the `detect` table of a privacy pipeline in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// The kinds to look for; all of them by default.
    pub kinds: Vec<Kind>,
    /// Findings below this confidence are not acted on.
    pub min_confidence: f32,
    /// Values that may leave the machine (a company's public support address), matched whatever
    /// their casing, spacing or separators.
    pub allow: Vec<String>,
    /// Values that never leave it (a project's code name), matched the same way.
    pub deny: Vec<String>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            kinds: Kind::ALL.to_vec(),
            min_confidence: 0.5,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

pub struct Detector {
    kinds: HashSet<Kind>,
    min_confidence: f32,
    allow: HashSet<String>,
    deny: Vec<Regex>,
}

impl Detector {
    pub fn new(config: &DetectorConfig) -> Result<Detector, PrivacyError> {
        if !(0.0..=1.0).contains(&config.min_confidence) {
            return Err(PrivacyError::Config(format!(
                "`min_confidence` must be between 0 and 1, not {}",
                config.min_confidence
            )));
        }
        let mut deny = Vec::with_capacity(config.deny.len());
        for value in &config.deny {
            let pattern = loose_pattern(value).ok_or_else(|| {
                PrivacyError::Config(format!(
                    "deny-list entry {value:?} has no letter or digit to match"
                ))
            })?;
            deny.push(
                Regex::new(&pattern)
                    .map_err(|e| PrivacyError::Config(format!("deny-list entry {value:?}: {e}")))?,
            );
        }
        Ok(Detector {
            kinds: config.kinds.iter().copied().collect(),
            min_confidence: config.min_confidence,
            allow: config.allow.iter().map(|v| canonical(v)).collect(),
            deny,
        })
    }

    /// The findings in `text`, non-overlapping, in order of position.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        let mut candidates = Vec::new();
        structured::find(text, &mut candidates);
        secrets::find(text, &mut candidates);
        language::find(text, &mut candidates);
        candidates.retain(|f| self.admits(text, f));
        if self.kinds.contains(&Kind::Denied) {
            for pattern in &self.deny {
                for m in pattern.find_iter(text) {
                    candidates.push(Finding::new(Kind::Denied, m.range(), 1.0));
                }
            }
        }
        resolve_overlaps(candidates)
    }

    /// Whether a candidate of the rules in `text` is acted on: sure enough, and [`Self::wants`].
    fn admits(&self, text: &str, finding: &Finding) -> bool {
        finding.confidence >= self.min_confidence && self.wants(text, finding)
    }

    /// Whether a finding in `text` is of a configured kind and not on the allow-list. The name
    /// judge's findings pass this alone: its own threshold stands in for `min_confidence`.
    pub(crate) fn wants(&self, text: &str, finding: &Finding) -> bool {
        self.kinds.contains(&finding.kind)
            && !self.allow.contains(&canonical(&text[finding.span.clone()]))
    }

    /// The findings of each text of one conversation, from `found` (each text's own, as
    /// [`Self::detect`] and the name judge give them): a value found in one text is found in
    /// every text, whatever its casing, spacing or separators ("Priya Raman" recognised once
    /// makes "PRIYA RAMAN" and "priya raman" elsewhere the same value), each word of a person's
    /// name is found where it stands alone, capitalised ("Megan Swift" makes "Swift" and "Megan"
    /// elsewhere the same person's), and overlaps are resolved.
    pub fn spread(&self, texts: &[&str], mut found: Vec<Vec<Finding>>) -> Vec<Vec<Finding>> {
        // Each value with its kind and the highest confidence it was found with.
        let mut known: BTreeMap<String, (Kind, f32)> = BTreeMap::new();
        for (text, findings) in texts.iter().zip(&found) {
            for finding in findings {
                let value = canonical(&text[finding.span.clone()]);
                // Very short values would match inside ordinary words; very long ones (key
                // blocks) are found by their structure anyway.
                if (4..=256).contains(&value.chars().count()) {
                    let entry = known.entry(value).or_insert((finding.kind, 0.0));
                    entry.1 = entry.1.max(finding.confidence);
                }
            }
        }
        let known: Vec<(String, Kind, f32)> = known
            .into_iter()
            .map(|(value, (kind, confidence))| (value, kind, confidence))
            .collect();
        let parts = name_parts(texts, &found);
        if known.is_empty() && parts.is_empty() {
            return found.into_iter().map(resolve_overlaps).collect();
        }
        // One automaton each for all values and all name words, so that each text is read once
        // whatever the number of values (a regular expression each made a conversation of many
        // values quadratic). The automata hold at most the conversation's bytes, far below their
        // limit of about 2^31 states.
        let values = AhoCorasick::new(known.iter().map(|(value, ..)| value))
            .expect("a conversation's values fit an automaton");
        let words = AhoCorasick::new(parts.iter().map(|(word, _)| word))
            .expect("a conversation's names fit an automaton");
        for (text, findings) in texts.iter().zip(found.iter_mut()) {
            let mut candidates = std::mem::take(findings);
            let squeezed = Squeezed::new(text);
            for m in values.find_overlapping_iter(&squeezed.squeezed) {
                let span = squeezed.span(m.range());
                if context::standalone(text, span.start, span.end) {
                    let (_, kind, confidence) = &known[m.pattern()];
                    candidates.push(Finding::new(*kind, span, *confidence));
                }
            }
            for m in words.find_overlapping_iter(text) {
                let word_char = |c: char| c.is_alphanumeric() || c == '_';
                let glued = text[..m.start()].chars().next_back().is_some_and(word_char)
                    || text[m.end()..].chars().next().is_some_and(word_char);
                if !glued {
                    candidates.push(Finding::new(Kind::Person, m.range(), parts[m.pattern()].1));
                }
            }
            *findings = resolve_overlaps(candidates);
        }
        found
    }
}

/// The words of the people's names in `found` that may stand for the person alone later ("early
/// Swift" after "Megan Swift"), with the confidence of the surest name they come from: each
/// capitalised word of three letters or more of a name of two words or more, to be matched as a
/// whole word in the same casing, so that the ordinary word ("a swift reply") is left alone.
fn name_parts(texts: &[&str], found: &[Vec<Finding>]) -> Vec<(String, f32)> {
    let mut parts: BTreeMap<String, f32> = BTreeMap::new();
    for (text, findings) in texts.iter().zip(found) {
        for finding in findings.iter().filter(|f| f.kind == Kind::Person) {
            let words: Vec<&str> = text[finding.span.clone()].split_whitespace().collect();
            if words.len() < 2 {
                continue;
            }
            for word in words {
                let word = word.trim_end_matches(['.', ',']);
                let word = language::without_possessive(word).unwrap_or(word);
                if word.chars().count() >= 3 && word.starts_with(char::is_uppercase) {
                    let confidence = parts.entry(word.to_string()).or_default();
                    *confidence = confidence.max(finding.confidence);
                }
            }
        }
    }
    parts.into_iter().collect()
}

/// Keeps the strongest of overlapping candidates: higher kind rank, then surer, then longer.
/// Overlapping candidates of one kind are first joined ("1 Road, London SW1" and "SW1 8AB" are
/// one address), and a phone number inside a surer street address is its postcode or house
/// number ("Portugal 9680-151"): the address is kept whole.
fn resolve_overlaps(candidates: Vec<Finding>) -> Vec<Finding> {
    let mut candidates = join_overlapping_of_one_kind(candidates);
    // Joined, the addresses are disjoint and in order of position: the one that may hold a
    // phone number is the last to start before it (a search, so that a text of many numbers and
    // addresses stays quick).
    let addresses: Vec<(Range<usize>, f32)> = candidates
        .iter()
        .filter(|f| f.kind == Kind::StreetAddress)
        .map(|f| (f.span.clone(), f.confidence))
        .collect();
    candidates.retain(|f| {
        let before = addresses.partition_point(|(span, _)| span.start <= f.span.start);
        f.kind != Kind::Phone
            || !before.checked_sub(1).is_some_and(|i| {
                let (span, confidence) = &addresses[i];
                f.span.end <= span.end && *confidence > f.confidence
            })
    });
    candidates.sort_by(|a, b| {
        b.kind
            .rank()
            .cmp(&a.kind.rank())
            .then(b.confidence.total_cmp(&a.confidence))
            .then(b.span.len().cmp(&a.span.len()))
    });
    let mut kept: Vec<Finding> = Vec::new();
    for candidate in candidates {
        if candidate.span.is_empty() {
            continue;
        }
        let overlaps = kept
            .iter()
            .any(|k| k.span.start < candidate.span.end && candidate.span.start < k.span.end);
        if !overlaps {
            kept.push(candidate);
        }
    }
    kept.sort_by_key(|f| f.span.start);
    kept
}

/// Unions of the overlapping candidates of each kind, each as sure as the surest of its parts.
fn join_overlapping_of_one_kind(mut candidates: Vec<Finding>) -> Vec<Finding> {
    candidates.sort_by(|a, b| {
        (a.kind.rank(), a.span.start)
            .cmp(&(b.kind.rank(), b.span.start))
            .then(b.span.end.cmp(&a.span.end))
    });
    let mut joined: Vec<Finding> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match joined.last_mut() {
            Some(last) if last.kind == candidate.kind && candidate.span.start < last.span.end => {
                last.span.end = last.span.end.max(candidate.span.end);
                last.confidence = last.confidence.max(candidate.confidence);
            }
            _ => joined.push(candidate),
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, String)> {
        Detector::new(&DetectorConfig::default())
            .unwrap()
            .detect(text)
            .into_iter()
            .map(|f| (f.kind, text[f.span].to_string()))
            .collect()
    }

    #[test]
    fn credential_url_wins_over_the_email_inside_it() {
        assert_eq!(
            kinds("db: postgres://admin:s3cr3tPw@db.internal:5432/app now"),
            vec![(
                Kind::CredentialUrl,
                "postgres://admin:s3cr3tPw@db.internal:5432/app".to_string()
            )]
        );
    }

    #[test]
    fn an_iban_wins_over_the_luhn_valid_digits_inside_it() {
        // "1778 0815 7809 27" passes Luhn; the IBAN around it passes mod 97.
        assert_eq!(
            kinds(r#"{"iban": "GB32 YYND 1778 0815 7809 27", "amount": 120.5}"#),
            vec![(Kind::Iban, "GB32 YYND 1778 0815 7809 27".to_string())]
        );
    }

    #[test]
    fn overlapping_findings_of_one_kind_are_joined_and_a_postcode_is_no_phone() {
        let address =
            |span: Range<usize>, confidence| Finding::new(Kind::StreetAddress, span, confidence);
        let kept = resolve_overlaps(vec![
            address(0..20, 0.9),
            address(15..30, 0.7),
            Finding::new(Kind::Phone, 22..30, 0.5),
            Finding::new(Kind::Person, 40..45, 0.6),
            Finding::new(Kind::Phone, 50..60, 0.9),
            address(55..70, 0.8),
        ]);
        assert_eq!(
            kept,
            vec![
                address(0..30, 0.9),
                Finding::new(Kind::Person, 40..45, 0.6),
                Finding::new(Kind::Phone, 50..60, 0.9),
            ]
        );
    }

    #[test]
    fn allow_list_matches_whatever_the_separators_and_deny_list_too() {
        let config = DetectorConfig {
            allow: vec!["support@example.com".into()],
            deny: vec!["Project Bluebird".into()],
            ..Default::default()
        };
        let detector = Detector::new(&config).unwrap();
        let text = "Write to SUPPORT@example.com about project-blue bird, or to jo@x.org.";
        let found: Vec<(Kind, &str)> = detector
            .detect(text)
            .into_iter()
            .map(|f| (f.kind, &text[f.span]))
            .collect();
        assert_eq!(
            found,
            vec![
                (Kind::Denied, "project-blue bird"),
                (Kind::Email, "jo@x.org")
            ]
        );
    }

    #[test]
    fn a_value_found_once_is_found_in_every_spelling() {
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        let texts = [
            "Yesterday Priya Raman called.",
            "PRIYA RAMAN again",
            "priya-raman, priyaramanathan",
        ];
        let found = detector.spread(&texts, texts.iter().map(|t| detector.detect(t)).collect());
        let values: Vec<Vec<&str>> = found
            .iter()
            .zip(texts)
            .map(|(f, t)| f.iter().map(|f| &t[f.span.clone()]).collect())
            .collect();
        assert_eq!(
            values,
            [
                vec!["Priya Raman"],
                vec!["PRIYA RAMAN"],
                vec!["priya-raman"]
            ]
        );
        assert!(found[1].iter().all(|f| f.kind == Kind::Person));
        assert_eq!(found[1][0].confidence, found[0][0].confidence);
    }

    #[test]
    fn a_word_of_a_persons_name_is_the_person_where_it_stands_alone_capitalised() {
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        let texts = [
            "The verses from Megan Swift's Cautionary Tales.",
            "Is there anything better than early Swift? Ask Megan.",
            "A swift reply, and Swiftly done.",
        ];
        let found = detector.spread(&texts, texts.iter().map(|t| detector.detect(t)).collect());
        let values: Vec<Vec<(Kind, &str)>> = found
            .iter()
            .zip(texts)
            .map(|(f, t)| f.iter().map(|f| (f.kind, &t[f.span.clone()])).collect())
            .collect();
        assert_eq!(
            values,
            [
                vec![(Kind::Person, "Megan Swift")],
                vec![(Kind::Person, "Swift"), (Kind::Person, "Megan")],
                vec![],
            ]
        );
    }

    #[test]
    fn disabled_kinds_and_low_confidence_are_dropped() {
        let config = DetectorConfig {
            kinds: vec![Kind::Email],
            ..Default::default()
        };
        let detector = Detector::new(&config).unwrap();
        let text = "mail a@b.io, card 4111 1111 1111 1111";
        assert_eq!(detector.detect(text).len(), 1);
        let strict = Detector::new(&DetectorConfig {
            min_confidence: 1.0,
            ..Default::default()
        })
        .unwrap();
        assert!(strict.detect(text).is_empty());
    }

    #[test]
    fn bad_configuration_is_refused() {
        for config in [
            DetectorConfig {
                min_confidence: 1.5,
                ..Default::default()
            },
            DetectorConfig {
                deny: vec!["--".into()],
                ..Default::default()
            },
        ] {
            assert!(Detector::new(&config).is_err());
        }
    }
}
