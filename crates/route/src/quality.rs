//! How good a routing score is, measured on held-out items whose outcomes with both models are
//! known, with RouteLLM's metrics.
//!
//! Sending the items with the highest scores to the large model, for every share of large-model
//! calls from 0 to 1, traces quality from the small model's to the large model's. The performance
//! gap recovered at a share is `(quality - small) / (large - small)`; **APGR** is its mean over
//! all shares (the area under that curve: 0.5 for random routing in expectation), and
//! **CPT(p)** is the smallest share of large-model calls that recovers a fraction `p` of the gap.
//!
//! Calibration turns a target share of large-model calls into a threshold on a sample of traffic:
//! [`threshold_for_share`] for a router (which sends scores at or above it to the large model),
//! [`escalation_threshold`] for a cascade (which escalates answers scoring under it).

use serde::Serialize;

use crate::cascade::escalates;

/// One held-out item: the router's score and whether each model passed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub small_passed: bool,
    pub large_passed: bool,
}

/// A point of the quality curve: routing the `large_calls` highest-scored items to the large model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub large_share: f64,
    pub quality: f64,
    /// The score at and above which items went to the large model (`None` at share 0).
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingQuality {
    pub items: usize,
    pub small_quality: f64,
    pub large_quality: f64,
    /// Routing every item the large model passes and the small one fails, and nothing else.
    pub oracle_quality: f64,
    pub oracle_large_share: f64,
    /// `None` when the large model is not better than the small one: there is no gap to recover.
    pub apgr: Option<f64>,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    pub curve: Vec<CurvePoint>,
}

/// The quality curve and its metrics. Items of equal score cannot be told apart by a threshold, so
/// along a run of ties the curve is what routing a random part of them gives in expectation: each
/// step of the run adds the run's mean change. (Breaking ties by item order instead made a coarse
/// score, such as one that leaves many items at the same value, look better or worse by chance.)
pub fn routing_quality(items: &[Scored]) -> RoutingQuality {
    let n = items.len();
    let passed = |b: bool| if b { 1.0 } else { 0.0 };
    let small_total: f64 = items.iter().map(|i| passed(i.small_passed)).sum();
    let per_item = |total: f64| if n == 0 { 0.0 } else { total / n as f64 };

    let mut curve = Vec::with_capacity(n + 1);
    let mut total = small_total;
    curve.push(CurvePoint {
        large_share: 0.0,
        quality: per_item(total),
        threshold: None,
    });
    let mut routed = 0;
    for (score, ties) in ties_highest_first(items, |i| i.score) {
        let gain: f64 = ties
            .iter()
            .map(|i| passed(i.large_passed) - passed(i.small_passed))
            .sum::<f64>()
            / ties.len() as f64;
        for _ in &ties {
            total += gain;
            routed += 1;
            curve.push(CurvePoint {
                large_share: routed as f64 / n as f64,
                quality: per_item(total),
                threshold: Some(score),
            });
        }
    }
    let small_quality = per_item(small_total);
    let large_quality = curve.last().map_or(0.0, |p| p.quality);
    let helped = items
        .iter()
        .filter(|i| i.large_passed && !i.small_passed)
        .count();
    let gap = large_quality - small_quality;
    let recovered = |p: &CurvePoint| (p.quality - small_quality) / gap;
    let (apgr, cpt50, cpt80) = if gap > 0.0 && n > 0 {
        // The trapezoid rule over the n + 1 equally spaced shares.
        let area: f64 = curve
            .windows(2)
            .map(|w| (recovered(&w[0]) + recovered(&w[1])) / 2.0)
            .sum::<f64>()
            / n as f64;
        let cpt = |target: f64| {
            curve
                .iter()
                .find(|p| recovered(p) >= target - 1e-12)
                .map(|p| p.large_share)
        };
        (Some(area), cpt(0.5), cpt(0.8))
    } else {
        (None, None, None)
    };
    RoutingQuality {
        items: n,
        small_quality,
        large_quality,
        oracle_quality: per_item(small_total + helped as f64),
        oracle_large_share: per_item(helped as f64),
        apgr,
        cpt50,
        cpt80,
        curve,
    }
}

