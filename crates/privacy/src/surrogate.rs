//! Realistic stand-ins for private values: a made-up person, organisation, address, date, e-mail
//! address, or the value's own shape with other letters and digits. A remote model reads them as
//! ordinary text, so it answers as it would with the real values (a bracketed tag such as
//! `[PERSON_1]` makes a small model refuse, drop the tag or make up its own), and the vault puts
//! the real values back wherever a stand-in, or a person's given or family name alone, comes back.
//!
//! A stand-in is a function of its kind and a number only, never of the value, so nothing of the
//! value is carried over except its shape (separators, letter case, which characters are digits)
//! and what carries no secret: an IBAN's country, a key's well-known prefix (`sk-`, `ghp_`), a
//! URL's scheme and port, a PEM block's header lines.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kind::Kind;

/// A stand-in, and the parts and other spellings of it that restore on their own (a person's given
/// name alone comes back as the value's first name; an address the model wrote on one line comes
/// back as the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Surrogate {
    pub text: String,
    /// (part or other spelling of the stand-in, what of the value it restores to).
    pub parts: Vec<(String, String)>,
}

impl Surrogate {
    fn whole(text: String) -> Surrogate {
        Surrogate {
            text,
            parts: Vec::new(),
        }
    }
}

/// The `n`-th stand-in (from 1) of a `kind` value shaped like `value`; `None` for the kinds that
/// have no realistic stand-in (deny-listed values, which can be anything).
pub fn surrogate(kind: Kind, value: &str, n: u32) -> Option<Surrogate> {
    let mut rng = ChaCha8Rng::seed_from_u64((kind as u64) << 32 | u64::from(n));
    let i = n.saturating_sub(1) as usize;
    let surrogate = match kind {
        Kind::Person => person(value, i),
        Kind::Organization => organization(value, i),
        Kind::Email => {
            // Half the names away from the people's, so the first e-mail is no first person's.
            let (given, family) = name(i + NAMES / 2);
            let domain = ["example.com", "example.org", "example.net"][i / NAMES % 3];
            Surrogate::whole(format!(
                "{}.{}@{domain}",
                given.to_lowercase(),
                family.to_lowercase()
            ))
        }
        Kind::StreetAddress => address(value, &mut rng),
        Kind::DateOfBirth => Surrogate::whole(format!(
            "{} {}, {}",
            MONTHS[rng.random_range(0..12)],
            rng.random_range(1..=28),
            rng.random_range(1950..=2002)
        )),
        Kind::IpAddress if value.contains(':') => Surrogate::whole(format!("2001:db8::{n:x}")),
        // TEST-NET-2 and TEST-NET-3, then the private 10/8 block.
        Kind::IpAddress => Surrogate::whole(match i {
            0..254 => format!("203.0.113.{}", i + 1),
            254..508 => format!("198.51.100.{}", i - 253),
            _ => format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        }),
        Kind::Iban => Surrogate::whole(reshaped(value, kept_prefix(value, 2), &mut rng)),
        Kind::CreditCard | Kind::Phone | Kind::NationalId => {
            Surrogate::whole(reshaped(value, "", &mut rng))
        }
        Kind::CredentialUrl => Surrogate::whole(credential_url(value, i, &mut rng)),
        Kind::Secret => Surrogate::whole(secret(value, &mut rng)),
        Kind::Denied => return None,
    };
    Some(surrogate)
}

/// `value` with every letter and digit after `keep` (a prefix of it) drawn anew, in the same
/// case; separators and length stay.
fn reshaped(value: &str, keep: &str, rng: &mut ChaCha8Rng) -> String {
    let mut out = String::with_capacity(value.len());
    out.push_str(keep);
    for c in value[keep.len()..].chars() {
        // A country code or a number starts with 1-9.
        let leading = out.is_empty() || out.ends_with(['+', '(']);
        out.push(match c {
            '0'..='9' if leading => char::from(b'1' + rng.random_range(0..9u8)),
            '0'..='9' => char::from(b'0' + rng.random_range(0..10u8)),
            'a'..='z' => char::from(b'a' + rng.random_range(0..26u8)),
            'A'..='Z' => char::from(b'A' + rng.random_range(0..26u8)),
            c if c.is_alphanumeric() => 'x',
            c => c,
        });
    }
    out
}

