//! Recognisers for values with a fixed structure: e-mail addresses, phone numbers, payment cards
//! (Luhn), IBANs (mod-97), national identifiers, IP addresses and dates of birth.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

use super::context;
use super::Finding;
use crate::kind::Kind;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("recogniser patterns are valid")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}",
    )
});
/// Runs of digits with the separators people write in numbers.
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| re(r"\+?\(?\d[\d \-./()]*\d\)?"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b[a-z]{2}\d{2}(?:[ \-]?[a-z0-9]{1,4}){3,9}"));
static NINO: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b[a-ceghj-pr-tw-z][a-ceghj-npr-tw-z] ?\d{2} ?\d{2} ?\d{2} ?[a-d]\b")
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"));
static IPV6_CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)[0-9a-f:]*:[0-9a-f:]*:[0-9a-f:.]*"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    let month = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";
    re(&format!(
        r"(?i)\b(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-](?:\d{{4}}|\d{{2}})|\d{{4}}[/.\-]\d{{1,2}}[/.\-]\d{{1,2}}|\d{{1,2}}(?:st|nd|rd|th)?(?: of)? {month},? \d{{4}}|{month} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}})\b"
    ))
});
static BIRTH_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:born|birth|birthday|dob|d\.o\.b|b\.|geboren|née?)\b|date of birth")
});
static PHONE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text|number|contact|reach|dial|ring)\b",
    )
});
/// The words of `PHONE_WORDS` that name a telephone and nothing else ("number" names ids too).
static TELEPHONE_WORDS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp|sms|dial)\b"));
/// Words that name a national identifier outright (`SSN_WORDS` less the looser "social").
static ID_NUMBER_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:ssn|social security|national (?:id|identity|insurance)|tax id|ni number)\b")
});
/// Words that make the number after them a postcode ("ZIP: 2580-587").
static POSTCODE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:zip|zip code|postcode|post code|postal code|postleitzahl|plz|cep|code postal)\b")
});
static SSN_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:ssn|social security|social|tax id|tin|ni number|national insurance)\b")
});

pub fn find(text: &str, out: &mut Vec<Finding>) {
    for m in EMAIL.find_iter(text) {
        if context::standalone(text, m.start(), m.end()) || text[m.end()..].starts_with('.') {
            out.push(Finding::new(Kind::Email, m.range(), 0.97));
        }
    }
    for m in DIGIT_RUN.find_iter(text) {
        if context::standalone(text, m.start(), m.end()) {
            numbers(text, m.start(), m.as_str(), out);
        }
    }
    for m in IBAN.find_iter(text) {
        iban(text, m.start(), m.as_str(), out);
    }
    for m in NINO.find_iter(text) {
        out.push(Finding::new(Kind::NationalId, m.range(), 0.8));
    }
    for m in IPV4.find_iter(text) {
        let valid = m.as_str().split('.').all(|octet| {
            octet.parse::<u16>().is_ok_and(|n| n <= 255)
                && (octet == "0" || !octet.starts_with('0'))
        });
        if valid && context::standalone(text, m.start(), m.end()) {
            out.push(Finding::new(Kind::IpAddress, m.range(), 0.9));
        }
    }
    for m in IPV6_CANDIDATE.find_iter(text) {
        let candidate = m.as_str().trim_end_matches('.');
        if candidate.len() >= 6
            && candidate.parse::<Ipv6Addr>().is_ok()
            && context::standalone(text, m.start(), m.start() + candidate.len())
        {
            out.push(Finding::new(
                Kind::IpAddress,
                m.start()..m.start() + candidate.len(),
                0.9,
            ));
        }
    }
    for m in DATE.find_iter(text) {
        if context::before(text, m.start(), 48, &BIRTH_WORDS) {
            out.push(Finding::new(Kind::DateOfBirth, m.range(), 0.9));
        } else if could_be_a_birth_date(m.as_str()) && !TIME_AFTER.is_match(&text[m.end()..]) {
            out.push(Finding::new(Kind::DateOfBirth, m.range(), 0.6));
        }
    }
}

/// The calendar year now, by the system clock.
static THIS_YEAR: LazyLock<i32> = LazyLock::new(|| {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    1970 + (days as f64 / 365.2425) as i32
});