/// The router threshold that sends the share of `scores` closest to `large_share` to the large
/// model: items scoring at or above it go large. `None` for an empty sample.
///
/// The candidates are the achievable cuts: each distinct score (sending it and every higher one
/// large), and infinity (sending nothing). Equal scores fall on the same side, so with ties the
/// share reached can differ from the one asked, but never by more than the nearest cut does;
/// between two equally close shares the larger is taken, erring toward the large model. A NaN
/// score never goes large.
pub fn threshold_for_share(scores: &[f64], large_share: f64) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let target = large_share.clamp(0.0, 1.0) * scores.len() as f64;
    let routed = |threshold: f64| scores.iter().filter(|s| **s >= threshold).count();
    std::iter::once(f64::INFINITY)
        .chain(scores.iter().copied().filter(|s| !s.is_nan()))
        .map(|threshold| (threshold, routed(threshold)))
        .min_by(|a, b| {
            let miss = |n: usize| (n as f64 - target).abs();
            miss(a.1).total_cmp(&miss(b.1)).then(b.1.cmp(&a.1))
        })
        .map(|(threshold, _)| threshold)
}

/// The cascade threshold that escalates the share of a sample closest to `escalate_share`, with
/// how many of the sample it escalates; `None` for an empty sample. `scores` are the small model's
/// answers scored by the cascade's signal, in [0, 1]; `None` (and NaN) is a request it could not
/// score, which escalates at any threshold (see [`escalates`]).
///
/// The candidates are 0 (escalate only those), each score (escalate every answer scoring under
/// it), and a value above every score and above 1 (escalate everything). Equal scores fall on the
/// same side, so with ties the share reached can differ from the one asked; between two equally
/// close shares the larger is taken, as [`threshold_for_share`] errs toward the large model.
pub fn escalation_threshold(scores: &[Option<f64>], escalate_share: f64) -> Option<(f64, usize)> {
    if scores.is_empty() {
        return None;
    }
    let target = escalate_share.clamp(0.0, 1.0) * scores.len() as f64;
    let scored = scores.iter().flatten().copied().filter(|s| !s.is_nan());
    let above_all = scored.clone().fold(1.0, f64::max).next_up();
    let escalated = |threshold: f64| scores.iter().filter(|s| escalates(**s, threshold)).count();
    std::iter::once(0.0)
        .chain(scored)
        .chain([above_all])
        .map(|threshold| (threshold, escalated(threshold)))
        // The first of the closest, then of the most escalating: with no score between them, 0
        // comes before the lowest score (the same escalations) and is kept.
        .min_by(|a, b| {
            let miss = |n: usize| (n as f64 - target).abs();
            miss(a.1).total_cmp(&miss(b.1)).then(b.1.cmp(&a.1))
        })
}

