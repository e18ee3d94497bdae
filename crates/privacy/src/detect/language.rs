//! Rule-based recognisers for what needs language: names of people and organisations, and street
//! addresses. Names come from honorifics ("Dr. Alvarez", "ms. Fortun"), cue phrases ("my name is",
//! "What's your last name?", "Dear", "Regards,"), and given- and family-name lists of the US
//! census and Faker's 86 locales (a given name and a capitalised word; a family name alone
//! mid-sentence when it is no English word). Organisations come from legal forms ("Acme Corp",
//! "ODELIC CO.LTD.", "Müller GmbH"), public bodies ("Ministry of Agriculture") and what a sentence
//! says ("joined Cloudspyre", "Smartprocure is a company"). Addresses come from a house number,
//! street words and a street-type word, with the unit, city, state and postcode that follow.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
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
/// The last line names kinds of data, which a question about a value repeats ("What is the
/// IBAN?"): the name judge took "IBAN" for an organisation, so the question lost its subject.
const NOT_NAMES: &str = "
mr mrs ms mx dr prof mme mlle herr frau
patient here there number orchestra san santa santo são cape port fort sul al el la le los las des du di da
the a an this that these those i we you he she it they my our your his her their its what when
where which who why how yes no hi hello dear thanks thank please regards best kind sincerely
monday tuesday wednesday thursday friday saturday sunday january february march april may june
july august september october november december street avenue road lane drive court city state
new north south east west united kingdom america english french german spanish chinese
iban ssn dob cvv cvc pin url uri ip ipv4 ipv6 api otp jwt pii vat id
";

/// Given names of the 1990 US census (the `names` package on PyPI) and of Faker's 86 locales,
/// with the list above; see `data/README.md`.
static GIVEN: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    GIVEN_NAMES
        .split_whitespace()
        .chain(include_str!("../../data/given_names.txt").split_whitespace())
        .chain(include_str!("../../data/faker_given_names.txt").split_whitespace())
        .filter(|n| !COMMON_WORDS.split_whitespace().any(|w| w == *n))
        .collect()
});
/// The 20,000 most frequent family names of the 1990 US census and those of Faker's locales, with
/// the list above.
static FAMILY: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    FAMILY_NAMES
        .split_whitespace()
        .chain(include_str!("../../data/family_names.txt").split_whitespace())
        .chain(include_str!("../../data/faker_family_names.txt").split_whitespace())
        .collect()
});
/// Ordinary English words (see `data/README.md`): a capitalised one alone is not taken for a
/// family name ("the Settings Page", "Border Force").
static ENGLISH: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/english_words.txt")
        .split_whitespace()
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
orchestra magazine day
";
/// Words that make any capitalised run, even one after a cue such as "for" or "to", an
/// organisation or a place: legal forms and countries (less those that are given names too).
const ORGANIZATION_OR_COUNTRY_WORDS: &str = "
corporation corp inc incorporated company ltd limited plc llc gmbh
afghanistan albania algeria andorra angola argentina armenia australia austria azerbaijan bahamas
bahrain bangladesh barbados belarus belgium belize benin bhutan bolivia bosnia botswana brazil
brunei bulgaria burundi cambodia cameroon canada chile china colombia comoros congo croatia
cuba cyprus czechia denmark djibouti dominica ecuador egypt eritrea estonia eswatini ethiopia fiji
finland france gabon gambia germany ghana greece grenada guatemala guinea guyana haiti
honduras hungary iceland india indonesia iran iraq ireland italy jamaica japan
kazakhstan kenya kiribati korea kosovo kuwait kyrgyzstan laos latvia lebanon lesotho liberia libya
liechtenstein lithuania luxembourg madagascar malawi malaysia maldives mali malta mauritania
mauritius mexico micronesia moldova monaco mongolia montenegro morocco mozambique myanmar namibia
nauru nepal netherlands nicaragua niger nigeria norway oman pakistan palau palestine panama
paraguay peru philippines poland portugal qatar romania russia rwanda samoa senegal serbia
seychelles singapore slovakia slovenia somalia spain sudan suriname sweden switzerland syria
taiwan tajikistan tanzania thailand togo tonga tunisia turkey turkmenistan tuvalu uganda ukraine
uruguay uzbekistan vanuatu vatican venezuela vietnam yemen zambia zimbabwe africa europe asia
";
static NOT_PERSON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    NOT_PERSON_WORDS
        .split_whitespace()
        .chain(ORGANIZATION_OR_COUNTRY_WORDS.split_whitespace())
        .collect()
});
static ORGANIZATION_OR_COUNTRY: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| ORGANIZATION_OR_COUNTRY_WORDS.split_whitespace().collect());
static NOT: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| NOT_NAMES.split_whitespace().collect());

