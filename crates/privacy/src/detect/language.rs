//! Rule-based recognisers for what needs language: names of people and organisations, and street
//! addresses. Names come from honorifics ("Dr. Alvarez"), cue phrases ("my name is", "Dear",
//! "Regards,"), a list of common given names followed by a capitalised word, and legal-form
//! suffixes for organisations ("Acme Corp", "Müller GmbH"); addresses from a house number, street
//! words and a street-type word, with the unit, city, state and postcode that follow.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use super::Finding;
use crate::kind::Kind;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("recogniser patterns are valid")
}

/// A capitalised word, Unicode letters allowed ("Zoë", "O'Neil", "Jean-Luc").
const CAP: &str = r"\p{Lu}[\p{Ll}\p{Lu}'’\-]*\p{Ll}[\p{Ll}'’\-]*";

/// Common given names across English, Spanish, German, French, Italian, Indian, Chinese and
/// Arabic usage; a name from here followed by a capitalised word is taken for a person.
const GIVEN_NAMES: &str = "
james john robert michael william david richard joseph thomas charles christopher daniel matthew
anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward jason
jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin samuel
gregory alexander frank patrick raymond jack dennis jerry tyler aaron jose adam nathan henry douglas
zachary peter kyle ethan walter noah jeremy christian keith roger terry gerald harold sean austin
carl arthur lawrence dylan jesse jordan bryan billy joe bruce gabriel logan albert willie alan juan
wayne elijah randy roy vincent ralph eugene russell bobby mason philip louis mary patricia jennifer
linda elizabeth barbara susan jessica sarah karen lisa nancy betty margaret sandra ashley kimberly
emily donna michelle carol amanda dorothy melissa deborah stephanie rebecca sharon laura cynthia
kathleen amy angela shirley anna brenda pamela emma nicole helen samantha katherine christine debra
rachel carolyn janet catherine maria heather diane ruth julie olivia joyce virginia victoria kelly
lauren christina joan evelyn judith megan andrea cheryl hannah jacqueline martha gloria teresa ann
sara madison frances kathryn janice jean abigail alice judy sophia denise amber doris marilyn
danielle beverly isabella theresa diana natalie brittany charlotte marie kayla alexis lori
carlos luis miguel javier alejandro pablo diego sergio fernando jorge manuel antonio francisco
sofia lucia carmen elena isabel ana laura marta paula valentina camila mateo santiago
hans peter klaus jürgen wolfgang stefan andreas michael thomas frank uwe dieter lukas felix jonas
leon maximilian paul finn elias anna lena lea hannah mia emma sophie marie laura julia katharina
jean pierre michel philippe alain nicolas julien antoine louis françois camille chloé manon léa
marco giuseppe giovanni francesco luca alessandro matteo lorenzo andrea giulia chiara francesca
raj rahul amit priya anjali arjun rohan vikram sanjay deepak pooja neha ravi anil sunil kavya
wei li ming jun hui yan xin lei jing mei chen hao yu ling
mohammed muhammad ahmed ali omar hassan hussein fatima aisha layla yusuf ibrahim khalid zainab
oliver harry george charlie jack freddie alfie archie theo oscar leo isla ava grace amelia lily
ella freya ivy poppy rosie evie ruby florence willow sienna aria zoe chloe ethan liam lucas
";

/// Family names frequent enough that a capitalised word from here after another capitalised word
/// makes a person.
const FAMILY_NAMES: &str = "
smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark
ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams
nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker
cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper
peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez wood james
bennett gray mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster
müller schmidt schneider fischer weber meyer wagner becker schulz hoffmann koch richter klein wolf
dubois durand leroy moreau laurent simon michel lefebvre rossi russo ferrari esposito bianchi
romano colombo ricci wang zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo khan singh
kumar sharma gupta shah ahmed hussain ali rahman o'brien murphy kowalski nowak novak silva santos
oliveira pereira costa almeida tanaka suzuki sato watanabe ito yamamoto nakamura kobayashi
";