/// A time of day right after a date: a timestamp ("2024-05-15 12:00"), an event, not a birthday.
static TIME_AFTER: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:T|,? (?:at )?)\d{1,2}:\d{2}"));

/// Whether a full date (day, month and a four-digit year) is one an adult could have been born on:
/// its year 15 to 120 years back. Without a word such as "born" nearby such a date is still taken
/// for a possible date of birth, a quasi-identifier of whoever the text is about (HIPAA's Safe
/// Harbor removes every date tied to a person); recent and future dates (meetings, deadlines,
/// releases) are left alone.
fn could_be_a_birth_date(date: &str) -> bool {
    static YEAR: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:1[89]|20)\d{2}\b"));
    YEAR.find(date)
        .and_then(|y| y.as_str().parse::<i32>().ok())
        .is_some_and(|year| (*THIS_YEAR - 120..=*THIS_YEAR - 15).contains(&year))
}

/// A run of digits and separators: a card, an SSN or a phone number, by its digits and layout.
fn numbers(text: &str, offset: usize, run: &str, out: &mut Vec<Finding>) {
    // A run may hold more than one number ("4111 1111 1111 1111 12"): try each sub-run of whole
    // groups for a Luhn-valid card number, longest first.
    let groups = groups(run);
    let mut best: Option<(usize, usize)> = None;
    for i in 0..groups.len() {
        for j in (i..groups.len()).rev() {
            let digits: String = run[groups[i].0..groups[j].1]
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            if (13..=19).contains(&digits.len())
                && luhn(&digits)
                && best.is_none_or(|(s, e)| groups[j].1 - groups[i].0 > e - s)
            {
                best = Some((groups[i].0, groups[j].1));
            }
        }
    }
    // A leading `+` makes a number a phone number ("+358 050 007 0204" passes Luhn by chance).
    if let Some((start, end)) = best.filter(|_| !run.starts_with('+')) {
        let digits: String = run[start..end]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let brand = matches!(digits.as_bytes()[0], b'2'..=b'6');
        out.push(Finding::new(
            Kind::CreditCard,
            offset + start..offset + end,
            if brand { 0.97 } else { 0.8 },
        ));
    }
    ssn(text, offset, run, out);
    phone(text, offset, run, out);
}

/// Byte ranges of the digit groups of a run.
fn groups(run: &str) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut start = None;
    for (i, c) in run.char_indices() {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                groups.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        groups.push((s, run.len()));
    }
    groups
}

/// Whether a string of ASCII digits passes the Luhn checksum, as payment card numbers do.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn ssn(text: &str, offset: usize, run: &str, out: &mut Vec<Finding>) {
    static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{3})[ \-.]?(\d{2})[ \-.]?(\d{4})$"));
    let Some(c) = SSN.captures(run) else {
        // A number called a social security or national id number is one, whatever its layout
        // ("His social security number is 26-45-4705"): never read as a phone number.
        let digits = run.chars().filter(char::is_ascii_digit).count();
        if (7..=11).contains(&digits)
            && context::before(text, offset, 40, &ID_NUMBER_WORDS)
            && !context::before(text, offset, 16, &TELEPHONE_WORDS)
        {
            out.push(Finding::new(
                Kind::NationalId,
                offset..offset + run.len(),
                0.95,
            ));
        }
        return;
    };
    let (area, group, serial) = (&c[1], &c[2], &c[3]);
    if area == "000" || area == "666" || area.starts_with('9') || group == "00" || serial == "0000"
    {
        return;
    }
    let separated = run.len() > 9;
    let named = context::before(text, offset, 40, &SSN_WORDS);
    let confidence = match (separated, named) {
        (_, true) => 0.95,
        (true, false) => 0.85,
        (false, false) => 0.4,
    };
    out.push(Finding::new(
        Kind::NationalId,
        offset..offset + run.len(),
        confidence,
    ));
}