/// The first `chars` characters of `value` when they are ASCII letters (an IBAN's country).
fn kept_prefix(value: &str, chars: usize) -> &str {
    let prefix = value.get(..chars).unwrap_or("");
    if prefix.len() == chars && prefix.bytes().all(|b| b.is_ascii_alphabetic()) {
        prefix
    } else {
        ""
    }
}

/// A URL with credentials that reads as one a person set up, because a model miscopies random
/// letters (it dropped a `?` from `Zihdkt09?@`, and rewrote random hosts): the
/// scheme, the port and the separators between the parts are kept; the user becomes a made-up
/// given name in small letters, the password a made-up word and two digits, the host a made-up
/// name under `example.net` (a private address for an IPv4 one, a documentation one for IPv6),
/// and each letter and digit of the path is drawn anew. A value that is not `scheme://user:
/// password@host...` is reshaped whole, keeping its scheme.
fn credential_url(value: &str, i: usize, rng: &mut ChaCha8Rng) -> String {
    let scheme_end = value.find("://").map_or(0, |at| at + 3);
    let (scheme, rest) = value.split_at(scheme_end);
    let Some((Some((user, _password)), location)) = rest
        .split_once('@')
        .map(|(userinfo, location)| (userinfo.split_once(':'), location))
    else {
        return reshaped(value, scheme, rng);
    };
    let host_end = if location.starts_with('[') {
        location.find(']').map_or(location.len(), |at| at + 1)
    } else {
        location
            .find([':', '/', '?', '#'])
            .unwrap_or(location.len())
    };
    let (host, tail) = location.split_at(host_end);
    let port_end = tail.strip_prefix(':').map_or(0, |port| {
        1 + port.bytes().take_while(u8::is_ascii_digit).count()
    });
    let (port, path) = tail.split_at(port_end);
    let user = if user.is_empty() {
        String::new()
    } else {
        name(i + NAMES / 4).0.to_lowercase()
    };
    let password = format!(
        "{}{}",
        STREETS[rng.random_range(0..STREETS.len())],
        rng.random_range(10..100)
    );
    let host = if host.starts_with('[') {
        format!("[2001:db8::{:x}]", i + 1)
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
        format!(
            "10.{}.{}.{}",
            rng.random_range(0..256),
            rng.random_range(0..256),
            rng.random_range(1..255)
        )
    } else {
        format!(
            "{}.example.net",
            STREETS[rng.random_range(0..STREETS.len())].to_lowercase()
        )
    };
    format!(
        "{scheme}{user}:{password}@{host}{port}{}",
        reshaped(path, "", rng)
    )
}

/// Prefixes that say what kind of key a value is, and nothing about which key.
const KEY_PREFIXES: [&str; 12] = [
    "sk-proj-",
    "sk-ant-",
    "sk-",
    "github_pat_",
    "ghp_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "AKIA",
    "ASIA",
    "AIza",
    "eyJ",
];

/// A secret reshaped: a PEM block keeps its `-----BEGIN ...-----` lines, a key its known prefix.
fn secret(value: &str, rng: &mut ChaCha8Rng) -> String {
    if value.contains("-----BEGIN") {
        return value
            .split_inclusive('\n')
            .map(|line| {
                if line.trim_start().starts_with("-----") {
                    line.to_string()
                } else {
                    reshaped(line, "", rng)
                }
            })
            .collect();
    }
    let prefix = KEY_PREFIXES
        .iter()
        .find(|p| value.starts_with(*p) && value.len() > p.len())
        .copied()
        .unwrap_or("");
    reshaped(value, prefix, rng)
}