/// Capitalised words that start sentences or name things other than people: never a given name.
const NOT_NAMES: &str = "
patient here there number orchestra san santa santo são cape port fort sul al el la le los las des du di da
the a an this that these those i we you he she it they my our your his her their its what when
where which who why how yes no hi hello dear thanks thank please regards best kind sincerely
monday tuesday wednesday thursday friday saturday sunday january february march april may june
july august september october november december street avenue road lane drive court city state
new north south east west united kingdom america english french german spanish chinese
";

/// Given names of the 1990 US census (the `names` package on PyPI), with the list above for
/// other languages; see `data/README.md`.
static GIVEN: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    GIVEN_NAMES
        .split_whitespace()
        .chain(include_str!("../../data/given_names.txt").split_whitespace())
        .filter(|n| !COMMON_WORDS.split_whitespace().any(|w| w == *n))
        .collect()
});
/// The 20,000 most frequent family names of the 1990 US census, with the list above.
static FAMILY: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    FAMILY_NAMES
        .split_whitespace()
        .chain(include_str!("../../data/family_names.txt").split_whitespace())
        .collect()
});
/// Words that are given names too but mostly something else when capitalised at the start of a
/// sentence or in a title.
const COMMON_WORDS: &str = "
will may june april august mark bill grace hope joy rose art don king major page dean earl guy
rich sky summer autumn winter dawn eve faith glory honor love lucky miles rock stone young white
green brown black gray golden long little an in on so do go lay ray sun star ivy lily iris jade
ruby pearl amber crystal diamond storm river forest chance christian justice liberty patience
precious princess queen royal sterling prince duke baron angel heaven memory harmony melody
";
/// Words that make a capitalised run a street, a place or an organisation rather than a person.
const NOT_PERSON_WORDS: &str = "
rua via rue calle avenida avenue street st road rd lane strasse straße platz weg drive way
corporation corp inc group groupinc company co bank club university weekly systems computer
mfg pump holdings financial capital energy partners services solutions technologies republic
city town county island islands mount saint lake country kingdom states united park place
hotel airport station hospital school college institute museum church news times journal
";
static NOT_PERSON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| NOT_PERSON_WORDS.split_whitespace().collect());
static NOT: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| NOT_NAMES.split_whitespace().collect());

