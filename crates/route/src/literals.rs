//! The salient literals of a question: what a similar-looking question must share before it may be
//! given the same answer.
//!
//! Sentence embeddings place "What is 17 × 23?" next to "What is 17 × 24?", and "Which planets are
//! gas giants?" next to "Which planets are not gas giants?". A similarity hit therefore also needs
//! equal [`Literals`]:
//! - numbers, in order, digits or number words ("three" is 3; "1,000.50" is 1000.5);
//! - quoted strings ("...", '...', `...`, “...”), verbatim;
//! - code identifiers: snake_case, camelCase, dotted.paths, calls(), paths and URLs;
//! - names: capitalised words that do not start a sentence, acronyms, and capitalised words at a
//!   sentence start that are not common sentence openers ("Paris is..." but not "What is...");
//! - the number of negations (not, no, never, n't, without, ...);
//! - direction words (before / after, largest / smallest, more / less, ...), synonyms merged.
//!
//! Everything but the numbers is compared as a set, so a paraphrase may reorder names. Lower-case
//! names and other antonyms ("hot" / "cold") are not literals: those pairs are left to the
//! similarity threshold, and `tandem eval cache` measures how often that fails.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;

/// The salient literals of one text; equal literals are a precondition of a similarity hit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Literals {
    pub numbers: Vec<String>,
    /// Quoted strings, identifiers and names, lower-cased except quoted strings.
    pub terms: BTreeSet<String>,
    pub negations: usize,
}

impl Literals {
    /// One string that is equal for equal literals (what the cache stores).
    pub fn signature(&self) -> String {
        let terms: Vec<&str> = self.terms.iter().map(String::as_str).collect();
        format!(
            "{}\u{1f}{}\u{1f}{}",
            self.numbers.join(","),
            terms.join("\u{1e}"),
            self.negations
        )
    }
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("the literal patterns compile"))
}

/// Words that start sentences without naming anything.
const OPENERS: &[&str] = &[
    "a",
    "about",
    "according",
    "after",
    "all",
    "also",
    "an",
    "and",
    "any",
    "are",
    "as",
    "assume",
    "at",
    "based",
    "be",
    "before",
    "besides",
    "between",
    "both",
    "briefly",
    "but",
    "by",
    "calculate",
    "can",
    "choose",
    "classify",
    "compare",
    "compute",
    "consider",
    "convert",
    "could",
    "create",
    "define",
    "describe",
    "determine",
    "did",
    "do",
    "does",
    "each",
    "either",
    "estimate",
    "even",
    "every",
    "explain",
    "find",
    "first",
    "fix",
    "for",
    "from",
    "generate",
    "give",
    "given",
    "has",
    "have",
    "he",
    "hello",
    "help",
    "her",
    "here",
    "hey",
    "hi",
    "his",
    "how",
    "however",
    "i",
    "if",
    "imagine",
    "implement",
    "in",
    "is",
    "it",
    "its",
    "just",
    "let",
    "list",
    "make",
    "many",
    "may",
    "might",
    "most",
    "much",
    "my",
    "name",
    "next",
    "now",
    "of",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "please",
    "provide",
    "quickly",
    "rewrite",
    "say",
    "should",
    "show",
    "since",
    "so",
    "solve",
    "some",
    "suggest",
    "summarise",
    "summarize",
    "suppose",
    "tell",
    "thanks",
    "that",
    "the",
    "their",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "to",
    "translate",
    "under",
    "use",
    "quick",
    "okay",
    "ok",
    "hmm",
    "add",
    "check",
    "count",
    "get",
    "print",
    "read",
    "return",
    "run",
    "set",
    "sort",
    "go",
    "keep",
    "look",
    "state",
    "recommend",
    "using",
    "was",
    "we",
    "were",
    "what",
    "whats",
    "what's",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "write",
    "yes",
    "you",
    "your",
];

/// Words that set a question's direction: two questions that differ in one of these ask opposite
/// things ("before" / "after", "largest" / "smallest"), however close their embeddings.
const DIRECTIONS: &[&str] = &[
    "above",
    "add",
    "after",
    "ascending",
    "before",
    "below",
    "best",
    "big",
    "bigger",
    "biggest",
    "bottom",
    "cheaper",
    "cheapest",
    "decrease",
    "descending",
    "divide",
    "down",
    "earlier",
    "earliest",
    "east",
    "false",
    "fastest",
    "fewer",
    "fewest",
    "first",
    "greater",
    "greatest",
    "high",
    "higher",
    "highest",
    "increase",
    "large",
    "larger",
    "largest",
    "last",
    "later",
    "latest",
    "least",
    "left",
    "less",
    "long",
    "longer",
    "longest",
    "low",
    "lower",
    "lowest",
    "max",
    "maximum",
    "min",
    "minimum",
    "minus",
    "more",
    "most",
    "multiply",
    "newer",
    "newest",
    "north",
    "older",
    "oldest",
    "plus",
    "right",
    "short",
    "shorter",
    "shortest",
    "slower",
    "slowest",
    "small",
    "smaller",
    "smallest",
    "south",
    "subtract",
    "tiniest",
    "tiny",
    "top",
    "true",
    "up",
    "west",
    "worse",
    "worst",
    "younger",
    "youngest",
];

