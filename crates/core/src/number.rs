//! Numbers as answers write them, in one canonical form, so that equal numbers compare equal as
//! strings: the harness's GSM scorer and the cascade's agreement signal both compare them so.

/// A number in canonical form, so that equal numbers compare equal as strings: no `$`, `+` or
/// thousands separators, no leading zeros, no trailing fractional zeros, `-0` is `0`.
pub fn normalize_number(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('.');
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits: String = digits
        .trim_start_matches('$')
        .chars()
        .filter(|&c| c != ',')
        .collect();
    let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let magnitude = match (whole.is_empty(), fraction.is_empty()) {
        (true, true) => return Some("0".into()),
        (false, true) => whole.to_string(),
        (true, false) => format!("0.{fraction}"),
        (false, false) => format!("{whole}.{fraction}"),
    };
    Some(if negative {
        format!("-{magnitude}")
    } else {
        magnitude
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_numbers() {
        for (text, expected) in [
            ("70", Some("70")),
            ("1,234", Some("1234")),
            ("$1,234.50", Some("1234.5")),
            ("-0.0", Some("0")),
            ("007", Some("7")),
            ("12.", Some("12")),
            ("+3", Some("3")),
            (".5", Some("0.5")),
            ("-2.50", Some("-2.5")),
            ("abc", None),
            ("", None),
            ("1.2.3", None),
        ] {
            assert_eq!(normalize_number(text).as_deref(), expected, "{text:?}");
        }
    }
}
