//! Precision and recall per kind. A finding is correct when it overlaps a labelled span of its
//! kind; a labelled span is found when a finding of its kind overlaps it. "Protected" is stricter
//! and kind-blind, as privacy is: the share of labelled spans whose every byte lies inside some
//! finding, whatever its kind.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::kind::Kind;

use super::labelled::Sample;

/// The labelled or found spans of one text, with their kinds.
pub type Spans = Vec<(Kind, Range<usize>)>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindScore {
    /// Labelled spans of the kind.
    pub labelled: usize,
    /// Of those, found by a finding of the kind.
    pub found: usize,
    /// Of those, wholly covered by findings of any kind.
    pub protected: usize,
    /// Findings of the kind.
    pub predicted: usize,
    /// Of those, overlapping a labelled span of the kind.
    pub correct: usize,
}

impl KindScore {
    pub fn precision(&self) -> Option<f64> {
        (self.predicted > 0).then(|| self.correct as f64 / self.predicted as f64)
    }

    pub fn recall(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.found as f64 / self.labelled as f64)
    }

    pub fn protected_share(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.protected as f64 / self.labelled as f64)
    }
}

/// Scores `predictions[i]`, the findings in `samples[i].text`, per kind.
pub fn score(
    samples: &[Sample],
    predictions: &[Vec<(Kind, Range<usize>)>],
) -> BTreeMap<Kind, KindScore> {
    let overlaps = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
    let mut scores: BTreeMap<Kind, KindScore> = BTreeMap::new();
    for (sample, predicted) in samples.iter().zip(predictions) {
        for (kind, span) in &sample.spans {
            let score = scores.entry(*kind).or_default();
            score.labelled += 1;
            if predicted
                .iter()
                .any(|(k, p)| k == kind && overlaps(p, span))
            {
                score.found += 1;
            }
            let covered =
                (span.start..span.end).all(|byte| predicted.iter().any(|(_, p)| p.contains(&byte)));
            if covered {
                score.protected += 1;
            }
        }
        for (kind, span) in predicted {
            let score = scores.entry(*kind).or_default();
            score.predicted += 1;
            if sample
                .spans
                .iter()
                .any(|(k, s)| k == kind && overlaps(s, span))
            {
                score.correct += 1;
            }
        }
    }
    scores
}

/// A kind, the value, and the sentence it is in.
pub type Mistake<'a> = (Kind, &'a str, &'a str);

/// Labelled spans missed (no finding of their kind overlaps) and findings that overlap no labelled
/// span of their kind, as `(kind, text, sentence)`, for reading what a detector gets wrong.
pub fn errors<'a>(
    samples: &'a [Sample],
    predictions: &[Spans],
) -> (Vec<Mistake<'a>>, Vec<Mistake<'a>>) {
    let overlaps = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
    let mut missed = Vec::new();
    let mut wrong = Vec::new();
    for (sample, predicted) in samples.iter().zip(predictions) {
        for (kind, span) in &sample.spans {
            if !predicted
                .iter()
                .any(|(k, p)| k == kind && overlaps(p, span))
            {
                missed.push((*kind, &sample.text[span.clone()], sample.text.as_str()));
            }
        }
        for (kind, span) in predicted {
            if !sample
                .spans
                .iter()
                .any(|(k, s)| k == kind && overlaps(s, span))
            {
                wrong.push((*kind, &sample.text[span.clone()], sample.text.as_str()));
            }
        }
    }
    (missed, wrong)
}

fn percent(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{:.3}", v))
}

/// A Markdown table of Tandem's scores, beside another detector's when there is one.
pub fn table(
    ours: &BTreeMap<Kind, KindScore>,
    other: Option<(&str, &BTreeMap<Kind, KindScore>)>,
) -> String {
    let mut out = String::from("| kind | labelled | precision | recall | protected |");
    let mut rule = String::from("|---|---:|---:|---:|---:|");
    if let Some((name, _)) = other {
        out.push_str(&format!(
            " {name} precision | {name} recall | {name} protected |"
        ));
        rule.push_str("---:|---:|---:|");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    let empty = KindScore::default();
    for kind in crate::Kind::ALL {
        let Some(score) = ours.get(&kind) else {
            continue;
        };
        if score.labelled == 0
            && other.is_none_or(|(_, o)| o.get(&kind).is_none_or(|s| s.labelled == 0))
            && score.predicted == 0
        {
            continue;
        }
        out.push_str(&format!(
            "| {kind} | {} | {} | {} | {} |",
            score.labelled,
            percent(score.precision()),
            percent(score.recall()),
            percent(score.protected_share())
        ));
        if let Some((_, other)) = other {
            let theirs = other.get(&kind).unwrap_or(&empty);
            out.push_str(&format!(
                " {} | {} | {} |",
                percent(theirs.precision()),
                percent(theirs.recall()),
                percent(theirs.protected_share())
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_scoring_and_kind_blind_protection() {
        let samples = vec![Sample {
            text: "mail a@b.io card 4111111111111111".into(),
            spans: vec![(Kind::Email, 5..11), (Kind::CreditCard, 17..33)],
            source: "t",
        }];
        let predictions = vec![vec![
            (Kind::Email, 5..9),
            (Kind::Phone, 17..33),
            (Kind::Person, 0..4),
        ]];
        let scores = score(&samples, &predictions);
        let email = scores[&Kind::Email];
        assert_eq!((email.found, email.protected, email.correct), (1, 0, 1));
        let card = scores[&Kind::CreditCard];
        assert_eq!(
            (card.recall(), card.protected_share()),
            (Some(0.0), Some(1.0))
        );
        assert_eq!(scores[&Kind::Person].precision(), Some(0.0));
        let shown = table(&scores, None);
        assert!(
            shown.contains("| credit_card | 1 | - | 0.000 | 1.000 |"),
            "{shown}"
        );
    }
}