/// Direction words with the same sense, so a paraphrase that swaps one for the other still hits.
fn direction(word: &str) -> Option<&'static str> {
    const SYNONYMS: &[(&str, &str)] = &[
        ("big", "large"),
        ("bigger", "larger"),
        ("biggest", "largest"),
        ("greatest", "largest"),
        ("tiny", "small"),
        ("tiniest", "smallest"),
        ("maximum", "max"),
        ("minimum", "min"),
        ("greater", "larger"),
    ];
    let word = DIRECTIONS.iter().find(|w| **w == word)?;
    Some(
        SYNONYMS
            .iter()
            .find(|(w, _)| w == word)
            .map_or(*word, |(_, s)| *s),
    )
}

const NEGATIONS: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "none",
    "nobody",
    "nothing",
    "neither",
    "nor",
    "cannot",
    "except",
    "excluding",
    "nowhere",
];

fn number_word(word: &str) -> Option<&'static str> {
    const WORDS: &[(&str, &str)] = &[
        ("zero", "0"),
        ("one", "1"),
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
        ("five", "5"),
        ("six", "6"),
        ("seven", "7"),
        ("eight", "8"),
        ("nine", "9"),
        ("ten", "10"),
        ("eleven", "11"),
        ("twelve", "12"),
        ("thirteen", "13"),
        ("fourteen", "14"),
        ("fifteen", "15"),
        ("sixteen", "16"),
        ("seventeen", "17"),
        ("eighteen", "18"),
        ("nineteen", "19"),
        ("twenty", "20"),
        ("thirty", "30"),
        ("forty", "40"),
        ("fifty", "50"),
        ("sixty", "60"),
        ("seventy", "70"),
        ("eighty", "80"),
        ("ninety", "90"),
        ("hundred", "100"),
        ("thousand", "1000"),
        ("million", "1000000"),
        ("billion", "1000000000"),
        ("dozen", "12"),
        ("half", "0.5"),
        ("twice", "2"),
        ("double", "2"),
        ("triple", "3"),
        ("once", "1"),
        ("first", "1st"),
        ("second", "2nd"),
        ("third", "3rd"),
    ];
    WORDS.iter().find(|(w, _)| *w == word).map(|(_, n)| *n)
}

/// `1,000.50` -> `1000.5`; `-3` stays; `50%` keeps its sign.
fn normalise_number(text: &str) -> String {
    let mut number: String = text.chars().filter(|c| *c != ',').collect();
    let percent = number.ends_with('%');
    if percent {
        number.pop();
    }
    if number.contains('.') && !number.contains(['e', 'E']) {
        number = number
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string();
    }
    if percent {
        number.push('%');
    }
    number
}

