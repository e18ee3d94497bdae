//! The labelled set: sentences with the spans of private data in them and each span's kind.

use std::ops::Range;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::detect::structured::luhn;
use crate::kind::Kind;
use crate::PrivacyError;

/// One labelled sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub text: String,
    /// Byte spans of private data, with their kinds.
    pub spans: Vec<(Kind, Range<usize>)>,
    /// Which family of templates it came from (`presidio`, `secrets`, `credential_urls`, ...).
    pub source: &'static str,
}

/// A fake person of presidio-evaluator's `FakeNameGenerator.com_3000.csv`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub given: String,
    pub surname: String,
    pub title: String,
    pub street: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country: String,
    pub email: String,
    pub phone: String,
    pub phone_country_code: String,
    pub birthday: String,
    pub occupation: String,
    pub domain: String,
}

/// What the generator takes from the `presidio-evaluator` package.
pub struct PresidioData {
    pub templates: Vec<String>,
    pub identities: Vec<Identity>,
    pub organizations: Vec<String>,
}

/// The files of the `presidio-evaluator` wheel the set is built from.
pub const PRESIDIO_TEMPLATES: &str = "presidio_evaluator/data_generator/raw_data/templates.txt";
pub const PRESIDIO_IDENTITIES: &str =
    "presidio_evaluator/data_generator/raw_data/FakeNameGenerator.com_3000.csv";
pub const PRESIDIO_ORGANIZATIONS: &str =
    "presidio_evaluator/data_generator/raw_data/companies_and_organizations.csv";

impl PresidioData {
    /// Parses the three files' contents.
    pub fn parse(
        templates: &str,
        identities_csv: &str,
        organizations_csv: &str,
    ) -> Result<PresidioData, PrivacyError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            PrivacyError::Data(format!("presidio-evaluator {what}: {e}"))
        };
        let templates = templates
            .lines()
            .map(|l| l.trim().replace("\\n", "\n"))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>();
        let mut reader =
            csv::Reader::from_reader(identities_csv.trim_start_matches('\u{feff}').as_bytes());
        let headers = reader.headers().map_err(|e| bad("identities", &e))?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| bad("identities", &format!("no column {name}")))
        };
        let columns = [
            "GivenName",
            "Surname",
            "Title",
            "StreetAddress",
            "City",
            "State",
            "ZipCode",
            "CountryFull",
            "EmailAddress",
            "TelephoneNumber",
            "TelephoneCountryCode",
            "Birthday",
            "Occupation",
            "Domain",
        ]
        .map(column);
        let mut at = [0usize; 14];
        for (slot, index) in at.iter_mut().zip(columns) {
            *slot = index?;
        }
        let mut identities = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| bad("identities", &e))?;
            let field = |i: usize| record.get(at[i]).unwrap_or_default().trim().to_string();
            identities.push(Identity {
                given: field(0),
                surname: field(1),
                title: field(2),
                street: field(3),
                city: field(4),
                state: field(5),
                zip: field(6),
                country: field(7),
                email: field(8),
                phone: field(9),
                phone_country_code: field(10),
                birthday: field(11),
                occupation: field(12),
                domain: field(13),
            });
        }
        let organizations = organizations_csv
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_matches('"').to_string())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>();
        if templates.is_empty() || identities.is_empty() || organizations.is_empty() {
            return Err(PrivacyError::Data(
                "presidio-evaluator's data files are empty".into(),
            ));
        }
        Ok(PresidioData {
            templates,
            identities,
            organizations,
        })
    }
}

/// A sentence being built: literal text and values, labelled or not.
#[derive(Default)]
struct Builder {
    text: String,
    spans: Vec<(Kind, Range<usize>)>,
}

impl Builder {
    fn text(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn value(&mut self, kind: Kind, value: &str) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(value);
        self.spans.push((kind, start..self.text.len()));
        self
    }

    fn sample(self, source: &'static str) -> Sample {
        Sample {
            text: self.text,
            spans: self.spans,
            source,
        }
    }
}