static HONORIFIC: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Professor|Sir|Dame|Madam|Herr|Frau|Mme|Mlle|Sr|Sra|Señor|Señora)\.?|(?:mr|mrs|ms|MR|MRS|MS)\.)[ \t]+((?:{CAP})(?:[ \t]+(?:{CAP}))?(?:[ \t]+(?:{CAP}))?)"
    ))
});
/// A phrase that introduces a person's name. The strong ones ask for or give a name ("my name is",
/// "What's your last name?", "Dear"), so whatever capitalised words follow are taken for one; after
/// a weak one ("with", "told") the words must also look like a name.
static CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?:(?P<strong>(?i:\x22(?:full_?)?name\x22\s*:\s*\x22)|\b(?i:(?:(?:my|your|his|her|their|the)[ \t]+)?(?:(?:last|first|full|maiden|family|given|middle|nick|sur)[ \t]?)?name(?:[ \t]+is|'s|’s)?[ \t]*[:=?]?|call me|dear)[,:]?[ \t]+)|\b(?i:i am|i'm|this is|named|called|hi|hello|hey|thanks|thank you|regards|cheers|sincerely|best|signed|contact|ask|cc|from|to|patient|employee|customer|client|user|applicant|tenant|mr\.? and mrs\.?|wife|husband|son|daughter|kid|mother|father|brother|sister|friend|colleague|manager|boss|doctor|lawyer|with|by|for|and|under|add|beneficiary|meet|met|told|asked|says|said|replied|wrote)[,:]?[ \t]+)(?P<name>(?:{CAP})(?:[ \t]+(?:{CAP}))?(?:[ \t]+(?:{CAP}))?)"
    ))
});
/// A word: a run of characters other than white space.
static WORD: LazyLock<Regex> = LazyLock::new(|| re(r"\S+"));
static CAPITALISED_RUN: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?:{CAP})(?:[ \t]+(?:{CAP})){{0,2}}")));
/// Legal forms and the words that end organisations' names, in their usual casings and in
/// capitals ("ACME CO.LTD."); longer forms come before their prefixes, and each ends at a word
/// boundary, so "Corp" is never read out of "Corporation".
const LEGAL_FORMS: &str = r"(?:(?i:Incorporated|Corporation|Limited|Company|Holdings|Aktiebolaget)|Inc|INC|LLC|L\.L\.C|LLP|L\.P|LP|Ltda|Ltd|LTD|GmbH|GMBH|KGaA|AG|KG|SE|S\.A\.B\.[ \t]de[ \t]C\.V|S\.A\.S|SAS|S\.A|SA|S\.p\.A|SpA|SARL|S\.r\.l|Srl|S\.L|BV|B\.V|NV|N\.V|PLC|[Pp]lc|Pty[ \t]Ltd|Pty|Pte[ \t]Ltd|Sdn[ \t]Bhd|Bhd|Tbk|Corp|CORP|(?:Co|CO)\.?,?[ \t]?(?:Ltd|LTD)|Co|CO|Group|GROUP|Bank|BANK|Bancorp|Bancshares|Oyj|Oy|ASA|A/S|ApS|AB|KK|K\.K|University|Foundation|Partners|Associates|Technologies|Systems|Labs|Solutions|Consulting|Industries|Enterprises|Hospital|Clinic|Institute|Therapeutics|Pharmaceuticals?|Trust|Fund|Agency|REIT|ETF)\b\.?";
static ORGANIZATION: LazyLock<Regex> = LazyLock::new(|| {
    // Capitalised words, numbers ("Blink-182") and a bracketed word ("NBCC (India) Ltd"), joined
    // by connectors ("Transport Corporation of India Limited"), then one or two legal forms.
    let word = r"(?:\p{Lu}[\p{L}\d&'’./\-]*|\d[\p{L}\d\-]*|\(\p{Lu}\p{L}*\))";
    let connector = r"(?:of|and|for|de|del|du|des|la|le|für|und|&)";
    re(&format!(
        r"\b{word}(?:[ \t]+(?:{connector}[ \t]+)?{word}){{0,4}}(?:,?[ \t]+|\b)(?:(?:and|&)[ \t]+(?:Company|Co|Sons|Partners|Associates)\b\.?|{LEGAL_FORMS})(?:[ \t]+{LEGAL_FORMS})?(?:[ \t]\(publ\))?"
    ))
});
/// A security's coupon after its issuer ("Duke Energy Corporation 5.625%"): part of the name.
static COUPON: LazyLock<Regex> = LazyLock::new(|| re(r"^[ \t]+\d{1,2}(?:\.\d{1,4})?%"));
/// A name that ends in two capitals, which may be a state code ("CO", "NV" and "SA" are legal
/// forms too); the comma before it, if any.
static STATE_CODE: LazyLock<Regex> = LazyLock::new(|| re(r"(,?)[ \t]*\b\p{Lu}{2}$"));
static FIVE_DIGITS: LazyLock<Regex> = LazyLock::new(|| re(r"^[ \t]+\d{5}\b"));
/// A legal form glued to the name, as company registers sometimes print it ("SRA HoldingsInc.",
/// "THE SHIMANE BANKLTD.", "baudroieinc."). Glued to capitals or to a lower-case word, the form
/// needs three letters before it and, for "inc", its dot, so "ZINC" and "zinc" stay words.
static GLUED_ORGANIZATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:\p{Lu}[\p{L}\d&'’.\-]*[ \t]+){0,4}(?:\p{Lu}[\p{L}\d&'’.\-]*\p{Ll}(?:Inc|Ltd|LTD|Corp|GmbH|AG|LLC|PLC)\b\.?|\p{Lu}[\p{Lu}\d&\-]{2,}(?:INC\.|Inc\.|LTD\b\.?|Ltd\.|CORP\.|LIMITED\b|Limited\b))|\b\p{Ll}{4,}(?:inc|ltd)\.",
    )
});
/// A brand written in lower case before a legal form ("voestalpine AG", "agilon health inc.",
/// "monday.com Ltd."): one or two words, from the first that is no English word.
static LOWER_CASE_ORGANIZATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:\p{Ll}[\p{L}\d&'’.\-]*[ \t]+)?\p{Ll}[\p{L}\d&'’.\-]*[ \t]+(?:Inc|inc|INC|Ltd|ltd|LTD|AG|GmbH|LLC|[Pp]lc|PLC|[Cc]orporation|S\.A|N\.V)\b\.?",
    )
});
/// Public bodies named by what they are first ("Ministry of Agriculture", "Bank of Ireland").
static ORGANIZATION_BY_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:Ministry|Department|Bank|University|Council|Embassy|Bureau|Office|Commission|Agency)[ \t]+(?i:of|for)[ \t]+(?:the[ \t]+)?(?:{CAP})(?:[ \t]+(?:and[ \t]+|&[ \t]+)?(?:{CAP})){{0,3}}"
    ))
});
/// An organisation without a legal form, named where a sentence says what it is: after "works
/// at", "joined" or "CEO of", or before "is a company".
static ORGANIZATION_CUE: LazyLock<Regex> = LazyLock::new(|| {
    let name = r"\p{Lu}[\p{L}\d&'’.\-]*(?:[ \t]+(?:&[ \t]+|and[ \t]+|of[ \t]+)?\p{Lu}[\p{L}\d&'’.\-]*){0,4}";
    re(&format!(
        r"\b(?i:work(?:s|ed|ing)?[ \t]+(?:at|for)|employed[ \t]+(?:at|by)|joined|(?:ceo|cto|cfo|coo|founder|co-founder|president|chairman|director|head|employees?|staff)[ \t]+(?:of|at))[ \t]+(?:the[ \t]+)?(?P<after>{name})|(?P<before>{name})[ \t]+(?:is|was)[ \t]+an?[ \t]+(?:[\p{{L}}\-]+[ \t]+){{0,4}}(?:company|agency|bank|firm|start-?up|organi[sz]ation|non-?profit|charity|corporation|manufacturer|retailer|provider|supplier|brand|business|501\(c\)\(?3\)?)\b"
    ))
});
/// Street types (USPS suffixes and their common abbreviations) and their European cousins.
const STREET_TYPES: &str = "Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Trl|Close|Crescent|Cres|Row|Alley|Aly|Plaza|Plz|Path|Pike|Loop|Run|Walk|Ridge|Rdg|Heights|Hts|Hill|Hills|Park|Gardens|Gdns|Grove|Grv|Green|Mews|Wharf|Quay|Estate|Estates|Crossing|Xing|Point|Pt|Port|Ports|Station|Sta|Mission|Mount|Mountain|Mtn|Valley|Vly|View|Vista|Village|Vlg|Glen|Harbor|Hbr|Haven|Meadow|Meadows|Mill|Mills|Springs|Spring|Shore|Shores|Summit|Turnpike|Tpke|Expressway|Expy|Freeway|Fwy|Center|Ctr|Junction|Jct|Landing|Lndg|Manor|Mnr|Oval|Pass|Pines|Prairie|Ranch|Rapids|Rest|Route|Rte|Shoal|Skyway|Squares|Stream|Track|Trace|Union|Unions|Via|Well|Wells|Woods|Fork|Forks|Ford|Fords|Forest|Falls|Field|Fields|Flat|Flats|Extension|Ext|Divide|Dale|Dam|Creek|Crk|Cove|Corner|Corners|Common|Commons|Cliff|Cliffs|Canyon|Burg|Brook|Brooks|Branch|Bluff|Bend|Beach|Bay|Island|Isle|Key|Knoll|Lake|Lakes|Light|Lock|Lodge|Motorway";