/// The salient literals of `text`.
pub fn literals(text: &str) -> Literals {
    static QUOTED: OnceLock<Regex> = OnceLock::new();
    static TOKEN: OnceLock<Regex> = OnceLock::new();
    let quoted = regex(
        &QUOTED,
        r#""([^"\n]{1,200})"|“([^”\n]{1,200})”|`([^`\n]{1,200})`|(?:^|[\s(\[{:,=])'([^'\n]{1,200})'(?:$|[\s)\]}.,;:?!])"#,
    );
    let mut out = Literals::default();
    let mut rest = String::with_capacity(text.len());
    let mut last = 0;
    for found in quoted.captures_iter(text) {
        let whole = found.get(0).expect("group 0 is the match");
        let inner = (1..=4)
            .find_map(|i| found.get(i))
            .expect("one group matched");
        out.terms.insert(format!("\"{}\"", inner.as_str()));
        rest.push_str(&text[last..whole.start()]);
        rest.push_str(" . ");
        last = whole.end();
    }
    rest.push_str(&text[last..]);

    // Numbers, identifiers, paths and words, with the punctuation that ends sentences.
    let token = regex(
        &TOKEN,
        r"(?x)
          (?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://\S+)
        | (?P<number>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?%?)
        | (?P<word>[\p{L}_][\p{L}\p{N}_]*(?:(?:\.|::|/|->)[\p{L}_][\p{L}\p{N}_]*)*(?:\(\))?(?:'\p{L}+)?)
        | (?P<end>[.!?:;\n]+)",
    );
    let mut sentence_start = true;
    for found in token.captures_iter(&rest) {
        if let Some(url) = found.name("url") {
            out.terms.insert(url.as_str().to_lowercase());
            sentence_start = false;
        } else if let Some(number) = found.name("number") {
            out.numbers.push(normalise_number(number.as_str()));
            sentence_start = false;
        } else if let Some(word) = found.name("word") {
            word_literal(word.as_str(), sentence_start, &mut out);
            sentence_start = false;
        } else if found.name("end").is_some() {
            sentence_start = true;
        }
    }
    out
}

fn word_literal(word: &str, sentence_start: bool, out: &mut Literals) {
    let lower = word.to_lowercase();
    // "isn't", "don't": a negation; "France's": France.
    let (stem, suffix) = match lower.split_once('\'') {
        Some((stem, suffix)) => (stem.to_string(), suffix.to_string()),
        None => (lower.clone(), String::new()),
    };
    if suffix == "t" && stem.ends_with('n') || NEGATIONS.contains(&stem.as_str()) {
        out.negations += 1;
        return;
    }
    if let Some(direction) = direction(&stem) {
        out.terms.insert(format!("~{direction}"));
        return;
    }
    if let Some(number) = number_word(&stem) {
        out.numbers.push(number.to_string());
        return;
    }
    let code = word.contains('_')
        || word.ends_with("()")
        || word.contains(['.', '/'])
        || word.contains("::")
        || word.contains("->")
        || word
            .chars()
            .zip(word.chars().skip(1))
            .any(|(a, b)| a.is_lowercase() && b.is_uppercase())
        || word.chars().any(|c| c.is_ascii_digit());
    if code {
        out.terms.insert(word.to_string());
        return;
    }
    let stem_original = word.split('\'').next().unwrap_or(word);
    let capitalised = stem_original.chars().next().is_some_and(char::is_uppercase);
    let acronym = stem_original.chars().count() >= 2
        && stem_original
            .chars()
            .all(|c| c.is_uppercase() || c.is_ascii_digit());
    let name = capitalised && !(sentence_start && OPENERS.contains(&stem.as_str()));
    if (acronym || name) && stem != "i" {
        out.terms.insert(stem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) -> bool {
        literals(a) == literals(b)
    }

    #[test]
    fn numbers_in_digits_or_words_must_match_in_order() {
        let l = literals("Tom has 3 apples and buys 1,200.50 more, three times.");
        assert_eq!(l.numbers, ["3", "1200.5", "3"]);
        assert!(same("What is 17 * 23?", "Compute 17 * 23 please."));
        assert!(!same("What is 17 * 23?", "What is 17 * 24?"));
        assert!(!same("He had 3 and then 5.", "He had 5 and then 3."));
        assert!(same("I have three cats.", "I have 3 cats."));
    }

    #[test]
    fn names_count_unless_they_merely_open_a_sentence() {
        assert!(same(
            "What is the capital of France?",
            "Tell me France's capital."
        ));
        assert!(!same(
            "What is the capital of France?",
            "What is the capital of Spain?"
        ));
        assert!(!same("Paris is nice. Why?", "Rome is nice. Why?"));
        assert!(same(
            "How do I sort in Python?",
            "In Python, how can I sort?"
        ));
        let terms = literals("Use the API of NASA.").terms;
        assert_eq!(terms, BTreeSet::from(["api".into(), "nasa".into()]));
    }

    #[test]
    fn negations_quotes_and_identifiers() {
        assert!(!same(
            "Which planets are gas giants?",
            "Which planets are not gas giants?"
        ));
        assert!(same(
            "Which planets aren't gas giants?",
            "Which planets are not gas giants?"
        ));
        assert!(!same(
            "Replace \"foo\" with bar",
            "Replace \"baz\" with bar"
        ));
        assert!(!same(
            "What does my_func() return?",
            "What does other_func() return?"
        ));
        assert!(!same("Explain os.path.join", "Explain os.path.split"));
        assert!(!same(
            "What is the largest ocean?",
            "What is the smallest ocean?"
        ));
        assert!(same(
            "What is the largest ocean?",
            "Which is the biggest ocean?"
        ));
        assert!(!same(
            "What happened before 1990?",
            "What happened after 1990?"
        ));
        assert!(literals("it's 'quoted' here").terms.contains("\"quoted\""));
        assert_ne!(literals("a").signature(), literals("b 2").signature());
    }
}