/// `count` labelled sentences from `seed`: three in five from presidio-evaluator's templates, the
/// others from Tandem's own.
pub fn generate(data: &PresidioData, count: usize, seed: u64) -> Vec<Sample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let sample = match i % 10 {
            0..=5 => presidio(data, &mut rng),
            6 => secret(data, &mut rng),
            7 if i % 20 == 7 => credential_url(data, &mut rng),
            7 => negative(&mut rng),
            8 => address(data, &mut rng),
            _ => tool_message(data, &mut rng),
        };
        samples.push(sample);
    }
    samples
}

/// Fields of presidio-evaluator templates that make up one street address when they follow each
/// other.
const ADDRESS_PARTS: &[&str] = &[
    "building_number",
    "street_name",
    "secondary_address",
    "city",
    "state_abbr",
    "zipcode",
    "postcode",
    "country",
];

fn presidio(data: &PresidioData, rng: &mut ChaCha8Rng) -> Sample {
    let template = data.templates.choose(rng).expect("templates are not empty");
    let person = data
        .identities
        .choose(rng)
        .expect("identities are not empty");
    // Split into literals and `{{field}}`s.
    let mut pieces: Vec<(bool, &str)> = Vec::new();
    let mut rest = template.as_str();
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        pieces.push((false, &rest[..open]));
        pieces.push((true, &rest[open + 2..open + close]));
        rest = &rest[open + close + 2..];
    }
    pieces.push((false, rest));
    let mut b = Builder::default();
    // A run of address parts with a building number and a street name is one street address.
    let mut run_start: Option<(usize, bool, bool)> = None;
    for (i, (is_field, piece)) in pieces.iter().enumerate() {
        if !is_field {
            b.text(piece);
            let joins = piece.chars().all(|c| c.is_whitespace() || c == ',');
            let next_is_part = pieces
                .get(i + 1)
                .is_some_and(|(f, p)| *f && ADDRESS_PARTS.contains(p));
            if !(joins && next_is_part) {
                close_address(&mut b, &mut run_start, piece.len());
            }
            continue;
        }
        if ADDRESS_PARTS.contains(piece) {
            let entry = run_start.get_or_insert((b.text.len(), false, false));
            entry.1 |= *piece == "building_number";
            entry.2 |= *piece == "street_name";
            b.text(&address_part(piece, person, rng));
            continue;
        }
        close_address(&mut b, &mut run_start, 0);
        match field(piece, data, person, rng) {
            (Some(kind), value) => b.value(kind, &value),
            (None, value) => b.text(&value),
        };
    }
    close_address(&mut b, &mut run_start, 0);
    b.sample("presidio")
}

/// Labels the address run that ended `trailing` bytes before the end of the text.
fn close_address(b: &mut Builder, run: &mut Option<(usize, bool, bool)>, trailing: usize) {
    if let Some((start, number, street)) = run.take() {
        let end = b.text.len() - trailing;
        let value = b.text[start..end].trim_end_matches([' ', ',', '\n']);
        if number && street {
            b.spans
                .push((Kind::StreetAddress, start..start + value.len()));
        }
    }
}

fn address_part(part: &str, person: &Identity, rng: &mut ChaCha8Rng) -> String {
    match part {
        "building_number" => rng.random_range(1..9999).to_string(),
        "street_name" => street_name(&person.street),
        "secondary_address" => format!(
            "{} {}",
            ["Apt.", "Suite", "Unit"].choose(rng).expect("not empty"),
            rng.random_range(1..999)
        ),
        "city" => person.city.clone(),
        "state_abbr" => person.state.clone(),
        "country" => person.country.clone(),
        _ => person.zip.clone(),
    }
}

