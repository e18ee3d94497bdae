//! Turning logits into tokens: temperature, top-k, top-p, min-p and a seeded random source, plus
//! the log probabilities OpenAI's `logprobs` reports. Works on borrowed logits so no
//! vocabulary-sized copy is made per token beyond scratch buffers reused across tokens.
//!
//! Before drawing, a sampler may adjust the logits (`logit_bias`, and presence and frequency
//! penalties over the tokens it has drawn) and consult a [`Constraint`]: it draws from the model's
//! own distribution first and masks the logits only when the constraint refuses that draw, which
//! gives the same distribution as masking first (the refused mass is redrawn in proportion) at
//! a fraction of the cost, since a grammar usually agrees with the model.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::constraint::Constraint;
use crate::error::ModelError;
use crate::model::TokenId;
use crate::openai::ChatCompletionRequest;

/// Generation settings taken from a request, with OpenAI's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    pub seed: Option<u64>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub logprobs: bool,
    pub top_logprobs: usize,
    /// Drops tokens less probable than this fraction of the most probable one; 0 keeps all.
    pub min_p: f32,
    /// Subtracted from the logit of every token already drawn.
    pub presence_penalty: f32,
    /// Subtracted from the logit of a token once per time it was drawn.
    pub frequency_penalty: f32,
    /// Added to the logits of these tokens.
    pub logit_bias: Vec<(TokenId, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
            max_tokens: None,
            stop: Vec::new(),
            logprobs: false,
            top_logprobs: 0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// The settings of a request that already passed [`crate::validate::validate`].
    pub fn from_request(request: &ChatCompletionRequest) -> Self {
        let defaults = SamplingParams::default();
        SamplingParams {
            temperature: request.temperature.unwrap_or(defaults.temperature),
            top_p: request.top_p.unwrap_or(defaults.top_p),
            top_k: request.top_k.map_or(0, |k| k as usize),
            seed: request.seed,
            max_tokens: request.max_completion_tokens.or(request.max_tokens),
            stop: request
                .stop
                .as_ref()
                .map(|s| s.to_vec())
                .unwrap_or_default(),
            logprobs: request.logprobs.unwrap_or(false),
            top_logprobs: request.top_logprobs.unwrap_or(0) as usize,
            min_p: request.min_p.unwrap_or(0.0),
            presence_penalty: request.presence_penalty.unwrap_or(0.0),
            frequency_penalty: request.frequency_penalty.unwrap_or(0.0),
            // Validation checked that every key is a token id.
            logit_bias: request
                .logit_bias
                .iter()
                .flatten()
                .filter_map(|(token, bias)| Some((token.parse().ok()?, *bias)))
                .collect(),
        }
    }

    /// Whether the logits need adjusting before each draw.
    fn adjusts_logits(&self) -> bool {
        self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 || !self.logit_bias.is_empty()
    }
}

/// Draws tokens from logits according to [`SamplingParams`]. Same seed, same logits: same tokens.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: usize,
    min_p: f32,
    rng: ChaCha8Rng,
    /// (token, logit) pairs, reused across calls.
    scratch: Vec<(TokenId, f32)>,
    adjustments: Option<Adjustments>,
    constraint: Option<Box<dyn Constraint>>,
    /// Logits after adjustment or masking, reused across calls.
    adjusted: Vec<f32>,
}

/// `logit_bias` and the penalties, with the counts of the tokens drawn so far.
struct Adjustments {
    presence_penalty: f32,
    frequency_penalty: f32,
    logit_bias: Vec<(TokenId, f32)>,
    drawn: HashMap<TokenId, u32>,
}