const HONORIFICS: [&str; 10] = [
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "dame",
];

/// A made-up person as long as the value: one word (a given name, or a family name after an
/// honorific, which is kept), or a given and a family name, each of which restores alone to the
/// value's first and last word.
fn person(value: &str, i: usize) -> Surrogate {
    let mut words: Vec<&str> = value.split_whitespace().collect();
    let honorific = words
        .first()
        .filter(|w| HONORIFICS.contains(&w.trim_end_matches('.').to_lowercase().as_str()))
        .copied();
    if honorific.is_some() {
        words.remove(0);
    }
    let (given, family) = name(i);
    let prefix = honorific.map_or(String::new(), |h| format!("{h} "));
    match words.as_slice() {
        [] | [_] => {
            let name = if honorific.is_some() { family } else { given };
            Surrogate::whole(format!("{prefix}{}", cased(value, name)))
        }
        [first, .., last] => {
            let (given, family) = (cased(value, given), cased(value, family));
            Surrogate {
                text: format!("{prefix}{given} {family}"),
                parts: vec![(given, first.to_string()), (family, last.to_string())],
            }
        }
    }
}

/// Legal forms kept from the value ("Inc.", "GmbH"): they say what an organisation is, not which.
const LEGAL_FORMS: [&str; 16] = [
    "inc", "inc.", "ltd", "ltd.", "llc", "gmbh", "corp", "corp.", "co.", "plc", "ag", "sa", "s.a.",
    "bv", "b.v.", "limited",
];

/// A made-up organisation, with the value's legal form when it has one; the made-up name alone
/// restores to the value without its legal form.
fn organization(value: &str, i: usize) -> Surrogate {
    let name = cased(value, ORGANISATIONS[i % ORGANISATIONS.len()]);
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.split_last() {
        Some((form, rest))
            if !rest.is_empty() && LEGAL_FORMS.contains(&form.to_lowercase().as_str()) =>
        {
            // `form` is the value's last word: it ends the value but for white space.
            let bare = value
                .trim_end()
                .strip_suffix(form)
                .unwrap_or(value)
                .trim_end()
                .trim_end_matches(',');
            Surrogate {
                text: format!("{name} {form}"),
                parts: vec![(name, bare.to_string())],
            }
        }
        _ => Surrogate::whole(name),
    }
}

/// A made-up street, and for a value that also names its town (after a comma or on another line)
/// a town and postcode, joined as the value joins them. A model often rewrites an address it
/// copies (one given on two lines comes back on one, a comma appears before the postcode, only the
/// street is given), so those spellings restore too: the whole ones to the value, the street alone
/// to the value's first line.
fn address(value: &str, rng: &mut ChaCha8Rng) -> Surrogate {
    let street = format!(
        "{} {} {}",
        rng.random_range(2..=980),
        STREETS[rng.random_range(0..STREETS.len())],
        ["Street", "Lane", "Road", "Avenue", "Drive", "Way"][rng.random_range(0..6)]
    );
    let Some(first_line) = value
        .split([',', '\n'])
        .next()
        .filter(|line| *line != value)
    else {
        return Surrogate::whole(street);
    };
    let (town, postcode) = (
        TOWNS[rng.random_range(0..TOWNS.len())],
        rng.random_range(10000..99999),
    );
    let joined = if value.contains('\n') { "\n" } else { ", " };
    let text = format!("{street}{joined}{town} {postcode:05}");
    let mut parts: Vec<(String, String)> = ["\n", ", ", ",\n", " "]
        .into_iter()
        .flat_map(|join| {
            [" ", ", "].map(|before_code| format!("{street}{join}{town}{before_code}{postcode:05}"))
        })
        .filter(|spelling| *spelling != text)
        .map(|spelling| (spelling, value.to_string()))
        .collect();
    parts.push((street, first_line.trim().to_string()));
    Surrogate { text, parts }
}