static US_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b\d{{1,6}}[A-Za-z]?\s+(?:[NSEW]\.?\s+|North\s+|South\s+|East\s+|West\s+)?(?:(?:\p{{Lu}}[\p{{L}}'\-]*|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,4}}(?:{STREET_TYPES})\b\.?(?:\s+(?:NE|NW|SE|SW|N|S|E|W)\b)?(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|Room|Rm|#)\.?\s*#?[A-Za-z0-9\-]+)?(?:,\s*{CITY}(?:,\s*[A-Z]{{2}}\b)?(?:,?\s+(?:\d{{5}}(?:-\d{{4}})?|[A-Z]{{1,2}}\d[A-Z\d]?\s\d[A-Z]{{2}}|[A-Z]\d[A-Z]\s?\d[A-Z]\d)\b)?)?"
    ))
});
static EUROPEAN_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b[\p{L}\-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|laan|straat|gracht|plein|vej|gatan|gata|vägen)\s+\d{1,4}[a-z]?(?:,?\s*\d{4,5}\s+\p{Lu}[\p{L}\-]*(?:[ \t]+\p{Lu}[\p{L}\-]*){0,3})?|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|calle|avenida|via|viale|piazza|corso|rua|largo)\s+(?:(?:de|du|des|la|le|del|della|di|da|do|dos|l')\s*)*[\p{L}'\-]+(?:\s+[\p{L}'\-]+){0,3}?(?:,?\s*\d{4,5}\s+\p{Lu}[\p{L}\-]*(?:[ \t]+(?:(?:de|del|la|le|du|des|sur)[ \t]+){0,2}\p{Lu}[\p{L}\-]*){0,4})?",
    )
});
/// A city's name: capitalised words, with up to two connectors between two of them ("Kostelec nad
/// Orlicí", "Caxias do Sul"), never at its end ("Grandmetz last month" is no "Grandmetz la").
const CITY: &str = r"\p{Lu}[\p{L}'’\-]*(?:[ \t]+(?:(?:nad|pod|u|v|w|de|del|la|le|les|do|da|di|dos|das|y|am|an|im|sur|en)[ \t]+){0,2}\p{Lu}[\p{L}'’\-]*){0,4}";
/// Lower-case words inside a street's name: connectors ("Rua da Praia") and street words
/// ("Opplands gate", "Erzsébet tér", "Gosposka ulica"). English words before a street ("return
/// to", "it is in") belong to the sentence; these never do, even where English has them too.
const STREET_JOINERS: &str = "
de da di do dos das del della delle dei la le les van von der den het y e i ob
utca út útja u. fasor körút köz sor tér rakpart rkp. põik tee vei veien veg vegen vej gade gate
gaten gata gatan väg vägen weg gasse straat laan ulica ulice cesta trg tie katu kuja polku plass
plads torg terrasse náměstí nábřeží třída ul. al. pl. os.
";
static STREET_JOINER: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| STREET_JOINERS.split_whitespace().collect());
/// "Otakaari 17, HARJAVALTA, SA 29200", "Rua Camargo Penteado 1481, Campinas, SP 13073-360",
/// "ul. Północna 73, Suwałki,  16-430", "Trg revolucije 1, Cankova,  9261", "Gosposka ulica 58,
/// Novo mesto,  8001", "33 Rue Ibn Al Jazzar, Cite Presidentielle, 71 2130": a street and a house
/// number, a city, an optional region code and a postcode, taken whole (Canada's "J8H 2J7" too).
/// The postcode anchors the match, so the street and the city may hold any words (a city's
/// "mesto", a "∆" standing in for a Greek delta); [`street_start`] then leaves out the sentence's
/// English words that a street starting at a capital took in.
static STREET_CITY_POSTCODE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:\d{1,5}[A-Za-z]?[ \t]+(?:[\p{L}.'’/\-]+[ \t]+){0,4}[\p{L}.'’\-]+|(?:(?:ul|al|pl|os)\.[ \t]+|C/[ \t]*|R[ \t]+)?\p{Lu}[\p{L}.'’/\-]*(?:[ \t]+[\p{L}.'’/\-]+){0,4}[ \t]+\d{1,5}[A-Za-z]?\.?),[ \t]*\p{Lu}[^\s,]*(?:[ \t]+[^\s,]+){0,4}?,?[ \t]*(?:[A-Z]{1,3}[ \t]+)?(?:\d{2,5}(?:[ \-]\d{2,4})?\b(?:[ \t][A-Z]{2}\b)?|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d\b)",
    )
});
/// Street words of European languages, which end a street's name or are glued to it.
const STREET_WORDS: &str = "strasse|straße|str|gasse|weg|vej|veien|vei|vegen|gata|gatan|vägen|polku|tie|katu|kuja|laan|straat|gracht|plein|kade|ulica|utca|plass|torg|aleja|ulice|trg|cesta";
/// A house number and a street whose name ends in a street word of a European language
/// ("8305 Frørup Byvej", "5710 Marsveien, OSLO", "989 Gosposka ulica"), with the city after it.
/// Glued to the name, the street word is in lower case: "STRG" is no "S trg".
static NUMBER_STREET_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b\d{{1,5}}[ \t]+(?:(?:ul|al)\.[ \t]+\p{{Lu}}[\p{{L}}'’\-]*|(?:[\p{{L}}.'’/\-]+[ \t]+){{0,3}}(?:[\p{{L}}'’\-]*(?:{STREET_WORDS})|(?i:{STREET_WORDS}))\b\.?)(?:,[ \t]*{CITY})?"
    ))
});
/// Where a sentence says an address follows ("lives at", "his address:", "is at"): a house
/// number, capitalised street words and the city after a comma.
static ADDRESS_AFTER_CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?i:address(?:[ \t]+is)?:|lives?[ \t]+at|located[ \t]+at|is[ \t]+at|sent[ \t]+to|ship(?:ped)?[ \t]+(?:it[ \t]+)?to|deliver(?:ed)?[ \t]+(?:it[ \t]+)?to|moved[ \t]+to|off[ \t]+at)[ \t]+(?P<address>\d{{1,5}}[ \t]+\p{{Lu}}[\p{{L}}'’\-]*(?:\.\p{{L}}+)*(?:[ \t]+[\p{{L}}'’\-]+(?:\.\p{{L}}+)*){{0,4}}?(?:,[ \t]*{CITY})?)(?:[.,!?;:]|[ \t]+(?:St\b|on|in|and|for|at|by|to|from|last|next|after|before)|[ \t]*$|\n)"
    ))
});
/// An address block over lines: house number and street, then a unit line, then up to two lines
/// of city, country and postcode. A line may start with a bullet, a quote mark or other symbols
/// (`> `, `• `, an emoji).
static ADDRESS_BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)\b\d{1,5}[ \t]+[^\n\d]{2,40}\n[^\p{L}\p{N}\n]*(?:Apt\.?|Apartment|Suite|Unit|Fl\.?|Floor)[ \t]*\d+(?:\n[^\p{L}\p{N}\n]*\n?[^\p{L}\p{N}\n]*\p{L}[^\n\d]{0,40}?(?:[ \t][\dA-Z][\dA-Z \-]{1,8}?)?[ \t]*$){0,2}",
    )
});
/// The same with the unit on the street's line, or before the house number ("Suite 199 5606 Via
/// Bernardino Rota"), and short lines of city, region and postcode after it.
static ADDRESS_UNIT_BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:\d{1,5}[ \t]+[^\n\d]{2,40}?[ \t]+(?:Apt\.?|Apartment|Suite|Unit)[ \t]*\d+|(?:Apt\.?|Apartment|Suite|Unit)[ \t]+\d+[ \t]+\d{1,5}[ \t]+[^\n\d]{2,40})(?:\n[^\p{L}\p{N}\n]*[\p{L}\d][\p{L}\d .'’\-]{0,30})*(?:\n[ \t]*\n[^\p{L}\p{N}\n]*[\p{L}\d][\p{L}\d .'’\-]{0,30})*",
    )
});
/// "is at 5 PM": a time, not a house number.
static TIME_OF_DAY: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\d{1,2}[ \t]+(?i:am|pm|a\.m\.|p\.m\.|o'clock)\b"));
static PO_BOX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?i:P\.?\s?O\.?\s+Box)\s+\d{{1,6}}(?:,[ \t]*{CITY})?"
    ))
});
static UK_POSTCODE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{1,2}\d[A-Z\d]?\s+\d[A-Z]{2}\b"));