fn phone(text: &str, offset: usize, run: &str, out: &mut Vec<Finding>) {
    static NANP: LazyLock<Regex> = LazyLock::new(|| {
        re(r"^(?:\+?1[ \-.]?)?(?:\([2-9]\d{2}\)|[2-9]\d{2})[ \-.]?\d{3}[ \-.]?\d{4}$")
    });
    static NATIONAL: LazyLock<Regex> =
        LazyLock::new(|| re(r"^\(?0\d{1,4}\)?(?:[ \-/.]?\d{2,4}){2,4}$"));
    // A run may end with a closing parenthesis that belongs to the sentence.
    let run = if run.ends_with(')') && !run.contains('(') {
        &run[..run.len() - 1]
    } else {
        run
    };
    let digits = run.chars().filter(char::is_ascii_digit).count();
    let international = run.starts_with('+') || run.starts_with("00");
    let separated = run.chars().any(|c| !c.is_ascii_digit() && c != '+');
    let named = context::before(text, offset, 40, &PHONE_WORDS);
    if !named && !international && context::before(text, offset, 16, &POSTCODE_WORDS) {
        return;
    }
    let confidence = if international && (8..=15).contains(&digits) {
        0.9
    } else if NANP.is_match(run) {
        if separated {
            0.85
        } else {
            0.55
        }
    } else if NATIONAL.is_match(run) && (9..=12).contains(&digits) {
        0.75
    } else if named && (7..=15).contains(&digits) {
        0.6
    } else if grouped(run) {
        0.5
    } else {
        return;
    };
    let confidence = if named {
        f32::min(confidence + 0.1, 0.95)
    } else {
        confidence
    };
    out.push(Finding::new(
        Kind::Phone,
        offset..offset + run.len(),
        confidence,
    ));
}

/// Digits in two or more groups of two to four, with six to twelve digits in all ("776 5737",
/// "28-15-10-60", "(37) 788-063"), or an area code and a subscriber number ("22 498317"): how
/// many countries write national numbers.
fn grouped(run: &str) -> bool {
    static GROUPED: LazyLock<Regex> =
        LazyLock::new(|| re(r"^(?:\(\d{2,4}\)|\d{2,4})(?:[ \-]\d{2,4}){1,4}$"));
    // An area code and a subscriber number of five to eight digits ("22 498317", "030 1234567").
    static AREA_SUBSCRIBER: LazyLock<Regex> =
        LazyLock::new(|| re(r"^(?:\(\d{1,4}\)|\d{1,4})[ \-]\d{5,8}$"));
    static DATE_LIKE: LazyLock<Regex> = LazyLock::new(|| {
        re(r"^(?:(?:19|20)\d{2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:19|20)\d{2})")
    });
    let digits = run.chars().filter(char::is_ascii_digit).count();
    let groups = run.split([' ', '-']).filter(|g| !g.is_empty()).count();
    // Six digits make a phone number only in three groups ("34 13 74"); in two they are as often
    // a postcode ("Sfaxi, 13 2040").
    let laid_out = (GROUPED.is_match(run) && (digits >= 7 || groups >= 3) && digits <= 12)
        || (AREA_SUBSCRIBER.is_match(run) && (8..=12).contains(&digits));
    laid_out && !DATE_LIKE.is_match(run)
}

fn iban(text: &str, offset: usize, candidate: &str, out: &mut Vec<Finding>) {
    // The pattern may run into the next word ("DE89 3704 ... 00 and"): keep the longest prefix of
    // whole groups that passes the checksum.
    let mut ends: Vec<usize> = candidate
        .char_indices()
        .filter(|&(i, c)| (c == ' ' || c == '-') && i > 0)
        .map(|(i, _)| i)
        .collect();
    ends.push(candidate.len());
    for &end in ends.iter().rev() {
        let compact: String = candidate[..end]
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if (15..=34).contains(&compact.len())
            && mod97(&compact)
            && context::standalone(text, offset, offset + end)
        {
            out.push(Finding::new(Kind::Iban, offset..offset + end, 0.97));
            return;
        }
    }
}