/// `name` in the value's case: all capitals or all small letters when the value is so written.
fn cased(value: &str, name: &str) -> String {
    let letters = || value.chars().filter(|c| c.is_alphabetic());
    if letters().count() > 1 && letters().all(char::is_uppercase) {
        name.to_uppercase()
    } else if letters().count() > 1 && letters().all(char::is_lowercase) {
        name.to_lowercase()
    } else {
        name.to_string()
    }
}

/// Distinct (given, family) pairs; [`name`] repeats after this many.
const NAMES: usize = GIVEN.len() * FAMILY.len();

/// The `i`-th made-up name (from 0): every given name with the first family name, then with the
/// next, and so on, each family name shifted so that neighbours differ in both.
fn name(i: usize) -> (&'static str, &'static str) {
    let i = i % NAMES;
    (
        GIVEN[i % GIVEN.len()],
        FAMILY[(i / GIVEN.len() + i % GIVEN.len()) % FAMILY.len()],
    )
}

/// The months' English names, January first.
pub(crate) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Given names rare enough that an answer holding one means the stand-in, and no English word.
const GIVEN: [&str; 40] = [
    "Alvar", "Brisa", "Caelan", "Dagny", "Evander", "Fenna", "Gideon", "Hollis", "Isolde", "Joren",
    "Kalinda", "Leander", "Maelis", "Niall", "Orla", "Perrin", "Quilla", "Saoirse", "Tamsin",
    "Ulric", "Vesna", "Wilmer", "Xanthe", "Yorick", "Zelie", "Anouk", "Bastian", "Cosima",
    "Dorian", "Elodie", "Florian", "Greer", "Henrike", "Ingmar", "Kasimir", "Linnea", "Mireille",
    "Odalys", "Sigrun", "Thaddeus",
];

/// Family names in the same spirit.
const FAMILY: [&str; 41] = [
    "Ashcombe",
    "Brennick",
    "Castellane",
    "Dunleavy",
    "Ellingsworth",
    "Galbraith",
    "Hartigan",
    "Ingersoll",
    "Jessup",
    "Kellerman",
    "Lindqvist",
    "Marchetti",
    "Northcott",
    "Oyelaran",
    "Pemberton",
    "Quennell",
    "Radcliffe",
    "Strandberg",
    "Underhill",
    "Vantongeren",
    "Whitlock",
    "Yarborough",
    "Zellweger",
    "Abernathy",
    "Calloway",
    "Delacroix",
    "Fenwick",
    "Holloway",
    "Kincaid",
    "Lockhart",
    "Montague",
    "Nettleton",
    "Ormsby",
    "Prescott",
    "Rutherford",
    "Sinclair",
    "Tolliver",
    "Vickery",
    "Wetherby",
    "Yardley",
    "Achterberg",
];

const ORGANISATIONS: [&str; 24] = [
    "Norvale",
    "Quillmark",
    "Brightwater Analytics",
    "Castlerock Partners",
    "Helmsworth",
    "Larkfield Systems",
    "Ostrander",
    "Pellucid Labs",
    "Redfern Logistics",
    "Silverline Dynamics",
    "Tamberlane",
    "Vexington",
    "Aldercrest",
    "Bramblecote",
    "Corvanta",
    "Dunmorrow",
    "Everhollow",
    "Fernvale Holdings",
    "Glenhaven",
    "Hawthorne Ridge",
    "Ironvale",
    "Juniper Crest",
    "Kestrand",
    "Lumenfield",
];

const STREETS: [&str; 16] = [
    "Larkspur",
    "Wrenfield",
    "Copperbeech",
    "Marigold",
    "Elmstead",
    "Foxglove",
    "Harrowgate",
    "Juniper",
    "Kingsmere",
    "Linden",
    "Millbrook",
    "Nightingale",
    "Orchard",
    "Primrose",
    "Quarry",
    "Rosewood",
];