impl Adjustments {
    fn apply(&self, logits: &mut [f32]) {
        for &(token, bias) in &self.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        for (&token, &count) in &self.drawn {
            if let Some(l) = logits.get_mut(token as usize) {
                *l -= self.presence_penalty + self.frequency_penalty * count as f32;
            }
        }
    }
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| rand::rng().random());
        Sampler {
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            min_p: params.min_p,
            rng: ChaCha8Rng::seed_from_u64(seed),
            scratch: Vec::new(),
            adjustments: params.adjusts_logits().then(|| Adjustments {
                presence_penalty: params.presence_penalty,
                frequency_penalty: params.frequency_penalty,
                logit_bias: params.logit_bias.clone(),
                drawn: HashMap::new(),
            }),
            constraint: None,
            adjusted: Vec::new(),
        }
    }

    /// Draws only tokens `constraint` allows.
    pub fn with_constraint(mut self, constraint: Option<Box<dyn Constraint>>) -> Self {
        self.constraint = constraint;
        self
    }

    /// Draws the next token: adjusts the logits, draws, and redraws from masked logits if the
    /// constraint refuses the draw.
    pub fn sample(&mut self, logits: &[f32]) -> Result<TokenId, ModelError> {
        if logits.is_empty() {
            return Err(ModelError::Internal("empty logits".into()));
        }
        let mut adjusted = std::mem::take(&mut self.adjusted);
        let result = self.sample_adjusted(logits, &mut adjusted);
        self.adjusted = adjusted;
        let token = result?;
        if let Some(adjustments) = &mut self.adjustments {
            *adjustments.drawn.entry(token).or_default() += 1;
        }
        Ok(token)
    }

    fn sample_adjusted(
        &mut self,
        logits: &[f32],
        adjusted: &mut Vec<f32>,
    ) -> Result<TokenId, ModelError> {
        let token = match &self.adjustments {
            Some(adjustments) => {
                adjusted.clear();
                adjusted.extend_from_slice(logits);
                adjustments.apply(adjusted);
                self.draw(adjusted)?
            }
            None => self.draw(logits)?,
        };
        let Some(mut constraint) = self.constraint.take() else {
            return Ok(token);
        };
        let token = if constraint.allows(token) {
            Ok(token)
        } else {
            if self.adjustments.is_none() {
                adjusted.clear();
                adjusted.extend_from_slice(logits);
            }
            constraint.mask(adjusted);
            if adjusted.iter().all(|&l| l == f32::NEG_INFINITY) {
                Err(ModelError::Internal(
                    "the output grammar allows no next token".into(),
                ))
            } else {
                self.draw(adjusted)
            }
        };
        if let Ok(token) = token {
            constraint.accept(token);
        }
        self.constraint = Some(constraint);
        token
    }

    fn draw(&mut self, logits: &[f32]) -> Result<TokenId, ModelError> {
        if self.temperature <= 0.0 || self.top_k == 1 {
            return Ok(argmax(logits));
        }
        self.scratch.clear();
        self.scratch
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as TokenId, l)));
        if self.top_k > 0 && self.top_k < self.scratch.len() {
            self.scratch
                .select_nth_unstable_by(self.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            self.scratch.truncate(self.top_k);
        }
        // Turn logits into unnormalised probabilities in place. Dividing the gap to the largest
        // logit (never positive) by the temperature in f64 cannot give NaN: multiplying by 1/t
        // did, once 1/t overflowed to infinity (t below about 3e-39) and met a gap of 0. A tiny
        // temperature thus gives the largest logit probability 1 and every other 0: greedy.
        let max = self
            .scratch
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, f32::max);
        let temperature = f64::from(self.temperature);
        let mut total = 0.0f64;
        for c in &mut self.scratch {
            c.1 = (f64::from(c.1 - max) / temperature).exp() as f32;
            total += f64::from(c.1);
        }
        // The most probable candidate has weight 1, so min-p keeps weights of at least min_p.
        if self.min_p > 0.0 {
            let min_p = self.min_p;
            self.scratch.retain(|c| c.1 >= min_p);
            total = self.scratch.iter().map(|c| f64::from(c.1)).sum();
        }
        let kept_mass = if self.top_p < 1.0 {
            keep_nucleus(&mut self.scratch, total * f64::from(self.top_p))
        } else {
            total
        };
        let mut target = self.rng.random::<f64>() * kept_mass;
        for &(token, p) in &self.scratch {
            target -= f64::from(p);
            if target <= 0.0 {
                return Ok(token);
            }
        }
        Ok(self.scratch.last().map_or(0, |c| c.0))
    }
}

