//! [`Judge`]: asks the guard model the policy's one-token questions about a request or an answer
//! and turns the probabilities of its token into a [`Verdict`].

use std::sync::Arc;

use tandem_core::logprobs::yes_share;
use tandem_core::openai::{ChatCompletionRequest, Role};
use tandem_core::{ChatModel, ModelError, Report};

use crate::policy::{Policy, Side};
use crate::verdict::Verdict;
use tandem_core::logprobs::letter_shares;

/// The score when the guard model's token is neither "yes" nor "no": undecided, so the threshold
/// alone decides (a threshold above 0.5 lets such texts through).
pub const UNDECIDED: f64 = 0.5;

pub struct Judge {
    model: Arc<dyn ChatModel>,
    policy: Policy,
    /// Block at or above this score.
    threshold: f64,
}

/// A verdict and the guard model's calls that produced it.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reports: Vec<Report>,
}

impl Judge {
    pub fn new(model: Arc<dyn ChatModel>, policy: Policy, threshold: f64) -> Judge {
        Judge {
            model,
            policy,
            threshold,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The guard model's probability that the text is unsafe, and its call's report.
    pub async fn model_score(
        &self,
        side: Side,
        request: &str,
        answer: Option<&str>,
    ) -> Result<(f64, Report), ModelError> {
        let question = self.policy.verdict_request(side, request, answer);
        let reply = self.ask(question).await?;
        let score = first_token(&reply.logprobs)
            .and_then(yes_share)
            .unwrap_or(UNDECIDED);
        Ok((score, reply.report))
    }

    /// Judges with the guard model's probability as the score.
    pub async fn judge(
        &self,
        side: Side,
        request: &str,
        answer: Option<&str>,
    ) -> Result<Judgement, ModelError> {
        let (score, report) = self.model_score(side, request, answer).await?;
        self.decide(side, request, answer, score, vec![report])
            .await
    }

    /// Turns the guard model's score into a verdict; a blocked text's category is asked of the
    /// guard model.
    async fn decide(
        &self,
        side: Side,
        request: &str,
        answer: Option<&str>,
        score: f64,
        mut reports: Vec<Report>,
    ) -> Result<Judgement, ModelError> {
        let blocked = score >= self.threshold;
        let mut verdict = Verdict {
            score,
            threshold: self.threshold,
            blocked,
            category: None,
            category_probability: None,
            jailbreak: None,
        };
        if blocked {
            reports.push(
                self.name_category(side, request, answer, &mut verdict)
                    .await?,
            );
        }
        Ok(Judgement { verdict, reports })
    }

    /// Sets the verdict's category to the policy's category the guard model finds most likely
    /// for the text, with its probability (left unset when its token is no category letter);
    /// the call's report.
    pub async fn name_category(
        &self,
        side: Side,
        request: &str,
        answer: Option<&str>,
        verdict: &mut Verdict,
    ) -> Result<Report, ModelError> {
        let question = self.policy.category_request(side, request, answer);
        let reply = self.ask(question).await?;
        let count = self.policy.categories().len();
        if let Some(shares) = first_token(&reply.logprobs).and_then(|t| letter_shares(t, count)) {
            let (best, p) =
                shares.iter().enumerate().fold(
                    (0, 0.0),
                    |acc, (i, &p)| {
                        if p > acc.1 {
                            (i, p)
                        } else {
                            acc
                        }
                    },
                );
            verdict.category = Some(self.policy.categories()[best].name.clone());
            verdict.category_probability = Some(p);
        }
        Ok(reply.report)
    }

    async fn ask(
        &self,
        mut question: ChatCompletionRequest,
    ) -> Result<tandem_core::ChatOutput, ModelError> {
        question.model = self.model.name().to_string();
        self.model.complete(question).await
    }
}

fn first_token(
    logprobs: &Option<Vec<tandem_core::openai::TokenLogprob>>,
) -> Option<&tandem_core::openai::TokenLogprob> {
    logprobs.as_deref().and_then(<[_]>::first)
}

/// The text a guard judges of a request: every user message, in order, blank-line separated.
/// Parts that are not text (images) cannot be judged by a text model and are left out.
pub fn request_text(request: &ChatCompletionRequest) -> String {
    request
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .filter_map(|m| m.content.text())
        .collect::<Vec<_>>()
        .join("\n\n")
}
