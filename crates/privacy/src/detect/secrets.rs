//! Recognisers for credentials: URLs carrying a password, API keys and tokens by their known
//! prefixes, private keys, JWTs, values assigned to secret-sounding names in config snippets and
//! code, and high-entropy strings.

use std::sync::LazyLock;

use regex::Regex;

use super::context;
use super::Finding;
use crate::kind::Kind;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("recogniser patterns are valid")
}

/// A URL with a password; the user name may hold up to two spaces ("postgres://ann lee:pw@db").
static CREDENTIAL_URL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b[a-z][a-z0-9+.\-]*://[^\s:/@"'<>]*(?:[ ][^\s:/@"'<>]+){0,2}:[^\s@/"'<>]+@[^\s"'<>]+"#,
    )
});
static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
    )
});
/// Keys and tokens whose issuers give them a recognisable prefix.
static KNOWN_PREFIXES: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\b(?:",
        r"sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_\-]{20,}",
        r"|gh[pousr]_[A-Za-z0-9]{30,}",
        r"|github_pat_[A-Za-z0-9_]{30,}",
        r"|(?:AKIA|ASIA)[A-Z0-9]{16}",
        r"|xox[abposr]-[A-Za-z0-9\-]{10,}",
        r"|AIza[0-9A-Za-z_\-]{35}",
        r"|glpat-[A-Za-z0-9_\-]{20,}",
        r"|(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}",
        r"|hf_[A-Za-z0-9]{30,}",
        r"|npm_[A-Za-z0-9]{36}",
        r"|eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",
        r")"
    ))
});
/// `password = "..."`, `"api_key": "..."`, `export AWS_SECRET_ACCESS_KEY=...`: the value after a
/// secret-sounding name.
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)[a-z0-9_.\-]*(?:password|passwd|pwd|passphrase|secret|token|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key|client[_\-]?secret|auth[_\-]?key|credentials?)[a-z0-9_\-]*["']?\s*(?:=|:|=>|:=)\s*(?:["'`]([^"'`\n]{3,})["'`]|([^\s"',;}{)\]]{3,}))"#,
    )
});
/// "my password is hunter2", "Authorization: Bearer abc..."
static SPOKEN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:(?:password|passcode|passphrase|pin|pwd)\s+(?:is|was|would be)\s*:?\s*["']?([^\s"',]{3,})|bearer\s+([A-Za-z0-9._~+/=\-]{12,}))"#,
    )
});
/// A token in a URL's query under a secret-sounding name.
static QUERY_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)[?&](?:token|access_token|api_key|apikey|key|secret|password|sig|signature|auth)=([^&\s#]{6,})",
    )
});
static LONG_TOKEN: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Za-z0-9+/_\-.]{20,}={0,2}"));

pub fn find(text: &str, out: &mut Vec<Finding>) {
    for m in CREDENTIAL_URL.find_iter(text) {
        let url = m
            .as_str()
            .trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        out.push(Finding::new(
            Kind::CredentialUrl,
            m.start()..m.start() + url.len(),
            0.98,
        ));
    }
    for m in PRIVATE_KEY.find_iter(text) {
        out.push(Finding::new(Kind::Secret, m.range(), 0.99));
    }
    for m in KNOWN_PREFIXES.find_iter(text) {
        out.push(Finding::new(Kind::Secret, m.range(), 0.97));
    }
    for pattern in [&*ASSIGNMENT, &*SPOKEN, &*QUERY_SECRET] {
        for c in pattern.captures_iter(text) {
            let Some(value) = c.iter().skip(1).flatten().next() else {
                continue;
            };
            if !is_reference(value.as_str()) {
                let value_end = value.start() + value.as_str().trim_end_matches(['.', ',']).len();
                out.push(Finding::new(Kind::Secret, value.start()..value_end, 0.9));
            }
        }
    }
    for m in LONG_TOKEN.find_iter(text) {
        let token = m.as_str().trim_end_matches(['.', '=']);
        if context::standalone(text, m.start(), m.start() + token.len()) {
            if let Some(confidence) = entropy_confidence(token) {
                out.push(Finding::new(
                    Kind::Secret,
                    m.start()..m.start() + token.len(),
                    confidence,
                ));
            }
        }
    }
}

