//! Drafts without a draft model: continuations of the text so far found earlier in the same text
//! (prompt lookup), or in earlier requests' prompts and answers (the suffix cache).
//!
//! Both look for the longest tail of the context, up to [`MAX_MATCH`] tokens, that occurs
//! before, and propose the tokens that followed its latest occurrence. The suffix cache keeps the
//! token sequences of finished requests per tenant (an opaque id the server derives from the API
//! key, so one key's text never drafts for another), bounded by a token budget: the oldest
//! sequences go first. SuffixDecoding (Oliaro et al., arXiv 2411.04975) indexes the same material
//! in a suffix tree with frequencies; a linear scan over a few hundred thousand tokens costs well
//! under a millisecond per step next to decode steps of tens of milliseconds, so the index is
//! left for when budgets grow.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tandem_core::TokenId;

/// The longest context tail a lookup tries to match.
pub const MAX_MATCH: usize = 8;

/// The continuation of the longest tail of `context` (at least `min_match` tokens) that occurs
/// in `haystack` followed by at least one token, up to `max` tokens of what follows its latest
/// occurrence. With `haystack` the context itself, the tail's own place is never a match, since
/// nothing follows it. Returns the match length and the drafted tokens.
pub fn continuation(
    haystack: &[TokenId],
    context: &[TokenId],
    min_match: usize,
    max: usize,
) -> Option<(usize, Vec<TokenId>)> {
    let longest = MAX_MATCH.min(context.len());
    for n in (min_match.max(1)..=longest).rev() {
        let tail = &context[context.len() - n..];
        // Start positions whose match is followed by at least one token, latest first.
        let Some(last_start) = haystack.len().checked_sub(n + 1) else {
            continue;
        };
        for start in (0..=last_start).rev() {
            if &haystack[start..start + n] == tail {
                let from = start + n;
                let to = (from + max).min(haystack.len());
                return Some((n, haystack[from..to].to_vec()));
            }
        }
    }
    None
}

/// Earlier requests' token sequences, per tenant, within a token budget.
pub struct SuffixCache {
    budget: usize,
    tenants: Mutex<HashMap<String, Tenant>>,
}

#[derive(Default)]
struct Tenant {
    sequences: VecDeque<Arc<Vec<TokenId>>>,
    tokens: usize,
}

impl SuffixCache {
    /// A cache of at most `budget` tokens per tenant.
    pub fn new(budget: usize) -> Self {
        SuffixCache {
            budget,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers a finished request's prompt and answer for `tenant`.
    pub fn insert(&self, tenant: &str, sequence: Vec<TokenId>) {
        if sequence.len() > self.budget || sequence.is_empty() {
            return;
        }
        let mut tenants = self.tenants.lock().expect("suffix cache lock");
        let entry = tenants.entry(tenant.to_string()).or_default();
        entry.tokens += sequence.len();
        entry.sequences.push_back(Arc::new(sequence));
        while entry.tokens > self.budget {
            let oldest = entry
                .sequences
                .pop_front()
                .expect("over budget means not empty");
            entry.tokens -= oldest.len();
        }
    }

    /// The sequences cached for `tenant`, newest first.
    pub fn sequences(&self, tenant: &str) -> Vec<Arc<Vec<TokenId>>> {
        let tenants = self.tenants.lock().expect("suffix cache lock");
        tenants
            .get(tenant)
            .map(|t| t.sequences.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Tokens held for `tenant`.
    pub fn tokens(&self, tenant: &str) -> usize {
        let tenants = self.tenants.lock().expect("suffix cache lock");
        tenants.get(tenant).map_or(0, |t| t.tokens)
    }
}

/// The best draft for `context` from the context itself and from `sequences`: the longest match
/// wins, the context itself on a tie.
pub fn best_continuation(
    context: &[TokenId],
    sequences: &[Arc<Vec<TokenId>>],
    min_match: usize,
    max: usize,
) -> Option<Vec<TokenId>> {
    let mut best = continuation(context, context, min_match, max);
    for sequence in sequences {
        let floor = best.as_ref().map_or(min_match, |(n, _)| n + 1);
        if floor > MAX_MATCH {
            break;
        }
        if let Some(found) = continuation(sequence, context, floor, max) {
            best = Some(found);
        }
    }
    best.map(|(_, drafts)| drafts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lookup_continues_the_latest_earlier_occurrence() {
        //            0  1  2  3  4  5  6  7  8  9
        let context = [1, 2, 3, 4, 9, 2, 3, 5, 7, 2, 3];
        // Tail [2, 3] occurs at 5 (followed by 5, 7) and at 1; the latest wins.
        assert_eq!(
            continuation(&context, &context, 1, 3),
            Some((2, vec![5, 7, 2]))
        );
        // A longer tail takes precedence over a more recent shorter one.
        let context = [7, 2, 3, 4, 2, 3, 8, 7, 2, 3];
        assert_eq!(
            continuation(&context, &context, 1, 2),
            Some((3, vec![4, 2]))
        );
        assert_eq!(continuation(&[1, 2, 3], &[1, 2, 3], 1, 4), None);
    }

    #[test]
    fn the_suffix_cache_keeps_tenants_apart_and_its_budget() {
        let cache = SuffixCache::new(10);
        cache.insert("a", vec![1, 2, 3, 4, 5, 6]);
        cache.insert("b", vec![1, 2, 3, 9, 9, 9]);
        let context = [8, 1, 2, 3];
        let a = best_continuation(&context, &cache.sequences("a"), 2, 2);
        let b = best_continuation(&context, &cache.sequences("b"), 2, 2);
        assert_eq!(a, Some(vec![4, 5]));
        assert_eq!(b, Some(vec![9, 9]));
        assert_eq!(
            best_continuation(&context, &cache.sequences("c"), 2, 2),
            None
        );
        // Six more tokens for "a" push its first sequence out.
        cache.insert("a", vec![7, 7, 7, 7, 7, 7]);
        assert_eq!(cache.tokens("a"), 6);
        assert_eq!(
            best_continuation(&context, &cache.sequences("a"), 2, 2),
            None
        );
    }
}