impl SamplingParams {
    /// True when these settings always pick the most probable token, as [`Sampler`] does.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }

    /// The distribution [`Sampler::sample`] draws from, as one probability per token of the
    /// vocabulary (0 outside the top-k cut and the nucleus), summing to 1. Speculative decoding
    /// applies it alike to the target's and the draft's logits, so that rejection sampling keeps
    /// the target's distribution under the request's own settings.
    pub fn probabilities(&self, logits: &[f32]) -> Vec<f32> {
        let mut probs = vec![0.0f32; logits.len()];
        if logits.is_empty() {
            return probs;
        }
        if self.is_greedy() {
            probs[argmax(logits) as usize] = 1.0;
            return probs;
        }
        let mut candidates: Vec<(TokenId, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as TokenId, l))
            .collect();
        if self.top_k > 0 && self.top_k < candidates.len() {
            candidates.select_nth_unstable_by(self.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            candidates.truncate(self.top_k);
        }
        let max = candidates
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, f32::max);
        let temperature = f64::from(self.temperature);
        let mut total = 0.0f64;
        for c in &mut candidates {
            c.1 = (f64::from(c.1 - max) / temperature).exp() as f32;
            total += f64::from(c.1);
        }
        let kept_mass = if self.top_p < 1.0 {
            keep_nucleus(&mut candidates, total * f64::from(self.top_p))
        } else {
            total
        };
        for (token, p) in candidates {
            probs[token as usize] = (f64::from(p) / kept_mass) as f32;
        }
        probs
    }
}

/// Draws an index from unnormalised non-negative weights; `None` when they sum to zero.
pub fn draw(weights: &[f32], rng: &mut impl Rng) -> Option<TokenId> {
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut target = rng.random::<f64>() * total;
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        last = Some(i as TokenId);
        target -= f64::from(w);
        if target <= 0.0 {
            break;
        }
    }
    last
}

/// Keeps the smallest set of most probable candidates whose mass reaches `mass`, sorted by
/// probability; returns the kept mass. Partitions a growing prefix instead of sorting the whole
/// vocabulary, since the nucleus is usually a few dozen tokens out of tens of thousands.
fn keep_nucleus(candidates: &mut Vec<(TokenId, f32)>, mass: f64) -> f64 {
    let n = candidates.len();
    let mut k = 64.min(n);
    loop {
        if k < n {
            candidates.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        }
        let head_mass: f64 = candidates[..k].iter().map(|c| f64::from(c.1)).sum();
        if head_mass >= mass || k == n {
            candidates[..k].sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut kept = 0.0;
            let mut len = 0;
            for c in &candidates[..k] {
                kept += f64::from(c.1);
                len += 1;
                if kept >= mass {
                    break;
                }
            }
            candidates.truncate(len);
            return kept;
        }
        k = (k * 4).min(n);
    }
}

/// The index of the largest logit (the lowest index among equals).
pub fn argmax(logits: &[f32]) -> TokenId {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as TokenId
}

/// log(sum(exp(logits))), computed stably.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    max + sum.ln()
}

