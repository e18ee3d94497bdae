//! The arithmetic of fusion and hand-off, on one position's logits rows: contrastive scores,
//! proxy-tuned logits, and the uncertainty of a distribution. No models here, so every formula is
//! tested on rows written by hand.

use serde::{Deserialize, Serialize};

/// `ln softmax(logits)`, computed stably in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = f64::from(max) + sum.ln();
    logits.iter().map(|&l| f64::from(l) - lse).collect()
}

/// Contrastive decoding (Li et al., 2023): the score of token `t` is
/// `ln p_L(t) - alpha * ln p_S(t)` over the tokens the large model finds plausible,
/// `p_L(t) >= beta * max p_L`; every other token scores minus infinity, so it is never chosen.
/// Returns the scores (to sample from as logits) and the number of plausible tokens.
///
/// `alpha = 0` gives the large model's own distribution within the plausible set; `beta = 1`
/// keeps only the large model's argmax (ties aside).
pub fn contrastive(large: &[f32], small: &[f32], alpha: f32, beta: f32) -> (Vec<f32>, usize) {
    assert_eq!(large.len(), small.len(), "rows of one vocabulary");
    let lp_large = log_softmax(large);
    let lp_small = log_softmax(small);
    let best = lp_large.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // p >= beta * max p, in logs; beta = 0 keeps every token (ln 0 is minus infinity).
    let cutoff = best + f64::from(beta).ln();
    let alpha = f64::from(alpha);
    let mut plausible = 0;
    let scores = lp_large
        .iter()
        .zip(&lp_small)
        .map(|(&l, &s)| {
            if l >= cutoff {
                plausible += 1;
                (l - alpha * s) as f32
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    (scores, plausible)
}

/// Proxy-tuning (Liu et al., 2024): `large + (tuned - untuned)`, logit by logit. Log-softmax
/// normalisers are one constant per row, so the raw logits give the same distribution as the
/// log probabilities would.
pub fn proxy_tune(large: &[f32], tuned: &[f32], untuned: &[f32]) -> Vec<f32> {
    assert!(
        large.len() == tuned.len() && tuned.len() == untuned.len(),
        "rows of one vocabulary"
    );
    large
        .iter()
        .zip(tuned)
        .zip(untuned)
        .map(|((&l, &t), &u)| l + (t - u))
        .collect()
}

/// How a hand-off pipeline measures the small model's uncertainty at a position (its own
/// distribution, temperature 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Uncertainty {
    /// Unsure when the most probable token's probability is at most the threshold: 0 never hands
    /// off, 1 always does.
    TopProbability,
    /// Unsure when the entropy, in nats, is at least the threshold: 0 always hands off, anything
    /// above `ln(vocabulary size)` never does.
    Entropy,
}

impl Uncertainty {
    /// Whether the small model is unsure at a position whose logits are `logits`.
    pub fn unsure(self, logits: &[f32], threshold: f64) -> bool {
        match self {
            Uncertainty::TopProbability => top_probability(logits) <= threshold,
            Uncertainty::Entropy => entropy(logits) >= threshold,
        }
    }
}

/// The probability of the most probable token.
pub fn top_probability(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    1.0 / sum
}

/// The entropy of `softmax(logits)`, in nats.
pub fn entropy(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = weights.iter().sum();
    // H = ln Z - sum(w x) / Z, with x the shifted logits and w = e^x.
    let weighted: f64 = weights
        .iter()
        .zip(logits)
        .filter(|(&w, _)| w > 0.0)
        .map(|(&w, &l)| w * f64::from(l - max))
        .sum();
    sum.ln() - weighted / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn log_softmax_normalises() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = lp.iter().map(|l| l.exp()).sum();
        assert!(close(total, 1.0));
        assert!(close(lp[2] - lp[1], 1.0));
    }

    #[test]
    fn contrastive_scores_follow_the_formula_over_the_plausible_set() {
        // p_L = (0.5, 0.3, 0.15, 0.05), p_S = (0.7, 0.1, 0.1, 0.1).
        let p_large = [0.5f32, 0.3, 0.15, 0.05];
        let p_small = [0.7f32, 0.1, 0.1, 0.1];
        let large: Vec<f32> = p_large.iter().map(|p| p.ln()).collect();
        // Logits are defined up to a constant: shift one row to show it does not matter.
        let small: Vec<f32> = p_small.iter().map(|p| p.ln() + 7.0).collect();
        let (scores, plausible) = contrastive(&large, &small, 0.5, 0.25);
        // beta 0.25: p >= 0.125 keeps the first three.
        assert_eq!(plausible, 3);
        for i in 0..3 {
            let want = f64::from(p_large[i]).ln() - 0.5 * f64::from(p_small[i]).ln();
            assert!(close(f64::from(scores[i]), want), "{i}: {scores:?}");
        }
        assert_eq!(scores[3], f32::NEG_INFINITY);
        // The small model's favourite loses its lead: 0.5/0.7^0.5 < 0.3/0.1^0.5.
        assert_eq!(tandem_core::sampling::argmax(&scores), 1);
    }

    #[test]
    fn contrastive_limits() {
        let large = [0.0f32, 1.0, 2.0];
        let small = [3.0f32, 0.0, 5.0];
        // alpha 0, beta 0: the large model's log probabilities, everything kept.
        let (scores, plausible) = contrastive(&large, &small, 0.0, 0.0);
        assert_eq!(plausible, 3);
        for (s, l) in scores.iter().zip(log_softmax(&large)) {
            assert!(close(f64::from(*s), l));
        }
        // beta 1: only the large model's argmax stays.
        let (scores, plausible) = contrastive(&large, &small, 10.0, 1.0);
        assert_eq!(plausible, 1);
        assert!(scores[2].is_finite() && scores[..2].iter().all(|s| s.is_infinite()));
    }

    #[test]
    fn proxy_tuning_adds_the_tuning_difference() {
        let fused = proxy_tune(&[1.0, 2.0], &[0.5, -1.0], &[0.0, 1.0]);
        assert_eq!(fused, [1.5, 0.0]);
        // Untuned equal to large: the tuned model alone; tuned equal to untuned: the large alone.
        assert_eq!(
            proxy_tune(&[1.0, 2.0], &[3.0, 4.0], &[1.0, 2.0]),
            [3.0, 4.0]
        );
        assert_eq!(
            proxy_tune(&[1.0, 2.0], &[3.0, 4.0], &[3.0, 4.0]),
            [1.0, 2.0]
        );
    }

    #[test]
    fn uncertainty_measures() {
        let uniform = [0.0f32; 4];
        assert!(close(entropy(&uniform), 4f64.ln()));
        assert!(close(top_probability(&uniform), 0.25));
        let sure = [0.0f32, 200.0, 0.0];
        assert!(entropy(&sure) < 1e-6);
        assert!(close(top_probability(&sure), 1.0));
        let p = [0.5f64, 0.25, 0.25];
        let logits: Vec<f32> = p.iter().map(|p| p.ln() as f32).collect();
        let want: f64 = -p.iter().map(|p| p * p.ln()).sum::<f64>();
        assert!(close(entropy(&logits), want));

        // Threshold 0 never hands off by top probability, 1 always does.
        assert!(!Uncertainty::TopProbability.unsure(&sure, 0.0));
        assert!(Uncertainty::TopProbability.unsure(&sure, 1.0));
        assert!(Uncertainty::TopProbability.unsure(&uniform, 0.3));
        assert!(!Uncertainty::TopProbability.unsure(&uniform, 0.2));
        assert!(Uncertainty::Entropy.unsure(&uniform, 1.0));
        assert!(!Uncertainty::Entropy.unsure(&uniform, 2.0));
        assert!(Uncertainty::Entropy.unsure(&sure, 0.0));
    }
}