static HONORIFIC: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sir|Dame|Madam|Herr|Frau|Mme|Mlle|Sr|Sra|Señor|Señora)\.?[ \t]+((?:{CAP})(?:[ \t]+(?:{CAP}))?(?:[ \t]+(?:{CAP}))?)"
    ))
});
static CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?:(?i:\x22(?:full_?)?name\x22\s*:\s*\x22)|\b(?i:name\s*[:=]|my name is|my name's|i am|i'm|this is|name:|named|called|dear|hi|hello|hey|thanks|thank you|regards|cheers|sincerely|best|signed|contact|ask|cc|from|to|patient|employee|customer|client|user|applicant|tenant|mr\.? and mrs\.?|wife|husband|son|daughter|mother|father|brother|sister|friend|colleague|manager|boss|doctor|lawyer|with|by|for|and|under|add|beneficiary|meet|met|told|asked|called)[,:]?[ \t]+)((?:{CAP})(?:[ \t]+(?:{CAP}))?(?:[ \t]+(?:{CAP}))?)"
    ))
});
static CAPITALISED_RUN: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?:{CAP})(?:[ \t]+(?:{CAP})){{0,2}}")));
static ORGANIZATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:\p{Lu}[\p{L}&'’./\-]*[ \t]+){0,4}\p{Lu}[\p{L}&'’./\-]*,?[ \t]+(?:Inc\.?|Incorporated|LLC|L\.L\.C\.|LLP|Ltd\.?|Limited|GmbH|AG|KG|SE|S\.A\.|SA|S\.p\.A\.|SpA|SARL|S\.r\.l\.|BV|B\.V\.|NV|N\.V\.|PLC|plc|Pty|Corp\.?|Corporation|Co\.?,?[ \t]?Ltd\.?|Co\.|Company|Group|Holdings|Bank|Bancorp|Aktiebolaget|AB|Oy|ASA|University|Foundation|Partners|Associates|Technologies|Systems|Labs|Solutions|Consulting|Industries|Enterprises|Hospital|Clinic|Institute)",
    )
});
/// Street types (USPS suffixes and their common abbreviations) and their European cousins.
const STREET_TYPES: &str = "Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Trl|Close|Crescent|Cres|Row|Alley|Aly|Plaza|Plz|Path|Pike|Loop|Run|Walk|Ridge|Rdg|Heights|Hts|Hill|Hills|Park|Gardens|Gdns|Grove|Grv|Green|Mews|Wharf|Quay|Estate|Estates|Crossing|Xing|Point|Pt|Port|Ports|Station|Sta|Mission|Mount|Mountain|Mtn|Valley|Vly|View|Vista|Village|Vlg|Glen|Harbor|Hbr|Haven|Meadow|Meadows|Mill|Mills|Springs|Spring|Shore|Shores|Summit|Turnpike|Tpke|Expressway|Expy|Freeway|Fwy|Center|Ctr|Junction|Jct|Landing|Lndg|Manor|Mnr|Oval|Pass|Pines|Prairie|Ranch|Rapids|Rest|Route|Rte|Shoal|Skyway|Squares|Stream|Track|Trace|Union|Unions|Via|Well|Wells|Woods|Fork|Forks|Ford|Fords|Forest|Falls|Field|Fields|Flat|Flats|Extension|Ext|Divide|Dale|Dam|Creek|Crk|Cove|Corner|Corners|Common|Commons|Cliff|Cliffs|Canyon|Burg|Brook|Brooks|Branch|Bluff|Bend|Beach|Bay|Island|Isle|Key|Knoll|Lake|Lakes|Light|Lock|Lodge|Motorway";

static US_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b\d{{1,6}}[A-Za-z]?\s+(?:[NSEW]\.?\s+|North\s+|South\s+|East\s+|West\s+)?(?:(?:\p{{Lu}}[\p{{L}}'\-]*|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,4}}(?:{STREET_TYPES})\b\.?(?:\s+(?:NE|NW|SE|SW|N|S|E|W)\b)?(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|Room|Rm|#)\.?\s*#?[A-Za-z0-9\-]+)?(?:,\s*(?:\p{{Lu}}[\p{{L}}'\-]*\s*){{1,3}}(?:,\s*[A-Z]{{2}})?(?:,?\s+\d{{5}}(?:-\d{{4}})?)?)?"
    ))
});
static EUROPEAN_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b[\p{L}\-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|laan|straat|gracht|plein|vej|gatan|gata|vägen)\s+\d{1,4}[a-z]?(?:,?\s*\d{4,5}\s+\p{Lu}[\p{L}\-]*)?|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|calle|avenida|via|viale|piazza|corso|rua|largo)\s+(?:(?:de|du|des|la|le|del|della|di|da|do|dos|l')\s*)*[\p{L}'\-]+(?:\s+[\p{L}'\-]+){0,3}?(?:,?\s*\d{4,5}\s+\p{Lu}[\p{L}\-]*)?",
    )
});
/// "Otakaari 17, HARJAVALTA, SA 29200", "Rua Camargo Penteado 1481, Campinas, SP 13073-360":
/// street words and a house number, a city, an optional region code and a postcode.
static STREET_CITY_POSTCODE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:\d{1,5}[A-Za-z]?[ \t]+(?:[\p{L}.'’/\-]+[ \t]+){0,4}[\p{L}.'’\-]+|\p{Lu}[\p{L}.'’/\-]*(?:[ \t]+(?:\p{Lu}[\p{L}.'’/\-]*|de|da|di|do|dos|das|del|della|delle|dei|la|le|les|van|von|der|den|het|y|e|i)){0,4}[ \t]+\d{1,5}[A-Za-z]?\.?),[ \t]*(?:\p{Lu}[\p{L}.'’\-]*[ \t]*){1,4},?[ \t]*(?:[A-Z]{2,3}[ \t]+)?\d{3,5}(?:[ \-]\d{2,3})?(?:[ \t][A-Z]{2}\b)?",
    )
});
/// An address block over lines: house number and street, then a unit line, then up to two lines
/// of city, country and postcode.
static ADDRESS_BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)\b\d{1,5}[ \t]+[^\n\d]{2,40}\n[ \t>]*(?:Apt\.?|Apartment|Suite|Unit|Fl\.?|Floor)[ \t]*\d+(?:\n[ \t>]*\n?[ \t>]*\p{L}[^\n\d]{0,40}?(?:[ \t]\d[\dA-Z \-]{1,8}?)?[ \t]*$){0,2}",
    )
});
static PO_BOX: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bP\.?\s?O\.?\s+Box\s+\d{1,6}"));
static UK_POSTCODE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{1,2}\d[A-Z\d]?\s+\d[A-Z]{2}\b"));