/// The `n` most probable tokens with their log probabilities under the model's own distribution
/// (temperature 1), most probable first. `lse` is [`log_sum_exp`] of the same logits. Tokens that
/// cannot be chosen at all (a logit of -inf, as a fused distribution gives excluded tokens) are
/// never listed: JSON has no -inf, and they are no alternative.
pub fn top_logprobs(logits: &[f32], lse: f32, n: usize) -> Vec<(TokenId, f32)> {
    if n == 0 {
        return Vec::new();
    }
    let mut all: Vec<(TokenId, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as TokenId, l))
        .collect();
    if all.is_empty() {
        return Vec::new();
    }
    let n = n.min(all.len());
    if n < all.len() {
        all.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        all.truncate(n);
    }
    all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.into_iter().map(|(t, l)| (t, l - lse)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, top_k: usize, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            seed: Some(seed),
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut s = Sampler::new(&params(0.0, 1.0, 0, 1));
        assert_eq!(s.sample(&[0.1, 3.0, 2.9, -1.0]).unwrap(), 1);
    }

    #[test]
    fn a_tiny_positive_temperature_is_greedy() {
        // Distinct logits (7919 permutes the residues of the prime 1009), so greedy has one answer.
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1009) as f32 / 100.0)
            .collect();
        let best = argmax(&logits);
        let subnormal = f32::from_bits(1);
        assert!(subnormal > 0.0 && !subnormal.is_normal());
        for temperature in [1e-39, 1e-30, f32::MIN_POSITIVE, subnormal, 1e-44, 1e-45] {
            for seed in 0..20 {
                let mut s = Sampler::new(&params(temperature, 1.0, 0, seed));
                assert_eq!(
                    s.sample(&logits).unwrap(),
                    best,
                    "temperature {temperature:e}"
                );
                let mut s = Sampler::new(&params(temperature, 0.9, 40, seed));
                assert_eq!(
                    s.sample(&logits).unwrap(),
                    best,
                    "temperature {temperature:e}"
                );
            }
        }
    }

    #[test]
    fn a_normal_temperature_still_samples() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1009) as f32 / 100.0)
            .collect();
        let mut s = Sampler::new(&params(0.7, 1.0, 0, 5));
        let drawn: std::collections::HashSet<TokenId> =
            (0..200).map(|_| s.sample(&logits).unwrap()).collect();
        assert!(drawn.len() > 1, "{drawn:?}");
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 97) as f32 / 10.0).collect();
        let draw = |seed| {
            let mut s = Sampler::new(&params(1.0, 0.9, 0, seed));
            (0..50)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_never_leaves_the_k_best() {
        let logits = [5.0, 4.0, 0.0, 0.0, 3.9, 0.0];
        let mut s = Sampler::new(&params(5.0, 1.0, 2, 3));
        for _ in 0..200 {
            let t = s.sample(&logits).unwrap();
            assert!(t == 0 || t == 1, "{t}");
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two.
        let logits: Vec<f32> = [0.64f32, 0.24, 0.09, 0.03].iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(&params(1.0, 0.8, 0, 11));
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[s.sample(&logits).unwrap() as usize] += 1;
        }
        assert_eq!(seen[2] + seen[3], 0, "{seen:?}");
        assert!(seen[0] > seen[1] && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn nucleus_over_a_large_vocabulary_grows_its_prefix() {
        // A flat distribution forces the partition to widen beyond the first 64 candidates.
        let mut candidates: Vec<(TokenId, f32)> = (0..1000).map(|i| (i, 1.0)).collect();
        let kept = keep_nucleus(&mut candidates, 500.0);
        assert_eq!(candidates.len(), 500);
        assert!((kept - 500.0).abs() < 1e-6);
    }

    #[test]
    fn probabilities_are_the_distribution_the_sampler_draws_from() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03 before the cuts.
        let logits: Vec<f32> = [0.64f32, 0.24, 0.09, 0.03].iter().map(|p| p.ln()).collect();
        for (top_p, top_k) in [(1.0, 0), (0.8, 0), (1.0, 3), (0.95, 2)] {
            let params = params(0.8, top_p, top_k, 3);
            let probs = params.probabilities(&logits);
            assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{probs:?}");
            let mut sampler = Sampler::new(&params);
            let runs = 20_000;
            let mut seen = [0usize; 4];
            for _ in 0..runs {
                seen[sampler.sample(&logits).unwrap() as usize] += 1;
            }
            for (token, &p) in probs.iter().enumerate() {
                let observed = seen[token] as f32 / runs as f32;
                // Four standard deviations of a binomial share at 20000 draws is under 0.015.
                assert!(
                    (observed - p).abs() < 0.015,
                    "top_p {top_p} top_k {top_k}: token {token} drawn {observed}, p {p}"
                );
            }
        }
        let greedy = params(0.0, 1.0, 0, 1).probabilities(&logits);
        assert_eq!(greedy, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn draw_follows_the_weights_and_skips_zeros() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let weights = [0.0, 3.0, 0.0, 1.0];
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            seen[draw(&weights, &mut rng).unwrap() as usize] += 1;
        }
        assert_eq!(seen[0] + seen[2], 0, "{seen:?}");
        assert!((2800..3200).contains(&seen[1]), "{seen:?}");
        assert_eq!(draw(&[0.0, 0.0], &mut rng), None);
    }

    #[test]
    fn logit_bias_and_penalties_move_the_choice() {
        let greedy = |params: SamplingParams| {
            let mut s = Sampler::new(&params);
            (0..4)
                .map(|_| s.sample(&[1.0, 0.9, 0.0]).unwrap())
                .collect::<Vec<_>>()
        };
        let base = params(0.0, 1.0, 0, 1);
        assert_eq!(greedy(base.clone()), [0, 0, 0, 0]);
        let biased = SamplingParams {
            logit_bias: vec![(0, -100.0)],
            ..base.clone()
        };
        assert_eq!(greedy(biased), [1, 1, 1, 1]);
        // Once drawn, a token loses 0.5 for good: token 1 wins from then on.
        let presence = SamplingParams {
            presence_penalty: 0.5,
            ..base.clone()
        };
        assert_eq!(greedy(presence), [0, 1, 0, 0]);
        // Each draw costs 0.15 more: the two leaders take turns.
        let frequency = SamplingParams {
            frequency_penalty: 0.15,
            ..base
        };
        assert_eq!(greedy(frequency), [0, 1, 0, 1]);
    }

    #[test]
    fn min_p_drops_the_improbable() {
        // Probabilities 0.5, 0.3, 0.15, 0.05: min_p 0.2 keeps those of at least 0.1.
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(&SamplingParams {
            min_p: 0.2,
            ..params(1.0, 1.0, 0, 3)
        });
        let mut seen = [0usize; 4];
        for _ in 0..3000 {
            seen[s.sample(&logits).unwrap() as usize] += 1;
        }
        assert_eq!(seen[3], 0, "{seen:?}");
        assert!(seen[2] > 0, "{seen:?}");
    }

    /// Allows even tokens only, and records what the sampler asked.
    struct EvenOnly(std::sync::Arc<std::sync::Mutex<(usize, Vec<TokenId>)>>);

    impl Constraint for EvenOnly {
        fn allows(&mut self, token: TokenId) -> bool {
            token % 2 == 0
        }
        fn mask(&mut self, logits: &mut [f32]) {
            self.0.lock().unwrap().0 += 1;
            for (i, l) in logits.iter_mut().enumerate() {
                if i % 2 == 1 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        fn accept(&mut self, token: TokenId) {
            self.0.lock().unwrap().1.push(token);
        }
    }

    #[test]
    fn a_constraint_is_obeyed_and_masks_only_when_it_must() {
        let log = std::sync::Arc::new(std::sync::Mutex::new((0, Vec::new())));
        let mut s = Sampler::new(&params(0.0, 1.0, 0, 1))
            .with_constraint(Some(Box::new(EvenOnly(log.clone()))));
        assert_eq!(s.sample(&[0.0, 5.0, 1.0]).unwrap(), 2);
        assert_eq!(s.sample(&[3.0, 1.0, 0.0]).unwrap(), 0);
        assert_eq!(*log.lock().unwrap(), (1, vec![2, 0]));
        let mut s = Sampler::new(&params(1.0, 1.0, 0, 9))
            .with_constraint(Some(Box::new(EvenOnly(log.clone()))));
        for _ in 0..200 {
            assert_eq!(s.sample(&[0.0, 0.5, 0.2, 0.4]).unwrap() % 2, 0);
        }
    }

    #[test]
    fn logprobs_are_normalised() {
        let logits = [1.0, 2.0, 3.0];
        let lse = log_sum_exp(&logits);
        let top = top_logprobs(&logits, lse, 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1, 0]);
        let total: f32 = top.iter().map(|t| t.1.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn tokens_excluded_with_minus_infinity_are_never_alternatives() {
        let fused = [1.0f32, f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY];
        let listed = top_logprobs(&fused, log_sum_exp(&fused), 4);
        assert_eq!(listed.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 2]);
        assert!(listed.iter().all(|t| t.1.is_finite()));
    }
}
