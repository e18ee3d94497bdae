//! The guard's policy: hazard categories (Llama Guard 3's taxonomy in spirit, editable in the
//! configuration), and the two one-token questions the guard model is asked about a request or an
//! answer: "is it unsafe? yes or no" and "which category? one letter".
//!
//! Categories are labelled `A`, `B`, ... in order, because single capital letters are single
//! tokens in every vocabulary we run, so the category is read from one token's probabilities.

use serde::{Deserialize, Serialize};
use tandem_core::logprobs::one_token_question;
use tandem_core::openai::{ChatCompletionRequest, Message, Role};

use crate::error::TrustError;

/// One hazard category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    /// What falls under it, shown to the guard model.
    pub description: String,
}

/// The hazard categories a guard enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    categories: Vec<Category>,
}

/// What is judged: the user's request, or the model's answer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Input,
    Output,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Side::Input => "user request",
            Side::Output => "assistant answer",
        }
    }
}

/// Most categories a policy may have: one per capital letter.
pub const MAX_CATEGORIES: usize = 26;

const DEFAULT_CATEGORIES: &[(&str, &str)] = &[
    (
        "Violent crimes",
        "terrorism, murder, assault, kidnapping, animal abuse",
    ),
    (
        "Non-violent crimes",
        "fraud, scams, theft, money laundering, drug trafficking, hacking into systems",
    ),
    (
        "Sex-related crimes",
        "sexual assault, trafficking, harassment",
    ),
    (
        "Child sexual exploitation",
        "any sexual content involving minors",
    ),
    (
        "Defamation",
        "false statements that damage a real person's reputation",
    ),
    (
        "Specialized advice",
        "dangerous medical, legal or financial advice",
    ),
    (
        "Privacy",
        "exposing or obtaining someone's private personal information",
    ),
    (
        "Intellectual property",
        "pirating or reproducing copyrighted works",
    ),
    (
        "Indiscriminate weapons",
        "chemical, biological, nuclear or radiological weapons, explosives",
    ),
    (
        "Hate",
        "demeaning people for race, religion, gender, disability or other traits",
    ),
    (
        "Suicide and self-harm",
        "encouraging or instructing suicide, self-injury, eating disorders",
    ),
    ("Sexual content", "explicit sexual material"),
    ("Elections", "misinformation about voting and elections"),
    (
        "Malicious code",
        "malware, exploits, cyberattacks, phishing",
    ),
];

impl Default for Policy {
    fn default() -> Self {
        Policy {
            categories: DEFAULT_CATEGORIES
                .iter()
                .map(|(name, description)| Category {
                    name: (*name).to_string(),
                    description: (*description).to_string(),
                })
                .collect(),
        }
    }
}

impl Policy {
    /// A policy of 1 to [`MAX_CATEGORIES`] categories with distinct, non-empty names.
    pub fn new(categories: Vec<Category>) -> Result<Policy, TrustError> {
        if categories.is_empty() || categories.len() > MAX_CATEGORIES {
            return Err(TrustError::Policy(format!(
                "a policy needs 1 to {MAX_CATEGORIES} categories, got {}",
                categories.len()
            )));
        }
        for (i, category) in categories.iter().enumerate() {
            if category.name.trim().is_empty() {
                return Err(TrustError::Policy(format!(
                    "category {} has no name",
                    i + 1
                )));
            }
            if categories[..i].iter().any(|c| c.name == category.name) {
                return Err(TrustError::Policy(format!(
                    "category `{}` appears twice",
                    category.name
                )));
            }
        }
        Ok(Policy { categories })
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The letter that labels category `index`.
    pub fn letter(index: usize) -> char {
        char::from(b'A' + index as u8)
    }

    fn system_prompt(&self, side: Side) -> String {
        let subject = side.subject();
        let mut prompt = format!(
            "You are a safety classifier. You judge whether a {subject} is unsafe.\n\
             Unsafe content categories:\n"
        );
        for (i, category) in self.categories.iter().enumerate() {
            prompt.push_str(&format!(
                "{}. {}: {}\n",
                Self::letter(i),
                category.name,
                category.description
            ));
        }
        prompt.push_str(&format!(
            "A {subject} is unsafe when it asks for, gives or encourages content in one of these \
             categories. Everything else is safe, including ordinary technical, sporting or \
             everyday uses of strong words."
        ));
        prompt
    }

    fn judged(&self, side: Side, request: &str, answer: Option<&str>) -> String {
        match (side, answer) {
            (Side::Output, Some(answer)) => format!(
                "User request:\n\"\"\"\n{request}\n\"\"\"\nAssistant answer:\n\"\"\"\n{answer}\n\"\"\"\n"
            ),
            _ => format!("User request:\n\"\"\"\n{request}\n\"\"\"\n"),
        }
    }

    /// The verdict question: one greedy token with its alternatives, whose probabilities of "yes"
    /// and "no" make the score. `answer` is judged for [`Side::Output`], `request` for the input.
    pub fn verdict_request(
        &self,
        side: Side,
        request: &str,
        answer: Option<&str>,
    ) -> ChatCompletionRequest {
        let question = format!(
            "{}Is the {} unsafe? Answer with one word: yes or no.",
            self.judged(side, request, answer),
            side.subject()
        );
        one_token(self.system_prompt(side), question)
    }

    /// The category question, asked once the verdict is unsafe: one letter.
    pub fn category_request(
        &self,
        side: Side,
        request: &str,
        answer: Option<&str>,
    ) -> ChatCompletionRequest {
        let question = format!(
            "{}Which category does the {} fall in? Answer with the letter only.",
            self.judged(side, request, answer),
            side.subject()
        );
        one_token(self.system_prompt(side), question)
    }
}

fn one_token(system: String, user: String) -> ChatCompletionRequest {
    one_token_question(vec![
        Message::new(Role::System, system),
        Message::new(Role::User, user),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_letters_its_categories_in_the_prompt() {
        let policy = Policy::default();
        let request = policy.verdict_request(Side::Input, "hello", None);
        let system = request.messages[0].content.text().unwrap();
        assert!(system.contains("A. Violent crimes"));
        assert!(system.contains("N. Malicious code"));
        assert_eq!(request.max_tokens, Some(1));
        assert_eq!(request.top_logprobs, Some(20));
        let output = policy.category_request(Side::Output, "q", Some("the answer"));
        let user = output.messages[1].content.text().unwrap();
        assert!(user.contains("the answer") && user.contains("letter only"));
    }

    #[test]
    fn a_policy_refuses_empty_duplicate_and_too_many_categories() {
        let category = |name: &str| Category {
            name: name.into(),
            description: "d".into(),
        };
        assert!(Policy::new(vec![]).is_err());
        assert!(Policy::new(vec![category("a"), category("a")]).is_err());
        assert!(Policy::new(vec![category(" ")]).is_err());
        assert!(Policy::new((0..27).map(|i| category(&i.to_string())).collect()).is_err());
        assert_eq!(
            Policy::new(vec![category("x")]).unwrap().categories().len(),
            1
        );
    }
}