/// Values in secret-sounding places that are not secrets: references to where the secret lives,
/// template holes and placeholders.
fn is_reference(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    value.starts_with(['$', '<', '{', '%'])
        || value.starts_with('[') && value.ends_with(']')
        || [
            "os.environ",
            "process.env",
            "env(",
            "env.",
            "getenv",
            "secrets.",
            "none",
            "null",
            "true",
            "false",
            "required",
            "optional",
            "string",
            "str",
            "***",
        ]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// How likely a long token is a secret, from its Shannon entropy and mix of character classes.
/// Words joined by separators (`a_very_long_function_name`), paths and plain hex hashes score low.
fn entropy_confidence(token: &str) -> Option<f32> {
    let has_digit = token.bytes().any(|b| b.is_ascii_digit());
    let has_lower = token.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = token.bytes().any(|b| b.is_ascii_uppercase());
    let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
    let entropy = shannon(token);
    if hex {
        // Commit hashes and checksums look like this too: noted, but below the default threshold.
        return (token.len() >= 32 && entropy > 3.0).then_some(0.45);
    }
    if !(has_digit && has_lower && has_upper) || token.contains('/') && token.contains('.') {
        return None;
    }
    if entropy >= 4.2 {
        Some(0.8)
    } else if entropy >= 3.7 {
        Some(0.6)
    } else {
        None
    }
}

fn shannon(token: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in token.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = token.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        find(text, &mut out);
        super::super::resolve_overlaps(out.into_iter().filter(|f| f.confidence >= 0.5).collect())
            .into_iter()
            .map(|f| text[f.span].to_string())
            .collect()
    }

    #[test]
    fn known_prefixes() {
        for key in [
            "sk-proj-Abc123Def456Ghi789Jkl012Mno345",
            "sk-Abc123Def456Ghi789Jkl012",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
            "AKIAIOSFODNN7EXAMPLE",
            "xoxb-123456789012-abcdefghijkl",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "glpat-abcdefghij0123456789",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ] {
            assert_eq!(secrets(&format!("key: {key} end")), vec![key.to_string()], "{key}");
        }
    }

    #[test]
    fn config_snippets_and_connection_strings() {
        assert_eq!(secrets(r#"{"api_key": "q9Zr!x7#Lm"}"#), vec!["q9Zr!x7#Lm"]);
        assert_eq!(secrets("DB_PASSWORD=hunter2horse\n"), vec!["hunter2horse"]);
        assert_eq!(
            secrets("my password is Tr0ub4dor&3, ok"),
            vec!["Tr0ub4dor&3"]
        );
        assert_eq!(
            secrets("url = mysql://root:toor@10.0.0.5:3306/shop."),
            vec!["mysql://root:toor@10.0.0.5:3306/shop"]
        );
        assert_eq!(
            secrets("REDIS=redis://:Maple71$@10.0.0.7:6379/0 and git https://ann:ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@github.com/a/b"),
            vec![
                "redis://:Maple71$@10.0.0.7:6379/0",
                "https://ann:ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@github.com/a/b"
            ]
        );
        // A user name with a space (not valid in a URL, but typed so).
        assert_eq!(
            secrets(r#"url: "postgres://alojzija ana:Blue72?@db.internal:5432/app""#),
            vec!["postgres://alojzija ana:Blue72?@db.internal:5432/app"]
        );
        assert!(secrets(r#"password = os.environ["DB_PASSWORD"]"#).is_empty());
        assert!(secrets("token: ${TOKEN}").is_empty());
    }

    #[test]
    fn private_keys_whole_blocks() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        assert_eq!(secrets(&format!("here:\n{key}\nthanks")), vec![key]);
    }

    #[test]
    fn entropy_finds_random_tokens_not_identifiers() {
        assert_eq!(
            secrets("use Zx8fQ2LmP0aR7tYv3NcW9kBd please"),
            vec!["Zx8fQ2LmP0aR7tYv3NcW9kBd"]
        );
        assert!(secrets("call get_user_account_settings_by_name now").is_empty());
        assert!(secrets("commit 3f786850e387550fdab836ed7e6dc881de23001b").is_empty());
    }
}