pub fn find(text: &str, out: &mut Vec<Finding>) {
    people(text, out);
    organisations(text, out);
    organisations_beside_people(text, out);
    addresses(text, out);
}

fn people(text: &str, out: &mut Vec<Finding>) {
    for c in HONORIFIC.captures_iter(text) {
        let name = c.get(1).expect("the pattern has one group");
        out.push(Finding::new(
            Kind::Person,
            before_unit(text, name.range()),
            0.9,
        ));
    }
    for c in CUE.captures_iter(text) {
        let name = c.name("name").expect("the pattern has a name group");
        let words: Vec<&str> = name.as_str().split_whitespace().collect();
        let first = words[0].to_lowercase();
        // "I work for Chemed Corporation", "she moved to France".
        if NOT.contains(first.as_str())
            || words
                .iter()
                .any(|w| ORGANIZATION_OR_COUNTRY.contains(bare_lowercase(w).as_str()))
        {
            continue;
        }
        let known = GIVEN.contains(first.as_str())
            || words
                .iter()
                .skip(1)
                .any(|w| FAMILY.contains(w.to_lowercase().as_str()));
        let confidence = match (known || c.name("strong").is_some(), words.len() > 1) {
            (true, _) => 0.85,
            (false, true) => 0.6,
            (false, false) => 0.45,
        };
        out.push(Finding::new(
            Kind::Person,
            before_unit(text, name.range()),
            confidence,
        ));
    }
    for m in CAPITALISED_RUN.find_iter(text) {
        capitalised_run(text, m.start(), m.as_str(), out);
    }
}

/// "Paimala, SA 93855", "Las Vegas NV 89101": a city and a state code before a postcode, which
/// read like a name and a legal form. Without the comma the number must be five digits, so
/// "Deutsche Bank AG 2019" stays a bank.
fn city_and_state(name: &str, after: &str) -> bool {
    let Some(code) = STATE_CODE.captures(name) else {
        return false;
    };
    let number = after
        .trim_start_matches([' ', '\t'])
        .starts_with(|c: char| c.is_ascii_digit());
    !code[1].is_empty() && number || FIVE_DIGITS.is_match(after)
}

/// Organisations, and a person named before one ("Nikifor Zielinski of Staples Inc").
fn organisations(text: &str, out: &mut Vec<Finding>) {
    for m in ORGANIZATION.find_iter(text) {
        let after = &text[m.end()..];
        if after.starts_with(char::is_alphanumeric) || city_and_state(m.as_str(), after) {
            continue;
        }
        let end = m.end() + COUPON.find(after).map_or(0, |c| c.end());
        let mut start = skip_leading_articles(m.as_str());
        if let Some((person, org)) = person_before_connector(&m.as_str()[start..]) {
            out.push(Finding::new(
                Kind::Person,
                m.start() + start..m.start() + start + person,
                0.6,
            ));
            start += org;
        }
        out.push(Finding::new(
            Kind::Organization,
            m.start() + start..end,
            0.85,
        ));
    }
    for m in GLUED_ORGANIZATION
        .find_iter(text)
        .chain(ORGANIZATION_BY_PREFIX.find_iter(text))
    {
        let start = skip_leading_articles(m.as_str());
        out.push(Finding::new(
            Kind::Organization,
            m.start() + start..m.end(),
            0.8,
        ));
    }
    for m in LOWER_CASE_ORGANIZATION.find_iter(text) {
        let words: Vec<_> = WORD.find_iter(m.as_str()).collect();
        // The last word is the legal form; the name starts at the first word before it that is no
        // English word ("at tsukuruba inc.", but not "a multinational corporation").
        let brand = words[..words.len() - 1].iter().find(|w| {
            let word = w.as_str().to_lowercase();
            !ENGLISH.contains(word.as_str()) && !NOT.contains(word.as_str())
        });
        if let Some(brand) = brand {
            out.push(Finding::new(
                Kind::Organization,
                m.start() + brand.start()..m.end(),
                0.7,
            ));
        }
    }
    for c in ORGANIZATION_CUE.captures_iter(text) {
        let name = c
            .name("after")
            .or_else(|| c.name("before"))
            .expect("one of the two names matched");
        let words: Vec<&str> = name.as_str().split_whitespace().collect();
        let first = words[0].to_lowercase();
        // "joined Priya Raman", "This is a company": a person, or no name at all.
        if NOT.contains(first.as_str()) || GIVEN.contains(first.as_str()) && words.len() <= 3 {
            continue;
        }
        out.push(Finding::new(Kind::Organization, name.range(), 0.6));
    }
}

