//! Context words: whether a span is preceded by words that say what it is ("born", "SSN").

use regex::Regex;

/// Whether the `window` bytes before `start` match `words`.
pub fn before(text: &str, start: usize, window: usize, words: &Regex) -> bool {
    let mut from = start.saturating_sub(window);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    words.is_match(&text[from..start])
}

/// Whether the characters right around `range` leave it a whole token (no letter or digit glued
/// on either side).
pub fn standalone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}
