//! Verification of a draft against the target's distributions: which drafted tokens stand, and
//! the one token the target adds after them.
//!
//! Greedy requests keep a drafted token while it is the target's argmax. Sampled requests use the
//! rejection sampling of Leviathan et al. (2023) and Chen et al. (2023): drafted token `x` drawn
//! from `q` stands with probability `min(1, p(x)/q(x))`; at the first rejection the target's token
//! is drawn from `norm(max(0, p - q))`, and when every draft stands, from `p` at the next
//! position. The emitted tokens then follow `p` exactly, whatever `q` is. A draft source without
//! a distribution (prompt lookup, the suffix cache) proposes one token with certainty: `q` is one
//! there, so `x` stands with probability `p(x)` and the replacement is drawn from `p` without `x`.

use rand::Rng;
use tandem_core::sampling::{argmax, draw};
use tandem_core::TokenId;

/// How the draft proposed a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    /// Drawn from this distribution over the vocabulary (the draft model's, under the request's
    /// sampling settings).
    Sampled(Vec<f32>),
    /// Chosen without a distribution (a lookup), or greedily.
    Certain,
}

/// The outcome of verifying `drafts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Leading drafted tokens that stand.
    pub accepted: usize,
    /// The target's token after them: a correction, or a bonus when every draft stood.
    pub next: TokenId,
}

/// Greedy verification. `target_rows[i]` holds the target's logits for the position of
/// `drafts[i]`; one more row follows for the bonus token.
pub fn greedy<'a>(drafts: &[TokenId], target_rows: impl Fn(usize) -> &'a [f32]) -> Verdict {
    for (i, &draft) in drafts.iter().enumerate() {
        let best = argmax(target_rows(i));
        if best != draft {
            return Verdict {
                accepted: i,
                next: best,
            };
        }
    }
    Verdict {
        accepted: drafts.len(),
        next: argmax(target_rows(drafts.len())),
    }
}

/// Rejection-sampling verification. `p(i)` is the target's distribution (under the request's
/// settings) at the position of `drafts[i]`, with one more for the bonus; `proposals[i]` says how
/// `drafts[i]` was proposed.
pub fn sampled(
    drafts: &[TokenId],
    proposals: &[Proposal],
    p: impl Fn(usize) -> Vec<f32>,
    rng: &mut impl Rng,
) -> Verdict {
    for (i, (&x, proposal)) in drafts.iter().zip(proposals).enumerate() {
        let mut target = p(i);
        let px = target[x as usize];
        let qx = match proposal {
            Proposal::Sampled(q) => q[x as usize],
            Proposal::Certain => 1.0,
        };
        // `u < p/q`, written without the division; q(x) > 0 since x was drawn from q.
        if rng.random::<f32>() * qx < px {
            continue;
        }
        match proposal {
            Proposal::Sampled(q) => {
                for (t, &qt) in target.iter_mut().zip(q) {
                    *t = (*t - qt).max(0.0);
                }
            }
            Proposal::Certain => target[x as usize] = 0.0,
        }
        // A residual of zero mass means p equals q up to rounding, so x stood with probability
        // one and this branch is rounding: any draw from p is then as good.
        let next = draw(&target, rng)
            .unwrap_or_else(|| draw(&p(i), rng).expect("a probability distribution has mass"));
        return Verdict { accepted: i, next };
    }
    let bonus = p(drafts.len());
    Verdict {
        accepted: drafts.len(),
        next: draw(&bonus, rng).expect("a probability distribution has mass"),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn greedy_keeps_drafts_while_they_are_the_argmax() {
        let rows = [
            vec![0.0, 2.0, 1.0],
            vec![3.0, 0.0, 1.0],
            vec![0.0, 0.0, 5.0],
        ];
        assert_eq!(
            greedy(&[1, 0], |i| &rows[i]),
            Verdict {
                accepted: 2,
                next: 2
            }
        );
        assert_eq!(
            greedy(&[1, 2], |i| &rows[i]),
            Verdict {
                accepted: 1,
                next: 0
            }
        );
        assert_eq!(
            greedy(&[], |i| &rows[i]),
            Verdict {
                accepted: 0,
                next: 1
            }
        );
    }

    /// The first emitted token of a one-token draft over many seeds, for a draft that proposes
    /// from `q` (or with certainty), must follow `p`.
    fn first_token_shares(
        p: &[f32],
        proposal: &dyn Fn(&mut ChaCha8Rng) -> (TokenId, Proposal),
    ) -> Vec<f64> {
        let runs = 40_000;
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut seen = vec![0usize; p.len()];
        for _ in 0..runs {
            let (x, prop) = proposal(&mut rng);
            let verdict = sampled(&[x], &[prop], |_| p.to_vec(), &mut rng);
            let first = if verdict.accepted == 1 {
                x
            } else {
                verdict.next
            };
            seen[first as usize] += 1;
        }
        seen.iter().map(|&n| n as f64 / runs as f64).collect()
    }

    #[test]
    fn rejection_sampling_keeps_the_target_distribution() {
        let p = [0.5f32, 0.3, 0.15, 0.05];
        let q = vec![0.1f32, 0.2, 0.3, 0.4];
        let sampled_draft = |rng: &mut ChaCha8Rng| {
            let x = draw(&q, rng).unwrap();
            (x, Proposal::Sampled(q.clone()))
        };
        let certain_draft = |_: &mut ChaCha8Rng| (3, Proposal::Certain);
        for shares in [
            first_token_shares(&p, &sampled_draft),
            first_token_shares(&p, &certain_draft),
        ] {
            for (share, &want) in shares.iter().zip(&p) {
                // Four binomial standard deviations at 40000 runs are under 0.01.
                assert!(
                    (share - f64::from(want)).abs() < 0.01,
                    "{shares:?} vs {p:?}"
                );
            }
        }
    }
}
