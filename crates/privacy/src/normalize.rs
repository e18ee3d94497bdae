//! Normalised forms of values, so that one value written with other casing, spacing or separators
//! is recognised as the same value: the same placeholder, the same allow-list or deny-list entry.

/// Lower-case letters and digits only: `4111-1111 1111 1111` and `41111111 11111111` agree, as do
/// `Jane.Doe@Example.com` and `jane.doe@example.com`.
pub fn canonical(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

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
    Some(format!(r"(?i){}", parts.join(r"[\s\-._/()]*")))
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
    fn loose_pattern_matches_other_spellings() {
        let re = regex::Regex::new(&loose_pattern("AB-12 cd").unwrap()).unwrap();
        for text in ["ab12cd", "A B 1 2 C D", "a.b-1_2/c(d)"] {
            assert!(re.is_match(text), "{text}");
        }
        assert!(!re.is_match("ab13cd"));
        assert_eq!(loose_pattern(" - "), None);
    }
}
