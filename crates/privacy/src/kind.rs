//! The kinds of private data Tandem recognises, with the tag each kind's placeholders carry.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
    CreditCard,
    Iban,
    /// US SSNs and UK National Insurance numbers.
    NationalId,
    IpAddress,
    /// A URL that carries a user name and password (`postgres://user:pass@host`).
    CredentialUrl,
    /// API keys, tokens, private keys, passwords and other high-entropy values.
    Secret,
    DateOfBirth,
    StreetAddress,
    Person,
    Organization,
    /// A value the configuration's deny-list names.
    Denied,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Email,
        Kind::Phone,
        Kind::CreditCard,
        Kind::Iban,
        Kind::NationalId,
        Kind::IpAddress,
        Kind::CredentialUrl,
        Kind::Secret,
        Kind::DateOfBirth,
        Kind::StreetAddress,
        Kind::Person,
        Kind::Organization,
        Kind::Denied,
    ];

    /// The name used in configuration, reports and the audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::CreditCard => "credit_card",
            Kind::Iban => "iban",
            Kind::NationalId => "national_id",
            Kind::IpAddress => "ip_address",
            Kind::CredentialUrl => "credential_url",
            Kind::Secret => "secret",
            Kind::DateOfBirth => "date_of_birth",
            Kind::StreetAddress => "street_address",
            Kind::Person => "person",
            Kind::Organization => "organization",
            Kind::Denied => "denied",
        }
    }

    /// The tag of this kind's placeholders (`[EMAIL_1]`): upper-case words a model copies verbatim
    /// and that say what stood there, so the answer still reads naturally.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::CreditCard => "CARD",
            Kind::Iban => "IBAN",
            Kind::NationalId => "NATIONAL_ID",
            Kind::IpAddress => "IP",
            Kind::CredentialUrl => "CREDENTIAL_URL",
            Kind::Secret => "SECRET",
            Kind::DateOfBirth => "BIRTH_DATE",
            Kind::StreetAddress => "ADDRESS",
            Kind::Person => "PERSON",
            Kind::Organization => "ORG",
            Kind::Denied => "PRIVATE",
        }
    }

    /// Kinds with a fixed structure (checksums, prefixes, formats), as opposed to names and
    /// addresses, which need language.
    pub fn is_structured(self) -> bool {
        !matches!(
            self,
            Kind::Person | Kind::Organization | Kind::StreetAddress | Kind::DateOfBirth
        )
    }

    /// When two candidate spans overlap, the one of the higher rank wins: a credential URL holds
    /// something that looks like an e-mail, a card number something that looks like a phone.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Kind::Denied => 12,
            // A credential URL holds its password or token: the whole URL goes.
            Kind::CredentialUrl => 11,
            Kind::Secret => 10,
            // An IBAN holds digit runs that pass Luhn by chance (one in ten); its mod-97 check
            // is the stronger evidence, so it wins over the card inside it.
            Kind::Iban => 9,
            Kind::CreditCard => 8,
            Kind::Email => 7,
            Kind::NationalId => 6,
            Kind::IpAddress => 5,
            Kind::DateOfBirth => 4,
            Kind::Phone => 3,
            Kind::StreetAddress => 2,
            Kind::Organization => 1,
            Kind::Person => 0,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