/// "4587 Jerry Dove Drive" and "Avenida Noruega 42" without their numbers.
fn street_name(street: &str) -> String {
    street
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn field(
    name: &str,
    data: &PresidioData,
    person: &Identity,
    rng: &mut ChaCha8Rng,
) -> (Option<Kind>, String) {
    let full = format!("{} {}", person.given, person.surname);
    match name {
        "person" | "name" | "name_female" | "name_male" => (Some(Kind::Person), full),
        "first_name" | "first_name_male" | "first_name_female" | "first_name_nonbinary" => {
            (Some(Kind::Person), person.given.clone())
        }
        "last_name" | "last_name_male" | "last_name_female" => {
            (Some(Kind::Person), person.surname.clone())
        }
        "prefix" | "prefix_male" | "prefix_female" => (None, person.title.clone()),
        "organization" | "company" => (
            Some(Kind::Organization),
            data.organizations.choose(rng).expect("not empty").clone(),
        ),
        "address" | "street_address" => (
            Some(Kind::StreetAddress),
            format!(
                "{}, {}, {} {}",
                person.street, person.city, person.state, person.zip
            ),
        ),
        "credit_card_number" => (Some(Kind::CreditCard), card(rng)),
        "phone_number" => (Some(Kind::Phone), phone(person, rng)),
        "email" => (Some(Kind::Email), person.email.clone()),
        "iban" => (Some(Kind::Iban), iban(rng)),
        "ssn" => (Some(Kind::NationalId), ssn(rng)),
        "ip_address" => (Some(Kind::IpAddress), ip(rng)),
        "date_of_birth" => (Some(Kind::DateOfBirth), birthday(person, rng)),
        "city" => (None, person.city.clone()),
        "country" | "nation_woman" | "nation_plural" | "nationality" => {
            (None, person.country.clone())
        }
        "year" => (None, rng.random_range(1950..2025).to_string()),
        "age" => (None, rng.random_range(18..95).to_string()),
        "job" => (None, person.occupation.clone()),
        "date_time" => (
            None,
            format!(
                "{}-{:02}-{:02} {:02}:{:02}",
                rng.random_range(2000..2025),
                rng.random_range(1..13),
                rng.random_range(1..29),
                rng.random_range(0..24),
                rng.random_range(0..60)
            ),
        ),
        "day_of_week" => (None, "Tuesday".into()),
        "url" => (None, format!("https://www.{}/", person.domain)),
        "us_driver_license" => (None, format!("D{}", rng.random_range(1_000_000..9_999_999))),
        _ => (None, name.to_string()),
    }
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn alnum(rng: &mut ChaCha8Rng, n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| char::from(*CHARS.choose(rng).expect("not empty")))
        .collect()
}

/// A Luhn-valid card number of a real brand's length, written in one of the usual layouts.
fn card(rng: &mut ChaCha8Rng) -> String {
    let (prefix, len) = *[
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("37", 15),
        ("6011", 16),
        ("2221", 16),
    ]
    .choose(rng)
    .expect("not empty");
    let mut number = format!("{prefix}{}", digits(rng, len - prefix.len() - 1));
    let check = (0..10)
        .map(|d| format!("{number}{d}"))
        .find(|n| luhn(n))
        .expect("one check digit fits");
    number = check;
    let sep = *["", " ", "-"].choose(rng).expect("not empty");
    let groups: &[usize] = if len == 15 { &[4, 6, 5] } else { &[4, 4, 4, 4] };
    let mut out = Vec::new();
    let mut at = 0;
    for g in groups {
        out.push(&number[at..at + g]);
        at += g;
    }
    out.join(sep)
}

fn phone(person: &Identity, rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..3) {
        0 => format!("+{} {}", person.phone_country_code, person.phone),
        1 => person.phone.clone(),
        _ => format!(
            "({}{}) {}-{}",
            rng.random_range(2..10),
            digits(rng, 2),
            digits(rng, 3),
            digits(rng, 4)
        ),
    }
}

fn iban(rng: &mut ChaCha8Rng) -> String {
    let (country, bban) = match rng.random_range(0..5) {
        0 => ("DE", digits(rng, 18)),
        1 => (
            "GB",
            format!("{}{}", alnum(rng, 4).to_uppercase(), digits(rng, 14)),
        ),
        2 => ("FR", digits(rng, 23)),
        3 => ("ES", digits(rng, 20)),
        _ => ("NL", format!("{}{}", "ABNA", digits(rng, 10))),
    };
    let bban = bban
        .to_uppercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "0");
    let rearranged: String = format!("{bban}{country}00");
    let mut remainder = 0u32;
    for c in rearranged.chars() {
        let v = c.to_digit(36).expect("alphanumeric");
        remainder = if v < 10 {
            (remainder * 10 + v) % 97
        } else {
            (remainder * 100 + v) % 97
        };
    }
    let iban = format!("{country}{:02}{bban}", 98 - remainder);
    if rng.random_bool(0.5) {
        iban.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        iban
    }
}

