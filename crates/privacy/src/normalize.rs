//! Normalised forms of values, so that one value written with other casing, spacing or separators
//! is recognised as the same value: the same placeholder, the same allow-list or deny-list entry.

use std::ops::Range;

/// Lower-case letters and digits only: `4111-1111 1111 1111` and `41111111 11111111` agree, as do
/// `Jane.Doe@Example.com` and `jane.doe@example.com`.
pub fn canonical(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// `text` as [`canonical`] writes values, for finding them in it: letters and digits in small
/// letters, without the separators a value may be spelled with (white space, dashes, dots,
/// underscores, slashes, parentheses); any other character becomes a space, which no canonical
/// value holds, so no value is found across it. It remembers where in `text` each of its bytes
/// comes from, so that a match maps back to the text's own spelling.
pub struct Squeezed<'a> {
    text: &'a str,
    pub squeezed: String,
    /// For each byte of `squeezed`, the byte offset in `text` of the character it comes from.
    from: Vec<usize>,
}

impl<'a> Squeezed<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut squeezed = String::with_capacity(text.len());
        let mut from = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            if c.is_alphanumeric() {
                for lower in c.to_lowercase() {
                    squeezed.push(lower);
                    from.extend(std::iter::repeat_n(i, lower.len_utf8()));
                }
            } else if !(c.is_whitespace() || SEPARATORS.contains(c)) {
                squeezed.push(' ');
                from.push(i);
            }
        }
        Squeezed {
            text,
            squeezed,
            from,
        }
    }

    /// The span of `text` that the non-empty range `within` of the squeezed text comes from: from
    /// the character of its first byte to the end of the character of its last.
    pub fn span(&self, within: Range<usize>) -> Range<usize> {
        let last = self.from[within.end - 1];
        let last_len = self.text[last..].chars().next().map_or(0, char::len_utf8);
        self.from[within.start]..last + last_len
    }
}

/// The characters besides white space that may stand between a value's letters and digits.
const SEPARATORS: &str = "-._/()";

/// A case-insensitive regular expression matching `value` with any separators (spaces, dashes,
/// dots, slashes, underscores, parentheses) between its letters and digits, or none; `None` when
/// the value has no letter or digit.
pub fn loose_pattern(value: &str) -> Option<String> {
    let parts: Vec<String> = value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .map(|c| regex::escape(&c.to_string()))
        .collect();
    if parts.is_empty() {
        return None;
    }
    let separator = format!(r"[\s{}]*", regex::escape(SEPARATORS));
    Some(format!(r"(?i){}", parts.join(&separator)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ignores_case_and_separators() {
        assert_eq!(canonical("4111-1111 1111.1111"), "4111111111111111");
        assert_eq!(canonical("Jane.Doe@Example.COM"), "janedoeexamplecom");
    }

    #[test]
    fn squeezed_text_maps_back_to_the_text() {
        let text = "Call A.B-12 (Cd), ok";
        let squeezed = Squeezed::new(text);
        assert_eq!(squeezed.squeezed, "callab12cd ok");
        let at = squeezed.squeezed.find("ab12cd").unwrap();
        assert_eq!(&text[squeezed.span(at..at + "ab12cd".len())], "A.B-12 (Cd");
        // A capital whose small letter is longer in UTF-8 maps each of its bytes to it.
        let text = "\u{130}x \u{e9}";
        let squeezed = Squeezed::new(text);
        assert_eq!(squeezed.squeezed, "i\u{307}x\u{e9}");
        assert_eq!(&text[squeezed.span(0..1)], "\u{130}");
        assert_eq!(&text[squeezed.span(0..4)], "\u{130}x");
        assert_eq!(&text[squeezed.span(4..6)], "\u{e9}");
        assert_eq!(&text[squeezed.span(0..6)], text);
    }

    #[test]
    fn loose_pattern_matches_other_spellings() {
        let re = regex::Regex::new(&loose_pattern("AB-12 cd").unwrap()).unwrap();
        for text in ["ab12cd", "A B 1 2 C D", "a.b-1_2/c(d)"] {
            assert!(re.is_match(text), "{text}");
        }
        assert!(!re.is_match("ab13cd"));
        assert_eq!(loose_pattern(" - "), None);
    }
}