fn addresses(text: &str, out: &mut Vec<Finding>) {
    let found = US_ADDRESS
        .find_iter(text)
        .chain(EUROPEAN_ADDRESS.find_iter(text))
        .chain(PO_BOX.find_iter(text))
        .chain(NUMBER_STREET_WORD.find_iter(text))
        .chain(ADDRESS_BLOCK.find_iter(text))
        .chain(ADDRESS_UNIT_BLOCK.find_iter(text))
        .chain(
            ADDRESS_AFTER_CUE
                .captures_iter(text)
                .filter_map(|c| c.name("address"))
                .filter(|m| !TIME_OF_DAY.is_match(m.as_str())),
        )
        .map(|m| m.range())
        .chain(
            STREET_CITY_POSTCODE
                .find_iter(text)
                .map(|m| street_start(m.as_str()) + m.start()..m.end()),
        );
    for range in found {
        let mut trimmed = text[range.clone()].trim_end_matches([',', ' ']);
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
            range.start..range.start + trimmed.len(),
            0.9,
        ));
    }
    for m in UK_POSTCODE.find_iter(text) {
        out.push(Finding::new(Kind::StreetAddress, m.range(), 0.7));
    }
}

/// Where the street of `address` starts: after the last lower-case English word before the house
/// number that is no street word ("Please return to Bem rakpart 81., ..." starts at "Bem").
fn street_start(address: &str) -> usize {
    let number = address.find(|c: char| c.is_ascii_digit()).unwrap_or(0);
    let cut = WORD
        .find_iter(&address[..number])
        .filter(|w| {
            let word = w.as_str();
            word.starts_with(char::is_lowercase)
                && ENGLISH.contains(word.trim_end_matches([',', '.']))
                && !STREET_JOINER.contains(word)
        })
        .last()
        .map_or(0, |w| w.end());
    cut + address[cut..].len() - address[cut..].trim_start().len()
}

/// A run of capitalised words: a person when it starts with a known given name, or when a known
/// family name follows another capitalised word. Words before that ("Yesterday Priya Raman")
/// belong to the sentence.
fn capitalised_run(text: &str, offset: usize, run: &str, out: &mut Vec<Finding>) {
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
    let (run, possessive) = match without_possessive(run) {
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
    if words.iter().any(|(_, w)| names_no_person(w)) {
        return;
    }
    let line_start = starts_line(text, offset);
    let line_end = after.is_empty() || after.starts_with(['\n', '\r']);
    let sentence_start = starts_sentence(text, offset);
    for i in 0..words.len() {
        if NOT.contains(lower[i].as_str()) {
            continue;
        }
        let rest = words.len() - i;
        let given = GIVEN.contains(lower[i].as_str());
        let family = lower[i + 1..].iter().any(|w| FAMILY.contains(w.as_str()));
        // "Knutsen" alone: a known family name that is no English word, and not after a
        // preposition of place ("from Madrid").
        let family_alone = rest == 1
            && FAMILY.contains(lower[i].as_str())
            && !ENGLISH.contains(lower[i].as_str())
            && !after_place_preposition(&text[..offset + words[i].0]);
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
            || (given || family_alone || rest == 2) && WEAK_VERB.is_match(after)
        {
            0.6
        } else if (given || family_alone) && !sentence_start {
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
        let span = before_unit(text, start..end);
        if !span.is_empty() {
            out.push(Finding::new(Kind::Person, span, confidence));
        }
        return;
    }
}

/// A name's words up to an apartment or suite that follows it on the line ("Mr. Alexander
/// Tokaryev Apt. 527 2169 Salontie"): the unit belongs to the address. A possessive ends the name
/// too ("from Megan Swift's Cautionary Tales" names Megan Swift).
fn before_unit(text: &str, name: Range<usize>) -> Range<usize> {
    let words = &text[name.clone()];
    let mut end = name.start;
    for word in words.split_inclusive([' ', '\t']) {
        if ["Apt", "Suite", "Unit", "Apartment", "Floor"].contains(&word.trim()) {
            break;
        }
        if let Some(owner) = without_possessive(word.trim_end()) {
            end += owner.len();
            break;
        }
        end += word.len();
    }
    name.start..name.start + text[name.start..end].trim_end().len()
}

/// Whether `before` ends with a preposition that places usually follow.
fn after_place_preposition(before: &str) -> bool {
    let last = before
        .trim_end()
        .rsplit([' ', '\t', '\n'])
        .next()
        .unwrap_or("");
    ["in", "from", "at", "near", "to", "de", "del", "da", "do"]
        .contains(&last.to_lowercase().as_str())
}

/// Runs of capitalised words (or words in capitals) that no rule explained, for a local model to
/// judge ([`crate::names::NameJudge`]): outside every finding, trimmed of plain words at either
/// end, and holding a word that is not plain. A plain word is an ordinary English word, a word
/// that starts sentences or names things other than people ("Monday", "Street", "Corp") or a
/// country; an ordinary word capitalised mid-sentence is not plain ([`proper_mid_sentence`]).
/// "Ask Okonkwo about it" gives "Okonkwo"; "Monday in Norway" gives nothing; "Lily had given Lily
/// his address" gives the second "Lily".
///
/// `findings` are disjoint and in order of position, as [`super::Detector::detect`] gives them.
/// Organisations named beside a person the rules found: "Tim Cook of Apple", "Apple's Tim
/// Cook". The word may be a place instead ("Anna of Cleves"), which is as well kept from leaving;
/// a country, or a word that names nothing ("The", "This"), is left alone, and so is a word
/// another finding already covers.
fn organisations_beside_people(text: &str, out: &mut Vec<Finding>) {
    const NAME: &str = r"\p{Lu}[\p{L}\d&'’.\-]*(?:[ \t]+\p{Lu}[\p{L}\d&'’.\-]*){0,4}";
    static AFTER: LazyLock<Regex> =
        LazyLock::new(|| re(&format!(r"^[ \t]+of[ \t]+(?:the[ \t]+)?(?P<org>{NAME})")));
    static BEFORE: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"(?P<org>{NAME})['’]s[ \t]+$")));
    let people: Vec<Range<usize>> = out
        .iter()
        .filter(|f| f.kind == Kind::Person)
        .map(|f| f.span.clone())
        .collect();
    // Whether a span overlaps a finding, in a search rather than a scan (a long text holds many
    // people): the findings so far sorted by start, with the furthest end reached up to each,
    // and the organisations added here, disjoint, by start.
    let mut taken: Vec<(usize, usize)> = out.iter().map(|f| (f.span.start, f.span.end)).collect();
    taken.sort_unstable();
    let reach: Vec<usize> = taken
        .iter()
        .scan(0, |reach, &(_, end)| {
            *reach = end.max(*reach);
            Some(*reach)
        })
        .collect();
    let mut added: BTreeMap<usize, usize> = BTreeMap::new();
    let overlaps = |span: &Range<usize>, added: &BTreeMap<usize, usize>| {
        let before = taken.partition_point(|&(start, _)| start < span.end);
        before.checked_sub(1).is_some_and(|i| reach[i] > span.start)
            || added
                .range(..span.end)
                .next_back()
                .is_some_and(|(_, &end)| end > span.start)
    };
    for person in people {
        let after = AFTER
            .captures(&text[person.end..])
            .and_then(|c| c.name("org"))
            .map(|m| person.end + m.start()..person.end + m.end());
        let before = BEFORE
            .captures(&text[..person.start])
            .and_then(|c| c.name("org"))
            .map(|m| m.range());
        for org in after.into_iter().chain(before) {
            // "Cloudspyre." ends a sentence.
            let value = text[org.clone()].trim_end_matches(['.', ',']);
            let org = org.start..org.start + value.len();
            let first = bare_lowercase(value.split_whitespace().next().unwrap_or_default());
            if NOT.contains(first.as_str())
                || ORGANIZATION_OR_COUNTRY.contains(first.as_str())
                || overlaps(&org, &added)
            {
                continue;
            }
            added.insert(org.start, org.end);
            out.push(Finding::new(Kind::Organization, org, 0.6));
        }
    }
}

