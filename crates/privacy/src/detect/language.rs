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
the a an this that these those i we you he she it they my our your his her their its what when
where which who why how yes no hi hello dear thanks thank please regards best kind sincerely
monday tuesday wednesday thursday friday saturday sunday january february march april may june
july august september october november december street avenue road lane drive court city state
new north south east west united kingdom america english french german spanish chinese
";

static GIVEN: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| GIVEN_NAMES.split_whitespace().collect());
static FAMILY: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| FAMILY_NAMES.split_whitespace().collect());
static NOT: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| NOT_NAMES.split_whitespace().collect());

static HONORIFIC: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sir|Dame|Madam|Herr|Frau|Mme|Mlle|Sr|Sra|Señor|Señora)\.?\s+((?:{CAP})(?:\s+(?:{CAP}))?(?:\s+(?:{CAP}))?)"
    ))
});
static CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?:(?i:my name is|my name's|i am|i'm|this is|name:|named|called|dear|hi|hello|hey|thanks|thank you|regards|cheers|sincerely|best|signed|contact|ask|cc|from|to|patient|employee|customer|client|user|applicant|tenant|mr\.? and mrs\.?|wife|husband|son|daughter|mother|father|brother|sister|friend|colleague|manager|boss|doctor|lawyer|with|by|for|and)[,:]?\s+)((?:{CAP})(?:\s+(?:{CAP}))?(?:\s+(?:{CAP}))?)"
    ))
});
static CAPITALISED_RUN: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?:{CAP})(?:\s+(?:{CAP})){{0,2}}")));
static ORGANIZATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:\p{Lu}[\p{L}&'’.\-]*\s+){0,4}\p{Lu}[\p{L}&'’.\-]*,?\s+(?:Inc\.?|Incorporated|LLC|L\.L\.C\.|LLP|Ltd\.?|Limited|GmbH|AG|KG|SE|S\.A\.|SA|S\.p\.A\.|SpA|SARL|S\.r\.l\.|BV|B\.V\.|NV|N\.V\.|PLC|plc|Pty|Corp\.?|Corporation|Co\.|Company|Group|Holdings|Bank|University|Foundation|Partners|Associates|Technologies|Systems|Labs|Solutions|Consulting|Industries|Enterprises|Hospital|Clinic|Institute)",
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
        r"(?i)\b[\p{L}\-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|laan|straat|gracht|plein|vej|gatan|gata|vägen)\s+\d{1,4}[a-z]?(?:,?\s*\d{4,5}\s+\p{Lu}[\p{L}\-]*)?|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|calle|avenida|via|viale|piazza|corso|rua|largo)\s+(?:(?:de|du|des|la|le|del|della|di|da|do|dos|l')\s*)*[\p{L}'\-]+(?:\s+[\p{L}'\-]+){0,3}?(?:,?\s*\d{4,5}\s+\p{Lu}[\p{L}\-]*)?",
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
        capitalised_run(m.start(), m.as_str(), out);
    }
    for m in ORGANIZATION.find_iter(text) {
        if text[m.end()..].starts_with(char::is_alphanumeric) {
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
fn capitalised_run(offset: usize, run: &str, out: &mut Vec<Finding>) {
    static WORD: LazyLock<Regex> = LazyLock::new(|| re(r"\S+"));
    let words: Vec<(usize, &str)> = WORD
        .find_iter(run)
        .map(|m| (m.start(), m.as_str()))
        .collect();
    let lower: Vec<String> = words.iter().map(|(_, w)| w.to_lowercase()).collect();
    for i in 0..words.len() {
        if NOT.contains(lower[i].as_str()) {
            continue;
        }
        let family = lower[i + 1..].iter().any(|w| FAMILY.contains(w.as_str()));
        let confidence = match (GIVEN.contains(lower[i].as_str()), family) {
            (true, true) => 0.95,
            (true, false) if words.len() - i > 1 => 0.8,
            (true, false) => 0.55,
            (false, true) => 0.7,
            (false, false) => continue,
        };
        let start = offset + words[i].0;
        out.push(Finding::new(
            Kind::Person,
            start..offset + run.len(),
            confidence,
        ));
        return;
    }
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
        assert!(found("The Quick Fox went to Monday Market.").is_empty());
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
        ] {
            assert_eq!(
                found(&format!("Ship it to {address}. Thanks")),
                vec![(Kind::StreetAddress, address.to_string())],
                "{address}"
            );
        }
    }
}