fn ssn(rng: &mut ChaCha8Rng) -> String {
    let sep = *["-", " ", "-"].choose(rng).expect("not empty");
    format!(
        "{}{sep}{:02}{sep}{:04}",
        rng.random_range(1..666),
        rng.random_range(1..100),
        rng.random_range(1..10000)
    )
}

fn ip(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.75) {
        format!(
            "{}.{}.{}.{}",
            rng.random_range(1..255),
            rng.random_range(0..256),
            rng.random_range(0..256),
            rng.random_range(1..255)
        )
    } else {
        format!(
            "2001:db8:{:x}::{:x}:{:x}",
            rng.random_range(1..0xffff),
            rng.random_range(1..0xffff),
            rng.random_range(1..0xffff)
        )
    }
}

fn birthday(person: &Identity, rng: &mut ChaCha8Rng) -> String {
    // FakeNameGenerator writes M/D/YYYY.
    let parts: Vec<u32> = person
        .birthday
        .split('/')
        .filter_map(|p| p.parse().ok())
        .collect();
    let [m, d, y] = parts[..] else {
        return person.birthday.clone();
    };
    let month = crate::surrogate::MONTHS[(m as usize).clamp(1, 12) - 1];
    match rng.random_range(0..4) {
        0 => person.birthday.clone(),
        1 => format!("{y}-{m:02}-{d:02}"),
        2 => format!("{month} {d}, {y}"),
        _ => format!("{d:02}.{m:02}.{y}"),
    }
}

fn password(rng: &mut ChaCha8Rng) -> String {
    let words = ["Summer", "Tiger", "Blue", "Horse", "Rocket", "Maple"];
    format!(
        "{}{}{}",
        words.choose(rng).expect("not empty"),
        digits(rng, 2),
        ["!", "#", "$", "&", "?"].choose(rng).expect("not empty")
    )
}

fn secret(data: &PresidioData, rng: &mut ChaCha8Rng) -> Sample {
    let mut b = Builder::default();
    let person = data.identities.choose(rng).expect("not empty");
    let user = person.given.to_lowercase();
    match rng.random_range(0..14) {
        0 => b
            .text("export OPENAI_API_KEY=")
            .value(Kind::Secret, &format!("sk-proj-{}", alnum(rng, 40))),
        1 => b
            .text("Why does ")
            .value(Kind::Secret, &format!("sk-{}", alnum(rng, 48)))
            .text(" return 401?"),
        2 => b
            .text("git clone fails with my token ")
            .value(Kind::Secret, &format!("ghp_{}", alnum(rng, 36))),
        3 => b
            .text("aws_access_key_id = ")
            .value(
                Kind::Secret,
                &format!("AKIA{}", alnum(rng, 16).to_uppercase()),
            )
            .text("\naws_secret_access_key = ")
            .value(
                Kind::Secret,
                &format!("{}/{}", alnum(rng, 20), alnum(rng, 19)),
            ),
        4 => b
            .text("curl -H 'Authorization: Bearer ")
            .value(
                Kind::Secret,
                &format!(
                    "eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}",
                    alnum(rng, 30),
                    alnum(rng, 43)
                ),
            )
            .text("' https://api.example.com/v1/me"),
        5 => b
            .text("{\"api_key\": \"")
            .value(Kind::Secret, &alnum(rng, 32))
            .text("\", \"region\": \"eu-west-1\"}"),
        6 => b
            .text("My password is ")
            .value(Kind::Secret, &password(rng))
            .text(", please reset it."),
        7 => b
            .text("database:\n  user: ")
            .text(&user)
            .text("\n  password: ")
            .value(Kind::Secret, &password(rng))
            .text("\n  port: 5432"),
        8 => b.text("SLACK_BOT_TOKEN=").value(
            Kind::Secret,
            &format!(
                "xoxb-{}-{}-{}",
                digits(rng, 12),
                digits(rng, 13),
                alnum(rng, 24)
            ),
        ),
        9 => b
            .text("Use ")
            .value(Kind::Secret, &format!("glpat-{}", alnum(rng, 20)))
            .text(" for the CI runner."),
        10 => b
            .text("GOOGLE_MAPS_KEY=")
            .value(Kind::Secret, &format!("AIza{}", alnum(rng, 35))),
        11 => {
            let body: Vec<String> = (0..4).map(|_| alnum(rng, 64)).collect();
            b.text("Here is the deploy key:\n").value(
                Kind::Secret,
                &format!(
                    "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
                    body.join("\n")
                ),
            )
        }
        12 => b
            .text("client_secret = \"")
            .value(Kind::Secret, &alnum(rng, 32))
            .text("\""),
        _ => b
            .text("The webhook signing secret ")
            .value(Kind::Secret, &format!("whsec_{}", alnum(rng, 32)))
            .text(" stopped working."),
    };
    b.sample("secrets")
}

