//! Statistics that every measure shares: the Wilson interval of a proportion, used for scores,
//! wrong-hit bounds and false-positive budgets alike.

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval for `passed` successes out of `n` (95%); `(0, 1)` when `n` is 0.
pub fn wilson(passed: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = passed as f64 / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Computed independently (Python) from Wilson's formula with z = 1.959964.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        let (lo, hi) = wilson(81, 164);
        assert!(close(lo, 0.41840) && close(hi, 0.56968), "{lo} {hi}");
        let (lo, hi) = wilson(0, 10);
        assert!(lo == 0.0 && close(hi, 0.27753), "{hi}");
        let (lo, hi) = wilson(10, 10);
        assert!(close(lo, 0.72247) && close(hi, 1.0), "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }
}