pub(crate) fn unexplained_capitalised(text: &str, findings: &[Finding]) -> Vec<Range<usize>> {
    let plain = |word: &str| {
        let word = bare_lowercase(word);
        let word = without_possessive(&word).unwrap_or(&word);
        word.split(['\'', '’', '-'])
            .filter(|part| !part.is_empty())
            .all(|part| {
                part.chars().count() < 2
                    || ENGLISH.contains(part)
                    || NOT.contains(part)
                    || NOT_PERSON.contains(part)
            })
    };
    // Names in capitals ("SIRPUR PAPER INR10", "DEBFLEX"): words of two or more capitals and
    // digits, not starting with a digit.
    static UPPER_RUN: LazyLock<Regex> =
        LazyLock::new(|| re(r"\b\p{Lu}[\p{Lu}\d&'’\-]+\b(?:[ \t]+\p{Lu}[\p{Lu}\d&'’\-]+\b){0,3}"));
    let mut out = Vec::new();
    let mut runs: Vec<regex::Match> = CAPITALISED_RUN
        .find_iter(text)
        .chain(UPPER_RUN.find_iter(text))
        .collect();
    runs.sort_by_key(|m| m.start());
    for run in runs {
        // Disjoint and in order, the finding that may overlap the run is the last to start
        // before its end (a search, so that a long text of many findings stays quick).
        let before = findings.partition_point(|f| f.span.start < run.end());
        if before
            .checked_sub(1)
            .is_some_and(|i| findings[i].span.end > run.start())
        {
            continue;
        }
        let words: Vec<Range<usize>> = WORD
            .find_iter(run.as_str())
            .map(|w| run.start() + w.start()..run.start() + w.end())
            .collect();
        // The words that make the run worth a question: those that are not plain, or else the
        // ordinary words capitalised mid-sentence.
        let not_plain = |w: &Range<usize>| !plain(&text[w.clone()]);
        let proper = |w: &Range<usize>| proper_mid_sentence(text, w.clone());
        let (first, last) = match words.iter().position(not_plain) {
            Some(first) => (first, words.iter().rposition(not_plain)),
            None => match words.iter().position(proper) {
                Some(first) => (first, words.iter().rposition(proper)),
                None => continue,
            },
        };
        let last = last.expect("the run has the word found first");
        let (start, mut end) = (words[first].start, words[last].end);
        // "Okonkwo's", "Cloudspyre." are the name without what follows it.
        let value = text[start..end].trim_end_matches(['.', ',']);
        end = start + without_possessive(value).unwrap_or(value).len();
        out.push(start..end);
    }
    out
}

/// `word` without its possessive "'s" (or "’s"), when it has one.
pub(crate) fn without_possessive(word: &str) -> Option<&str> {
    word.strip_suffix("'s").or_else(|| word.strip_suffix("’s"))
}

/// Whether only spaces, tabs and quoting `>` stand between `offset` and the start of its line.
fn starts_line(text: &str, offset: usize) -> bool {
    let before = text[..offset].trim_end_matches([' ', '\t', '>']);
    before.is_empty() || before.ends_with('\n')
}

/// Whether a word at `offset` starts a line or a sentence, where any word is capitalised.
fn starts_sentence(text: &str, offset: usize) -> bool {
    let before = text[..offset].trim_end();
    starts_line(text, offset) || before.is_empty() || before.ends_with(['.', '!', '?', ':', '"'])
}

/// Whether the word at `span` is an ordinary word capitalised where a sentence does not make it
/// so ("had given Lily his address", "says Sides"): a proper noun of some kind, worth a question,
/// unless it is in capitals (an acronym) or a word that never names a person (a day, a month,
/// "Street", "Corp", a country).
fn proper_mid_sentence(text: &str, span: Range<usize>) -> bool {
    let word = text[span.clone()].trim_end_matches(['.', ',', '?', '!', ';', ':']);
    let word = without_possessive(word).unwrap_or(word);
    let lower = word.to_lowercase();
    word.chars().count() >= 3
        && word.starts_with(char::is_uppercase)
        && word.chars().skip(1).any(char::is_lowercase)
        && !starts_sentence(text, span.start)
        && !NOT.contains(lower.as_str())
        && !NOT_PERSON.contains(lower.as_str())
        && !ORGANIZATION_OR_COUNTRY.contains(lower.as_str())
}

fn names_no_person(word: &str) -> bool {
    NOT_PERSON.contains(bare_lowercase(word).as_str())
}