pub fn find(text: &str, out: &mut Vec<Finding>) {
    for c in HONORIFIC.captures_iter(text) {
        let name = c.get(1).expect("the pattern has one group");
        out.push(Finding::new(Kind::Person, name.range(), 0.9));
    }
    for c in CUE.captures_iter(text) {
        let name = c.get(1).expect("the pattern has one group");
        let words: Vec<&str> = name.as_str().split_whitespace().collect();
        let first = words[0].to_lowercase();
        if NOT.contains(first.as_str()) {
            continue;
        }
        let known = GIVEN.contains(first.as_str())
            || words
                .iter()
                .skip(1)
                .any(|w| FAMILY.contains(w.to_lowercase().as_str()));
        let confidence = match (known, words.len() > 1) {
            (true, _) => 0.85,
            (false, true) => 0.6,
            (false, false) => 0.45,
        };
        out.push(Finding::new(Kind::Person, name.range(), confidence));
    }
    for m in CAPITALISED_RUN.find_iter(text) {
        capitalised_run(text, m.start(), m.as_str(), out);
    }
    for m in ORGANIZATION.find_iter(text) {
        let after = &text[m.end()..];
        // "Paimala, SA 93855" is a city and a state before a postcode.
        if after.starts_with(char::is_alphanumeric)
            || after
                .trim_start_matches([' ', '\t'])
                .starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        let start = skip_leading_articles(m.as_str());
        out.push(Finding::new(
            Kind::Organization,
            m.start() + start..m.end(),
            0.85,
        ));
    }
    for m in US_ADDRESS
        .find_iter(text)
        .chain(EUROPEAN_ADDRESS.find_iter(text))
        .chain(PO_BOX.find_iter(text))
        .chain(STREET_CITY_POSTCODE.find_iter(text))
        .chain(ADDRESS_BLOCK.find_iter(text))
    {
        let mut trimmed = m.as_str().trim_end_matches([',', ' ']);
        // "Terrace." ends a sentence; "St." is an abbreviation.
        if let Some(bare) = trimmed.strip_suffix('.') {
            if bare
                .rsplit(char::is_whitespace)
                .next()
                .is_some_and(|w| w.len() > 4)
            {
                trimmed = bare;
            }
        }
        out.push(Finding::new(
            Kind::StreetAddress,
            m.start()..m.start() + trimmed.len(),
            0.9,
        ));
    }
    for m in UK_POSTCODE.find_iter(text) {
        out.push(Finding::new(Kind::StreetAddress, m.range(), 0.7));
    }
}