const TOWNS: [&str; 12] = [
    "Ashbury",
    "Brackenford",
    "Coldharbour",
    "Dunwich Vale",
    "Eastmere",
    "Fallowfield",
    "Greywater",
    "Hollinsby",
    "Kettering Cross",
    "Lowerbourne",
    "Marshfield",
    "Northwold",
];

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::normalize::canonical;

    #[test]
    fn stand_ins_keep_the_shape_and_nothing_of_the_value() {
        for (kind, value) in [
            (Kind::CreditCard, "4111 1111 1111 1111"),
            (Kind::Phone, "+44 20 7946 0958"),
            (Kind::NationalId, "078-05-1120"),
            (Kind::Iban, "DE89 3704 0044 0532 0130 00"),
            (Kind::Secret, "sk-proj-abcDEF1234567890abcdef"),
        ] {
            let stand_in = surrogate(kind, value, 1).unwrap().text;
            assert_eq!(stand_in.len(), value.len(), "{kind:?}: {stand_in}");
            assert_ne!(canonical(&stand_in), canonical(value), "{kind:?}");
            let separators = |s: &str| {
                s.chars()
                    .filter(|c| !c.is_alphanumeric())
                    .collect::<String>()
            };
            assert_eq!(
                separators(&stand_in),
                separators(value),
                "{kind:?}: {stand_in}"
            );
        }
        let iban = surrogate(Kind::Iban, "DE89 3704 0044 0532 0130 00", 1).unwrap();
        assert!(iban.text.starts_with("DE"), "{}", iban.text);
        let key = surrogate(Kind::Secret, "ghp_16C7e42F292c6912E7710c838347Ae178B4a", 3).unwrap();
        assert!(key.text.starts_with("ghp_"), "{}", key.text);
    }

    #[test]
    fn a_credential_url_keeps_its_scheme_and_port_and_reads_as_one_a_person_set_up() {
        let stand_in = |value| surrogate(Kind::CredentialUrl, value, 1).unwrap().text;
        let url = stand_in("postgres://admin:hunter2@db.corp.io:5432/app");
        let shape =
            Regex::new(r"^postgres://[a-z]+:[A-Z][a-z]+\d\d@[a-z]+\.example\.net:5432/[a-z]{3}$");
        assert!(shape.unwrap().is_match(&url), "{url}");
        for part in ["admin", "hunter2", "corp", "app"] {
            assert!(!url.contains(part), "{url}");
        }
        // An IPv4 host becomes a private address, an IPv6 one a documentation address; a user
        // left out stays out, and so does a port.
        let url = stand_in("redis://:Rocket47?@203.0.113.9:6379/0");
        let shape = Regex::new(r"^redis://:[A-Z][a-z]+\d\d@10\.\d+\.\d+\.\d+:6379/\d$");
        assert!(shape.unwrap().is_match(&url), "{url}");
        let host = url.split_once('@').unwrap().1.split(':').next().unwrap();
        assert!(host.parse::<std::net::Ipv4Addr>().is_ok(), "{url}");
        let url = stand_in("amqp://felix:Horse35?@[fe80::1]/vhost");
        assert!(
            url.starts_with("amqp://") && url.contains("@[2001:db8::1]/"),
            "{url}"
        );
        assert!(!url.contains("felix") && !url.contains("Horse35"), "{url}");
        // Not user:password@host: reshaped whole, keeping the scheme.
        let value = "https://token@api.corp.io/v1";
        let url = stand_in(value);
        assert!(
            url.starts_with("https://") && url.len() == value.len(),
            "{url}"
        );
        assert!(!url.contains("token") && !url.contains("corp"), "{url}");
    }

    #[test]
    fn a_pem_block_keeps_its_header_lines_only() {
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\n-----END RSA PRIVATE KEY-----";
        let stand_in = surrogate(Kind::Secret, pem, 1).unwrap().text;
        let lines: Vec<&str> = stand_in.lines().collect();
        assert_eq!(lines[0], "-----BEGIN RSA PRIVATE KEY-----");
        assert_eq!(lines[2], "-----END RSA PRIVATE KEY-----");
        assert_ne!(lines[1], "MIIEpAIBAAKCAQEA1234");
    }

    #[test]
    fn people_keep_their_honorific_and_their_parts_restore() {
        let one = surrogate(Kind::Person, "Dr. Ada Lovelace", 1).unwrap();
        assert_eq!(one.text, "Dr. Alvar Ashcombe");
        assert_eq!(
            one.parts,
            [
                ("Alvar".to_string(), "Ada".to_string()),
                ("Ashcombe".to_string(), "Lovelace".to_string())
            ]
        );
        assert_eq!(
            surrogate(Kind::Person, "Ms. Hopper", 2).unwrap().text,
            "Ms. Brennick"
        );
        assert_eq!(surrogate(Kind::Person, "Zyborin", 2).unwrap().text, "Brisa");
        assert_eq!(
            surrogate(Kind::Person, "GRACE HOPPER", 1).unwrap().text,
            "ALVAR ASHCOMBE"
        );
        // Every number gives another name, until the lists run out.
        let names: std::collections::HashSet<String> = (1..=NAMES as u32)
            .map(|n| surrogate(Kind::Person, "Ada Lovelace", n).unwrap().text)
            .collect();
        assert_eq!(names.len(), NAMES);
    }

    #[test]
    fn organisations_keep_their_legal_form() {
        let org = surrogate(Kind::Organization, "SRA Holdings Inc.", 1).unwrap();
        assert_eq!(org.text, "Norvale Inc.");
        assert_eq!(
            org.parts,
            [("Norvale".to_string(), "SRA Holdings".to_string())]
        );
        assert_eq!(
            surrogate(Kind::Organization, "Cloudspyre", 2).unwrap().text,
            "Quillmark"
        );
        // White space after the legal form, even several bytes of it, is no part of the name.
        let spaced = surrogate(Kind::Organization, "Acme SA\u{3000}", 1).unwrap();
        assert_eq!(spaced.text, "Norvale SA");
        assert_eq!(spaced.parts, [("Norvale".to_string(), "Acme".to_string())]);
    }

    #[test]
    fn an_address_restores_however_its_town_is_joined_to_its_street() {
        let value = "8578 Midvangur\nApt. 844\nEgilsstadir 701";
        let address = surrogate(Kind::StreetAddress, value, 1).unwrap();
        let (street, town) = address
            .text
            .split_once('\n')
            .expect("on two lines, as the value");
        let (town, postcode) = town.rsplit_once(' ').expect("a town and a postcode");
        let restores = |spelling: &str| {
            address
                .parts
                .iter()
                .find(|(part, _)| part == spelling)
                .map(|(_, to)| to.as_str())
        };
        for join in [", ", ",\n", " "] {
            for before_code in [" ", ", "] {
                let spelling = format!("{street}{join}{town}{before_code}{postcode}");
                assert_eq!(restores(&spelling), Some(value), "{spelling:?}");
            }
        }
        assert_eq!(restores(street), Some("8578 Midvangur"));
        let one_line = surrogate(Kind::StreetAddress, "5 Main St, Springfield", 1).unwrap();
        assert!(one_line.text.contains(", "), "{}", one_line.text);
        assert!(one_line.parts.iter().any(|(p, _)| p.contains('\n')));
        // A street alone has no town to join, and is restored whole.
        assert_eq!(
            surrogate(Kind::StreetAddress, "5 Main St", 1)
                .unwrap()
                .parts,
            []
        );
    }

    #[test]
    fn stand_ins_are_a_function_of_kind_and_number() {
        for kind in Kind::ALL {
            let a = surrogate(kind, "Value 12, Town", 4);
            assert_eq!(a, surrogate(kind, "Value 12, Town", 4), "{kind:?}");
            if kind == Kind::Denied {
                assert_eq!(a, None);
            } else {
                assert_ne!(a, surrogate(kind, "Value 12, Town", 5), "{kind:?}");
            }
        }
    }
}