fn credential_url(data: &PresidioData, rng: &mut ChaCha8Rng) -> Sample {
    let mut b = Builder::default();
    let person = data.identities.choose(rng).expect("not empty");
    let user = person.given.to_lowercase();
    let pw = password(rng);
    let url = match rng.random_range(0..6) {
        0 => format!("postgres://{user}:{pw}@db.internal:5432/app"),
        1 => format!(
            "mongodb+srv://{user}:{pw}@cluster0.{}.mongodb.net/test",
            alnum(rng, 5).to_lowercase()
        ),
        2 => format!(
            "redis://:{pw}@10.0.{}.{}:6379/0",
            rng.random_range(0..255),
            rng.random_range(1..255)
        ),
        3 => format!(
            "https://{user}:ghp_{}@github.com/acme/app.git",
            alnum(rng, 36)
        ),
        4 => format!("amqp://{user}:{pw}@rabbit.internal:5672/"),
        _ => format!("mysql://root:{pw}@127.0.0.1:3306/shop"),
    };
    match rng.random_range(0..3) {
        0 => b.text("DATABASE_URL=").value(Kind::CredentialUrl, &url),
        1 => b
            .text("It fails to connect with ")
            .value(Kind::CredentialUrl, &url)
            .text(", any idea?"),
        _ => b
            .text("url: \"")
            .value(Kind::CredentialUrl, &url)
            .text("\""),
    };
    b.sample("credential_urls")
}

fn address(data: &PresidioData, rng: &mut ChaCha8Rng) -> Sample {
    let person = data.identities.choose(rng).expect("not empty");
    let street = street_name(&person.street);
    let street = street.split_whitespace().next().unwrap_or("Maple");
    let n = rng.random_range(1..400);
    let zip5 = digits(rng, 5);
    let value = match rng.random_range(0..6) {
        0 => format!(
            "{n} {street} {}, {}, {} {zip5}",
            [
                "Street",
                "Avenue",
                "Road",
                "Lane",
                "Drive",
                "Court",
                "Boulevard"
            ]
            .choose(rng)
            .expect("not empty"),
            person.city,
            ["CA", "NY", "TX", "WA", "IL"]
                .choose(rng)
                .expect("not empty")
        ),
        1 => format!(
            "{n} {street} St, Apt {}, {}",
            rng.random_range(1..40),
            person.city
        ),
        2 => format!("{street}straße {n}, {zip5} {}", person.city),
        3 => format!("{n} rue {street}, {zip5} {}", person.city),
        4 => format!(
            "{n} {street} Road, London SW{} {}AB",
            rng.random_range(1..20),
            rng.random_range(1..9)
        ),
        _ => format!("P.O. Box {n}, {}", person.city),
    };
    let mut b = Builder::default();
    match rng.random_range(0..4) {
        0 => b
            .text("Please ship it to ")
            .value(Kind::StreetAddress, &value)
            .text("."),
        1 => b.text("I live at ").value(Kind::StreetAddress, &value),
        2 => b
            .text("Our office moved to ")
            .value(Kind::StreetAddress, &value)
            .text(" last month."),
        _ => b.text("Deliver to: ").value(Kind::StreetAddress, &value),
    };
    b.sample("addresses")
}