/// A run of capitalised words: a person when it starts with a known given name, or when a known
/// family name follows another capitalised word. Words before that ("Yesterday Priya Raman")
/// belong to the sentence.
fn capitalised_run(text: &str, offset: usize, run: &str, out: &mut Vec<Finding>) {
    static WORD: LazyLock<Regex> = LazyLock::new(|| re(r"\S+"));
    static STRONG_VERB: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^,?\s+(?:said|says|began|wrote|writes|shouted|told|asked|replied|answered|lives|lived|works|worked|spent|listed|flew|went|sent|joined|left)\b",
        )
    });
    static WEAK_VERB: LazyLock<Regex> =
        LazyLock::new(|| re(r"^,?\s+(?:is|was|will|would|has|had|called)\b"));
    // "Cerys, can I please speak to your boss?"
    static VOCATIVE: LazyLock<Regex> = LazyLock::new(|| {
        re(r"^,\s+(?i:can|could|please|would|will|i|we|you|do|did|are|have|thank|listen|look)\b")
    });
    // "Fosca's kid": a possessive is a person's (or an organisation's, which is private too).
    let (run, possessive) = match run.strip_suffix("'s").or_else(|| run.strip_suffix("’s")) {
        Some(bare) => (bare, true),
        None => (run, false),
    };
    let end = offset + run.len();
    let after = &text[end..];
    // "Tjalling Harkeswei 125," is a street.
    if after
        .trim_start_matches([' ', '\t'])
        .starts_with(|c: char| c.is_ascii_digit())
    {
        return;
    }
    let words: Vec<(usize, &str)> = WORD
        .find_iter(run)
        .map(|m| (m.start(), m.as_str()))
        .collect();
    let lower: Vec<String> = words.iter().map(|(_, w)| w.to_lowercase()).collect();
    if lower
        .iter()
        .any(|w| NOT_PERSON.contains(w.trim_end_matches('.')))
    {
        return;
    }
    let line_start = text[..offset].trim_end_matches([' ', '\t', '>']).is_empty()
        || text[..offset]
            .trim_end_matches([' ', '\t', '>'])
            .ends_with('\n');
    let line_end = after.is_empty() || after.starts_with(['\n', '\r']);
    let sentence_start = line_start || {
        let before = text[..offset].trim_end();
        before.is_empty() || before.ends_with(['.', '!', '?', ':', '"'])
    };
    for i in 0..words.len() {
        if NOT.contains(lower[i].as_str()) {
            continue;
        }
        let rest = words.len() - i;
        let given = GIVEN.contains(lower[i].as_str());
        let family = lower[i + 1..].iter().any(|w| FAMILY.contains(w.as_str()));
        // An unknown word before a family name ("Hideo Yamanaka"), unless it reads like an
        // English word ("Settings Page").
        let unknown_then_family = i == 0
            && rest == 2
            && FAMILY.contains(lower[i + 1].as_str())
            && ![
                "ing", "s", "ed", "tion", "ment", "ness", "ity", "al", "ive", "ous", "ful", "less",
                "able", "ly",
            ]
            .iter()
            .any(|suffix| lower[i].ends_with(suffix));
        let confidence = if given && family {
            0.95
        } else if given && rest > 1 {
            0.8
        } else if unknown_then_family {
            0.6
        } else if line_start && line_end && i == 0 && (2..=3).contains(&rest) {
            // A name alone on a line: signatures, address blocks.
            0.6
        } else if rest <= 2 && STRONG_VERB.is_match(after)
            || (given || rest == 2) && WEAK_VERB.is_match(after)
        {
            0.6
        } else if given && !sentence_start {
            0.5
        } else if rest == 1 && sentence_start && VOCATIVE.is_match(after) {
            0.6
        } else if rest <= 2 && !sentence_start && possessive {
            0.55
        } else if line_start && after.starts_with(':') && speaks_twice(text, run) {
            // A speaker's label in a transcript.
            0.6
        } else {
            continue;
        };
        let start = offset + words[i].0;
        out.push(Finding::new(Kind::Person, start..end, confidence));
        return;
    }
}