fn bare_lowercase(word: &str) -> String {
    word.trim_end_matches(['.', ',']).to_lowercase()
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

/// "Nikifor Zielinski of Staples Inc": a person's name (one to three capitalised words, none an
/// organisation's or a place's) before "of" or "for" and the organisation. The length of the
/// name and where the organisation starts.
fn person_before_connector(name: &str) -> Option<(usize, usize)> {
    for connector in [" of ", " for "] {
        let Some(at) = name.find(connector) else {
            continue;
        };
        let before: Vec<&str> = name[..at].split_whitespace().collect();
        if before.len() <= 3
            && before.iter().all(|w| {
                w.chars().next().is_some_and(char::is_uppercase)
                    && w.chars().any(char::is_lowercase)
                    && !names_no_person(w)
                    && !NOT.contains(w.to_lowercase().as_str())
            })
        {
            return Some((at, at + connector.len()));
        }
    }
    None
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

    #[test]
    fn unexplained_capitalised_runs_are_trimmed_of_plain_words_and_skip_findings() {
        let runs = |text: &str, findings: &[Finding]| -> Vec<String> {
            unexplained_capitalised(text, findings)
                .into_iter()
                .map(|r| text[r].to_string())
                .collect()
        };
        assert_eq!(
            runs("Ask Okonkwo about it on Monday in Norway.", &[]),
            ["Okonkwo"]
        );
        assert_eq!(
            runs(
                "Producer Maximillia Bergström explained Cloudspyre's plan.",
                &[]
            ),
            ["Maximillia Bergström", "Cloudspyre"]
        );
        assert!(runs("When the Street starts on Monday, Thank You.", &[]).is_empty());
        // An ordinary word capitalised mid-sentence is asked about; at a sentence's start not.
        assert_eq!(
            runs(
                "Lily had given Lily his address. Party time at the Street Party.",
                &[]
            ),
            ["Lily", "Party"]
        );
        assert_eq!(
            runs(
                "Borz joined DEBFLEX, then SIRPUR PAPER INR10. WE ARE HAPPY.",
                &[]
            ),
            ["Borz", "DEBFLEX", "SIRPUR PAPER INR10"]
        );
        // The name of a kind of data is no name to ask about.
        assert!(runs("What is the IBAN, the SSN and the IP above?", &[]).is_empty());
        let person = Finding::new(Kind::Person, 4..11, 0.9);
        assert_eq!(
            runs("Ask Okonkwo and Zyborin.", std::slice::from_ref(&person)),
            ["Zyborin"]
        );
        let both = [person, Finding::new(Kind::Organization, 20..23, 0.9)];
        assert!(runs("Ask Okonkwo and Zyborin.", &both).is_empty());
    }

    fn found(text: &str) -> Vec<(Kind, String)> {
        let mut out = Vec::new();
        find(text, &mut out);
        super::super::resolve_overlaps(out.into_iter().filter(|f| f.confidence >= 0.5).collect())
            .into_iter()
            .map(|f| (f.kind, text[f.span].to_string()))
            .collect()
    }

    /// The organisations [`found`] in `text`.
    fn organisations(text: &str) -> Vec<String> {
        found(text)
            .into_iter()
            .filter(|(kind, _)| *kind == Kind::Organization)
            .map(|(_, value)| value)
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
    fn people_from_name_questions_and_multinational_name_lists() {
        assert_eq!(
            found("What's your last name? Vedzizhev"),
            vec![(Kind::Person, "Vedzizhev".into())]
        );
        assert_eq!(
            found("My name is Gerth"),
            vec![(Kind::Person, "Gerth".into())]
        );
        assert_eq!(
            found("I'd like to join accounts with ms. Fortun"),
            vec![(Kind::Person, "Fortun".into())]
        );
        // Faker's Finnish and Hungarian lists: a known family name alone, mid-sentence.
        assert_eq!(
            found("Is it true that Manninen and Kovács were engineers?"),
            vec![
                (Kind::Person, "Manninen".into()),
                (Kind::Person, "Kovács".into())
            ]
        );
        // English words and places are not family names, though some are in the lists.
        assert_eq!(found("The guide explains the Settings Page."), vec![]);
        assert_eq!(found("We moved here from Madrid."), vec![]);
        assert_eq!(found("The Border Force detained him."), vec![]);
        // After "for" a country or an organisation is no person.
        assert_eq!(found("She moved to France."), vec![]);
    }

    #[test]
    fn organisations_from_legal_forms() {
        assert_eq!(
            found("I work for Chemed Corporation"),
            vec![(Kind::Organization, "Chemed Corporation".into())]
        );
        assert_eq!(
            found("a year at ODELIC CO.LTD. in Savonlinna"),
            vec![(Kind::Organization, "ODELIC CO.LTD.".into())]
        );
        assert_eq!(
            found("Nikifor Zielinski of Staples Inc is the CEO"),
            vec![
                (Kind::Person, "Nikifor Zielinski".into()),
                (Kind::Organization, "Staples Inc".into())
            ]
        );
        assert_eq!(
            found("Transport Corporation of India Limited, NBCC (India) Ltd and SRA HoldingsInc."),
            vec![
                (
                    Kind::Organization,
                    "Transport Corporation of India Limited".into()
                ),
                (Kind::Organization, "NBCC (India) Ltd".into()),
                (Kind::Organization, "SRA HoldingsInc.".into())
            ]
        );
        // A given name is no company: "Marco" does not end in "Co".
        assert_eq!(
            found("Ask Marco Polo."),
            vec![(Kind::Person, "Marco Polo".into())]
        );
        assert_eq!(
            found("She works at Globex Widgets Ltd. now"),
            vec![(Kind::Organization, "Globex Widgets Ltd.".into())]
        );
        assert_eq!(
            found("the Müller Bau GmbH invoice"),
            vec![(Kind::Organization, "Müller Bau GmbH".into())]
        );
        assert_eq!(
            found("She met Becton Dickinson and Company, and Ames & Co. staff"),
            vec![
                (Kind::Organization, "Becton Dickinson and Company".into()),
                (Kind::Organization, "Ames & Co.".into())
            ]
        );
    }

    #[test]
    fn organisations_glued_to_their_legal_form_or_in_lower_case() {
        assert_eq!(
            organisations("Ann of THE SHIMANE BANKLTD., SHINOZAKIYAINC.'s and baudroieinc.."),
            ["SHIMANE BANKLTD.", "SHINOZAKIYAINC.", "baudroieinc."]
        );
        assert_eq!(
            organisations("ARIGATOU SERVICES COMPANYLIMITED sells ZINC. and zinc. UNLIMITED"),
            ["ARIGATOU SERVICES COMPANYLIMITED"]
        );
        assert_eq!(
            organisations("In 2001, voestalpine AG hired staff from agilon health inc."),
            ["voestalpine AG", "agilon health inc."]
        );
        assert_eq!(
            organisations("a year at tsukuruba inc. and on the fonfun corporation website"),
            ["tsukuruba inc.", "fonfun corporation"]
        );
        // English words before a lower-case form are a sentence, not a brand.
        assert!(organisations("It is a multinational corporation, and the ltd. form.").is_empty());
    }

    #[test]
    fn a_coupon_belongs_to_its_issuer_and_a_state_code_is_no_legal_form() {
        assert_eq!(
            found("Duke Energy Corporation 5.625% notes are due."),
            vec![(Kind::Organization, "Duke Energy Corporation 5.625%".into())]
        );
        assert_eq!(
            found("Waverley Capital Acquisition Corp. 1 units"),
            vec![(
                Kind::Organization,
                "Waverley Capital Acquisition Corp.".into()
            )]
        );
        for place in [
            "Paimala, SA 93855",
            "Las Vegas NV 89101",
            "Boulder, CO 8030",
        ] {
            assert!(
                found(place)
                    .iter()
                    .all(|(kind, _)| *kind != Kind::Organization),
                "{place}"
            );
        }
        assert_eq!(
            found("Deutsche Bank AG 2019 report"),
            vec![(Kind::Organization, "Deutsche Bank AG".into())]
        );
    }

    #[test]
    fn organisations_from_what_a_sentence_says_they_are() {
        assert_eq!(
            found("Last year I joined Cloudspyre as an intern."),
            vec![(Kind::Organization, "Cloudspyre".into())]
        );
        assert_eq!(
            found("Smartprocure is a 501(c)3 that invites songwriters"),
            vec![(Kind::Organization, "Smartprocure".into())]
        );
        assert_eq!(
            found("A letter from the Ministry of Agriculture arrived."),
            vec![(Kind::Organization, "Ministry of Agriculture".into())]
        );
        assert_eq!(
            found("Then she joined Priya Raman for lunch."),
            vec![(Kind::Person, "Priya Raman".into())]
        );
    }

    #[test]
    fn an_organisation_beside_a_person_is_found() {
        assert_eq!(
            organisations("The award went to Tim Cook of Cityscan."),
            ["Cityscan"]
        );
        assert_eq!(
            organisations("They praised Appallicious's Regina Blinova for it."),
            ["Appallicious"]
        );
        // A country, or a person's own possessive, is no organisation.
        assert!(organisations("Then Tim Cook of Sweden spoke.").is_empty());
        assert!(organisations("The award went to Tim Cook's team.").is_empty());
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
            "ul. Północna 73, Suwałki,  16-430",
            "Síp utca 17., Gomba, PE 2217",
            "Erbenova 1334, Kostelec nad Orlicí, KR 517 41",
            "5710 Marsveien, OSLO",
            "8305 Frørup Byvej",
            "76 Gosposka Road, London SW19 8AB",
            "1788 Heritage Drive, Calgary, AB T2V 2W2",
            "P.O. Box 108, Vila do Conde",
            "Opplands gate 8, HAMAR,  2315",
            "Gosposka ulica 58, Novo mesto,  8001",
            "Trg revolucije 1, Cankova,  9261",
            "Erzsébet tér 19., Domoszló, HE 3263",
            "Bem rkp. 97., Komlóska, BZ 3937",
            "Avda. Los llanos 41, Casalarreina, LO 26230",
            "Árpád fejedelem útja 3., Budapest, BU 1184",
            "Stensås terrasse 38, ARENDAL,  4846",
            "Tavcarjeva 69, Šmartno ob Paki,  3327",
            "Πεντέλης 210, ΜΕΛΑ∆ΕΙΑ, PA 8808",
            "4990 De la Providence Avenue, Lachute, QC J8H 2J7",
            "33 Rue Ibn Al Jazzar, Cite Presidentielle, 71 2130",
        ] {
            assert_eq!(
                found(&format!("Ship it to {address}. Thanks")),
                vec![(Kind::StreetAddress, address.to_string())],
                "{address}"
            );
        }
        // A city's connector joins two words of its name and never ends it.
        assert_eq!(
            found("Our office moved to P.O. Box 84, Grandmetz last month."),
            vec![(Kind::StreetAddress, "P.O. Box 84, Grandmetz".into())]
        );
        // A street word glued to a name is in lower case: "STRG" is no street.
        assert_eq!(
            found("Octopus Aim VCT 2 PLC and PUB STRG DS REP notes"),
            vec![(Kind::Organization, "Octopus Aim VCT 2 PLC".into())]
        );
    }

    #[test]
    fn street_addresses_after_cues_and_in_blocks() {
        assert_eq!(
            found("Guiomar lives at 2076 Treinta y Tres, Valle Edén"),
            vec![
                (Kind::Person, "Guiomar".into()),
                (
                    Kind::StreetAddress,
                    "2076 Treinta y Tres, Valle Edén".into()
                )
            ]
        );
        assert_eq!(found("The meeting is at 5 PM, Tuesday."), vec![]);
        // The sentence's words before a street that starts at a capital are not the street.
        for sentence in [
            "Please return to Bem rakpart 81., Rohod, SZ 4563 in case of an issue.",
            "It's in Bem rakpart 81., Rohod, SZ 4563",
        ] {
            assert_eq!(
                found(sentence),
                vec![(
                    Kind::StreetAddress,
                    "Bem rakpart 81., Rohod, SZ 4563".into()
                )],
                "{sentence}"
            );
        }
        // Lines may start with symbols: a bullet, an emoji lost to "???".
        for bullet in ["??? ", "• ", "> "] {
            let block = format!(
                "{bullet}5944 Brisas\n{bullet}Suite 476\n{bullet}Maldonado\n{bullet}Uruguay 20000"
            );
            let addresses: Vec<String> = found(&block)
                .into_iter()
                .filter(|(kind, _)| *kind == Kind::StreetAddress)
                .map(|(_, value)| value)
                .collect();
            assert!(
                addresses
                    .iter()
                    .any(|a| a.starts_with("5944 Brisas\n") && a.contains("Suite 476")),
                "{block:?}: {addresses:?}"
            );
        }
        // The postcode is no phone number; the unit is no part of the name.
        assert_eq!(
            found("3498 R Direita-Igreja\n Unit 938\n Vila Franca do Campo\n Portugal 9680-151"),
            vec![(
                Kind::StreetAddress,
                "3498 R Direita-Igreja\n Unit 938\n Vila Franca do Campo\n Portugal 9680-151"
                    .into()
            )]
        );
        assert_eq!(
            found("Mr. Alexander Tokaryev Apt. 527 2169 Salontie\nHUMPPILA TP 31640"),
            vec![
                (Kind::Person, "Alexander Tokaryev".into()),
                (
                    Kind::StreetAddress,
                    "Apt. 527 2169 Salontie\nHUMPPILA TP 31640".into()
                )
            ]
        );
    }
}