/// `items` grouped by equal score, highest score first.
pub fn ties_highest_first<T>(items: &[T], score: impl Fn(&T) -> f64) -> Vec<(f64, Vec<&T>)> {
    let mut order: Vec<&T> = items.iter().collect();
    order.sort_by(|a, b| score(b).total_cmp(&score(a)));
    let mut runs: Vec<(f64, Vec<&T>)> = Vec::new();
    for item in order {
        match runs.last_mut() {
            Some((s, run)) if *s == score(item) => run.push(item),
            _ => runs.push((score(item), vec![item])),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(score: f64, small_passed: bool, large_passed: bool) -> Scored {
        Scored {
            score,
            small_passed,
            large_passed,
        }
    }

    #[test]
    fn a_perfect_score_recovers_the_gap_with_the_fewest_large_calls() {
        // Two items only the large model passes, scored highest; two both pass.
        let items = [
            item(0.9, false, true),
            item(0.8, false, true),
            item(0.2, true, true),
            item(0.1, true, true),
        ];
        let q = routing_quality(&items);
        assert_eq!(q.small_quality, 0.5);
        assert_eq!(q.large_quality, 1.0);
        assert_eq!(q.oracle_large_share, 0.5);
        assert_eq!(q.cpt50, Some(0.25));
        assert_eq!(q.cpt80, Some(0.5));
        // Recovered fraction at shares 0, .25, .5, .75, 1: 0, .5, 1, 1, 1.
        let expected = (0.25 + 0.75 + 1.0 + 1.0) / 4.0;
        assert!((q.apgr.unwrap() - expected).abs() < 1e-12);
        assert_eq!(q.curve[2].threshold, Some(0.8));
    }

    #[test]
    fn tied_scores_count_as_routing_a_random_part_of_them_whatever_the_item_order() {
        // Four items of one score, of which only the last needs the large model, and one item
        // of a higher score that both pass.
        let mut items = vec![
            item(0.5, true, true),
            item(0.5, true, true),
            item(0.5, false, false),
            item(0.5, false, true),
            item(0.9, true, true),
        ];
        let q = routing_quality(&items);
        let qualities: Vec<f64> = q.curve.iter().map(|p| p.quality).collect();
        // 3/5 right with the small model; the run of ties recovers its one item a quarter at a
        // time.
        let expected = [0.6, 0.6, 0.65, 0.7, 0.75, 0.8];
        for (got, want) in qualities.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{qualities:?}");
        }
        assert!((q.apgr.unwrap() - 0.4).abs() < 1e-12, "{:?}", q.apgr);
        // The order of the tied items changes nothing.
        items.reverse();
        assert_eq!(routing_quality(&items).curve, q.curve);
    }

    #[test]
    fn a_reversed_score_recovers_late_and_no_gap_means_no_metric() {
        let items = [item(0.1, false, true), item(0.9, true, true)];
        let q = routing_quality(&items);
        assert_eq!(q.cpt50, Some(1.0));
        assert!((q.apgr.unwrap() - 0.25).abs() < 1e-12);
        let same = routing_quality(&[item(0.5, true, true)]);
        assert_eq!(same.apgr, None);
    }

    /// How many of `scores` a router at `threshold` sends to the large model.
    fn routed(scores: &[f64], threshold: f64) -> usize {
        scores.iter().filter(|s| **s >= threshold).count()
    }

    #[test]
    fn tied_router_scores_take_the_closest_achievable_share() {
        // Eight prompts no training neighbour needed the large model for (a nearest-neighbour
        // router's 0), two others.
        let mut scores = vec![0.0; 8];
        scores.extend([0.2, 0.9]);
        // Asked 3 of 10: 2 (at or above 0.2) is the closest cut, not all 10 (at or above 0).
        for (share, expected) in [(0.3, 2), (0.5, 2), (0.1, 1), (0.8, 10), (1.0, 10), (0.0, 0)] {
            let t = threshold_for_share(&scores, share).unwrap();
            assert_eq!(routed(&scores, t), expected, "share {share}: threshold {t}");
        }
        assert_eq!(threshold_for_share(&scores, 0.3), Some(0.2));
        assert_eq!(threshold_for_share(&scores, 0.0), Some(f64::INFINITY));
        assert_eq!(threshold_for_share(&scores, 1.0), Some(0.0));
        // All equal: all or nothing, and the larger on a tie.
        let same = [0.5; 4];
        assert_eq!(threshold_for_share(&same, 0.25), Some(f64::INFINITY));
        assert_eq!(threshold_for_share(&same, 0.5), Some(0.5));
        assert_eq!(threshold_for_share(&same, 1.0), Some(0.5));
        // A NaN score stays small at every threshold.
        let nan = [f64::NAN, 0.3, 0.6];
        assert_eq!(threshold_for_share(&nan, 1.0), Some(0.3));
        assert_eq!(routed(&nan, 0.3), 2);
    }

    #[test]
    fn the_threshold_for_a_share_routes_that_share() {
        let scores = [0.1, 0.4, 0.3, 0.9, 0.5];
        let t = threshold_for_share(&scores, 0.4).unwrap();
        assert_eq!(scores.iter().filter(|s| **s >= t).count(), 2);
        assert_eq!(threshold_for_share(&scores, 0.0), Some(f64::INFINITY));
        assert_eq!(threshold_for_share(&scores, 1.0), Some(0.1));
        assert_eq!(threshold_for_share(&[], 0.3), None);
    }

    /// How many of `scores` a cascade at `threshold` escalates.
    fn escalated(scores: &[Option<f64>], threshold: f64) -> usize {
        scores.iter().filter(|s| escalates(**s, threshold)).count()
    }

    #[test]
    fn the_escalation_threshold_escalates_the_lowest_scores() {
        let scores = [Some(0.9), Some(0.1), Some(0.5), Some(0.3), Some(0.7)];
        let (t, n) = escalation_threshold(&scores, 0.4).unwrap();
        assert_eq!((t, n), (0.5, 2));
        assert_eq!(escalated(&scores, t), 2);
        // The two lowest go to the large model, the highest stay with the small one.
        assert!(escalates(Some(0.1), t) && escalates(Some(0.3), t));
        assert!(!escalates(Some(0.5), t) && !escalates(Some(0.9), t));
        assert_eq!(escalation_threshold(&scores, 0.6), Some((0.7, 3)));
    }

    #[test]
    fn shares_zero_and_one_escalate_nothing_scored_and_everything() {
        let scores = [Some(0.0), Some(0.4), Some(1.0), None];
        // Nothing with a score escalates at 0, not even a score of 0; the unscored always does.
        assert_eq!(escalation_threshold(&scores, 0.0), Some((0.0, 1)));
        let (t, n) = escalation_threshold(&scores, 1.0).unwrap();
        assert_eq!(n, 4);
        assert!(t > 1.0 && escalates(Some(1.0), t), "{t}");
        let (t, n) = escalation_threshold(&[Some(0.2), Some(0.3)], 1.0).unwrap();
        assert_eq!(n, 2);
        assert!(
            t > 1.0,
            "above every score a signal gives, not only the sample's: {t}"
        );
        assert_eq!(escalation_threshold(&[], 0.3), None);
    }

    #[test]
    fn tied_scores_stay_together_and_the_closest_share_wins() {
        let scores = [Some(0.2), Some(0.5), Some(0.5), Some(0.5), Some(0.9)];
        // Asked 2 of 5: escalating 1 (under 0.5) is closer than 4 (under 0.9).
        assert_eq!(escalation_threshold(&scores, 0.4), Some((0.5, 1)));
        // Asked 3 of 5: 4 is closer than 1.
        assert_eq!(escalation_threshold(&scores, 0.6), Some((0.9, 4)));
        // Asked 2 of 4 with 1 and 3 equally close: the larger share.
        let even = [Some(0.2), Some(0.5), Some(0.5), Some(0.9)];
        assert_eq!(escalation_threshold(&even, 0.5), Some((0.9, 3)));
        // All equal: all or nothing, and the larger on a tie.
        let same = [Some(0.7); 4];
        assert_eq!(escalation_threshold(&same, 0.25), Some((0.0, 0)));
        let (t, n) = escalation_threshold(&same, 0.5).unwrap();
        assert_eq!(n, 4);
        assert!(t > 1.0);
    }

    #[test]
    fn heavy_ties_take_the_closest_achievable_share_from_zero_to_one() {
        // Eight answers scoring the same (a signal with few values: agreement of two samples,
        // examples passed), one under them, one over, and one the small model could not answer.
        let mut scores = vec![Some(0.5); 8];
        scores.extend([Some(0.1), Some(0.9), None]);
        let cases = [
            (0.0, 1),
            (0.1, 1),
            (0.2, 2),
            (0.3, 2),
            (0.5, 2),
            (0.6, 10),
            (0.9, 10),
            (1.0, 11),
        ];
        for (share, expected) in cases {
            let (t, n) = escalation_threshold(&scores, share).unwrap();
            assert_eq!(n, expected, "share {share}: threshold {t}");
            assert_eq!(escalated(&scores, t), n, "share {share}: threshold {t}");
        }
        assert_eq!(escalation_threshold(&scores, 0.3), Some((0.5, 2)));
        assert_eq!(escalation_threshold(&scores, 0.9), Some((0.9, 10)));
    }

    #[test]
    fn unscored_requests_escalate_at_every_threshold() {
        let scores = [None, Some(0.4), Some(0.8), Some(f64::NAN)];
        assert_eq!(escalation_threshold(&scores, 0.5), Some((0.0, 2)));
        assert_eq!(escalation_threshold(&scores, 0.75), Some((0.8, 3)));
        assert_eq!(escalated(&scores, 0.8), 3);
    }
}