/// Whether two lines of `text` start with `name:`.
fn speaks_twice(text: &str, name: &str) -> bool {
    text.lines()
        .filter(|line| {
            line.trim_start_matches([' ', '\t', '>'])
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .count()
        >= 2
}

/// "The Acme Corp": the article belongs to the sentence, not the name.
fn skip_leading_articles(name: &str) -> usize {
    let mut offset = 0;
    for word in name.split_inclusive(char::is_whitespace) {
        let bare = word.trim().to_lowercase();
        if NOT.contains(bare.as_str()) || bare == "at" {
            offset += word.len();
        } else {
            break;
        }
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Kind, String)> {
        let mut out = Vec::new();
        find(text, &mut out);
        super::super::resolve_overlaps(out.into_iter().filter(|f| f.confidence >= 0.5).collect())
            .into_iter()
            .map(|f| (f.kind, text[f.span].to_string()))
            .collect()
    }

    #[test]
    fn people_from_honorifics_cues_and_name_lists() {
        assert_eq!(
            found("Please ask Dr. Alvarez Quintero."),
            vec![(Kind::Person, "Alvarez Quintero".into())]
        );
        assert_eq!(
            found("Hi, my name is Zoë Okonkwo-Bright and I need help"),
            vec![(Kind::Person, "Zoë Okonkwo-Bright".into())]
        );
        assert_eq!(
            found("Yesterday Priya Raman sent the file."),
            vec![(Kind::Person, "Priya Raman".into())]
        );
        assert_eq!(
            found("The Quick Start Guide explains the Settings Page on Monday."),
            vec![]
        );
        assert_eq!(
            found("Kauê Souza\n\n8578 Midvangur\n Apt. 844\n Egilsstaðir\n\n Iceland 701"),
            vec![
                (Kind::Person, "Kauê Souza".into()),
                (
                    Kind::StreetAddress,
                    "8578 Midvangur\n Apt. 844\n Egilsstaðir\n\n Iceland 701".into()
                )
            ]
        );
        assert_eq!(
            found("Roland is very reliable. During 1975 it grew."),
            vec![(Kind::Person, "Roland".into())]
        );
        assert_eq!(
            found("Cerys, can I speak to your boss? It was for Fosca's kid."),
            vec![
                (Kind::Person, "Cerys".into()),
                (Kind::Person, "Fosca".into())
            ]
        );
        assert_eq!(
            found("Szemere: What a day.\nSzemere: Remember me?"),
            vec![
                (Kind::Person, "Szemere".into()),
                (Kind::Person, "Szemere".into())
            ]
        );
        assert_eq!(
            found(r#"{"name": "Dzhambek Ryzaev", "tier": "gold"}"#),
            vec![(Kind::Person, "Dzhambek Ryzaev".into())]
        );
    }

    #[test]
    fn organisations_from_legal_forms() {
        assert_eq!(
            found("She works at Globex Widgets Ltd. now"),
            vec![(Kind::Organization, "Globex Widgets Ltd.".into())]
        );
        assert_eq!(
            found("the Müller Bau GmbH invoice"),
            vec![(Kind::Organization, "Müller Bau GmbH".into())]
        );
    }

    #[test]
    fn street_addresses_us_and_european() {
        for address in [
            "1600 Amphitheatre Parkway, Mountain View, CA 94043",
            "742 Evergreen Terrace",
            "55 W 14th St, Apt 4B, New York, NY 10011",
            "Hauptstraße 5, 10115 Berlin",
            "12 rue de la Paix, 75002 Paris",
            "PO Box 4411",
            "Otakaari 17, HARJAVALTA, SA 29200",
            "Rua Camargo Penteado 1481, Campinas, SP 13073-360",
        ] {
            assert_eq!(
                found(&format!("Ship it to {address}. Thanks")),
                vec![(Kind::StreetAddress, address.to_string())],
                "{address}"
            );
        }
    }
}