/// The IBAN check: country and check digits moved to the end, letters as numbers, mod 97 is 1.
pub fn mod97(iban: &str) -> bool {
    let (head, tail) = iban.split_at(4);
    let mut remainder: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Kind, String)> {
        let mut out = Vec::new();
        find(text, &mut out);
        let kept = super::super::resolve_overlaps(
            out.into_iter().filter(|f| f.confidence >= 0.5).collect(),
        );
        kept.into_iter()
            .map(|f| (f.kind, text[f.span].to_string()))
            .collect()
    }

    fn one(text: &str, kind: Kind, value: &str) {
        assert_eq!(found(text), vec![(kind, value.to_string())], "in {text:?}");
    }

    #[test]
    fn cards_in_every_layout_pass_luhn_and_others_do_not() {
        for card in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111111111111111",
            "5500 0000 0000 0004",
            "3782 822463 10005",
        ] {
            one(&format!("pay with {card}, thanks"), Kind::CreditCard, card);
        }
        one(
            "card 4111 1111 1111 1111 12 times",
            Kind::CreditCard,
            "4111 1111 1111 1111",
        );
        assert!(found("order 4111 1111 1111 1112")
            .iter()
            .all(|(k, _)| *k != Kind::CreditCard));
    }

    #[test]
    fn ibans_any_case_and_grouping_pass_mod97() {
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "de89370400440532013000",
            "GB82-WEST-1234-5698-7654-32",
        ] {
            one(&format!("IBAN {iban} and more"), Kind::Iban, iban);
        }
        assert!(found("DE89 3704 0044 0532 0130 01")
            .iter()
            .all(|(k, _)| *k != Kind::Iban));
    }

    #[test]
    fn phones_international_and_national() {
        for phone in [
            "+44 20 7946 0958",
            "+1 (415) 555-0132",
            "(415) 555-0132",
            "415.555.0132",
            "030 1234 5678",
            "0049 30 12345678",
            "+358 050 007 0204",
            "776 5737",
            "28-15-10-60",
        ] {
            one(&format!("call me at {phone} today"), Kind::Phone, phone);
        }
        one("Office: 22 498317, ask for Ana", Kind::Phone, "22 498317");
        one("tel 34 13 74", Kind::Phone, "34 13 74");
        assert!(found("version 2024 has 12 items, v1.2.3, 12:30, order 123456").is_empty());
        // Postcodes: six digits in two groups, and a number after a postcode word.
        assert!(found("Rue Andalousie, Beni Said, 31 9010").is_empty());
        assert!(found("ZIP: 2580-587").is_empty());
    }

    #[test]
    fn ssns_and_ninos() {
        one("SSN: 123-45-6789.", Kind::NationalId, "123-45-6789");
        one("my ssn is 123456789", Kind::NationalId, "123456789");
        one(
            "His social security number is 26-45-4705",
            Kind::NationalId,
            "26-45-4705",
        );
        one(
            "Gerontology social worker\nPhone:\n(340) 047-6677",
            Kind::Phone,
            "(340) 047-6677",
        );
        one("NI number AB 12 34 56 C", Kind::NationalId, "AB 12 34 56 C");
        assert!(found("id 000-12-3456")
            .iter()
            .all(|(k, _)| *k != Kind::NationalId));
    }

    #[test]
    fn ip_addresses_v4_and_v6() {
        one(
            "host 192.168.10.24 is down",
            Kind::IpAddress,
            "192.168.10.24",
        );
        one(
            "ping 2001:db8::8a2e:370:7334.",
            Kind::IpAddress,
            "2001:db8::8a2e:370:7334",
        );
        assert!(found("999.1.1.1 and std::io::Result and 12:30:45").is_empty());
    }

    #[test]
    fn dates_of_birth_by_a_birth_word_or_an_adults_birth_year() {
        one("born on 14/03/1987 in Ulm", Kind::DateOfBirth, "14/03/1987");
        one("DOB: March 3, 1990", Kind::DateOfBirth, "March 3, 1990");
        assert!(found("the meeting on 14/03/2024").is_empty());
        // A full date an adult could have been born on is a possible date of birth by itself,
        // less sure; a timestamp, a recent date and a bare year are not.
        let mut dated = Vec::new();
        find("It's like that since 1956-10-13.", &mut dated);
        assert_eq!(dated.len(), 1);
        assert_eq!(dated[0].kind, Kind::DateOfBirth);
        assert!((0.5..0.9).contains(&dated[0].confidence));
        let recent = format!("released {}-05-15", *THIS_YEAR - 2);
        assert!(found(&format!(
            "2004-05-15 12:00:01 INFO, 1999-02-03T10:11, {recent}"
        ))
        .is_empty());
        assert!(found("in 1956 and on 12/2012").is_empty());
    }

    #[test]
    fn emails_any_case() {
        one(
            "Mail Jane.Doe@Example.COM.",
            Kind::Email,
            "Jane.Doe@Example.COM",
        );
    }
}