fn tool_message(data: &PresidioData, rng: &mut ChaCha8Rng) -> Sample {
    let person = data.identities.choose(rng).expect("not empty");
    let full = format!("{} {}", person.given, person.surname);
    let mut b = Builder::default();
    match rng.random_range(0..3) {
        0 => b
            .text("{\"customer\": {\"name\": \"")
            .value(Kind::Person, &full)
            .text("\", \"email\": \"")
            .value(Kind::Email, &person.email)
            .text("\", \"phone\": \"")
            .value(Kind::Phone, &phone(person, rng))
            .text("\", \"tier\": \"gold\"}}"),
        1 => b
            .text(&format!(
                "2024-05-{:02} 12:00:01 INFO login ok user=",
                rng.random_range(1..29)
            ))
            .value(Kind::Email, &person.email)
            .text(" ip=")
            .value(Kind::IpAddress, &ip(rng))
            .text(" session=ok"),
        _ => b
            .text("{\"status\": \"paid\", \"card\": \"")
            .value(Kind::CreditCard, &card(rng))
            .text("\", \"iban\": \"")
            .value(Kind::Iban, &iban(rng))
            .text("\", \"amount\": 120.5}"),
    };
    b.sample("tool_messages")
}

/// Text with no private data that looks as if it might have some.
fn negative(rng: &mut ChaCha8Rng) -> Sample {
    let text = match rng.random_range(0..8) {
        0 => format!(
            "Bump the crate to version {}.{}.{}",
            rng.random_range(0..5),
            rng.random_range(0..30),
            rng.random_range(0..20)
        ),
        1 => format!("commit {:040x} fixed the build", rng.random::<u128>()),
        2 => format!("Order #{} shipped on Tuesday.", digits(rng, 6)),
        3 => format!(
            "The meeting is at {}:30 on 2024-05-{:02}.",
            rng.random_range(9..18),
            rng.random_range(1..29)
        ),
        4 => format!(
            "Call get_user_by_id({}) and cache the result.",
            rng.random_range(1..10000)
        ),
        5 => format!(
            "request id {:x}-{:x}",
            rng.random::<u64>(),
            rng.random::<u32>()
        ),
        6 => "The Quick Start Guide explains the Settings Page.".to_string(),
        _ => format!(
            "It took {} ms at p99 with 16 threads.",
            rng.random_range(10..999)
        ),
    };
    Sample {
        text,
        spans: Vec::new(),
        source: "negatives",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> PresidioData {
        PresidioData::parse(
            "My name is {{person}} and my card is {{credit_card_number}}\nSend it to {{building_number}} {{street_name}}, {{city}} please\nI'm from {{country}}\n",
            "\u{feff}Number,Gender,NameSet,Title,GivenName,MiddleInitial,Surname,StreetAddress,City,State,StateFull,ZipCode,Country,CountryFull,EmailAddress,Username,Password,TelephoneNumber,TelephoneCountryCode,MothersMaiden,Birthday,Age,CCType,CCNumber,CVV2,CCExpires,NationalID,Occupation,Company,Domain\n\
             1,female,French,Ms.,Patricia,G,Desrosiers,Avenida Noruega 42,Vila Real,VR,Vila Real,5000-047,PT,Portugal,pd@superrito.com,F,x,21 259 903 5696,351,D,2/28/1956,63,MasterCard,5,874,Mar-22,,Technologist,Formula Gray,lost.pt\n",
            "organization\nAcme NV\n",
        )
        .unwrap()
    }

    #[test]
    fn the_set_is_reproducible_and_its_labels_cover_their_values() {
        let data = data();
        let a = generate(&data, 300, 7);
        assert_eq!(a, generate(&data, 300, 7));
        assert_ne!(a, generate(&data, 300, 8));
        for sample in &a {
            for (_, span) in &sample.spans {
                let value = &sample.text[span.clone()];
                assert!(
                    !value.is_empty() && value.trim() == value,
                    "{value:?} in {sample:?}"
                );
            }
        }
        let joined = a
            .iter()
            .find(|s| s.text.starts_with("Send it to"))
            .expect("the address template was drawn");
        assert_eq!(joined.spans.len(), 1);
        assert_eq!(joined.spans[0].0, Kind::StreetAddress);
        assert!(joined.text[joined.spans[0].1.clone()].ends_with("Vila Real"));
    }

    #[test]
    fn generated_cards_and_ibans_are_valid() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let digits: String = card(&mut rng)
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            assert!(luhn(&digits));
            let compact: String = iban(&mut rng)
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            assert!(crate::detect::structured::mod97(&compact), "{compact}");
        }
    }
}
