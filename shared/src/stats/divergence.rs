//! How far one distribution over bins is from another: the population stability index and the
//! Jensen–Shannon divergence and distance. Each has one definition here; the services differ only
//! in how they turn counts into shares (see [`floored_shares`] and [`smoothed_shares`]), and each
//! spec key names the quantity it thresholds.

/// Counts as shares of their total (all zeros when the total is zero).
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}

/// Shares raised to at least `floor`, so that a bin empty on one side keeps PSI finite. With a
/// floor of [`EVIDENTLY_FLOOR`] this is Evidently's smoothing, right for large windows.
pub fn floored_shares(shares: &[f64], floor: f64) -> Vec<f64> {
    shares.iter().map(|&s| s.max(floor)).collect()
}

/// Evidently's floor for an empty bin's share in PSI.
pub const EVIDENTLY_FLOOR: f64 = 1e-4;

/// Shares over `bins` bins after adding `pseudo` to every bin's count (additive smoothing; a
/// count missing from the end of `counts` is zero). Half a count is Jeffreys' prior: an empty bin
/// of a small sample then weighs what the sample can tell, which suits a canary's first hundreds
/// of requests better than a fixed floor.
pub fn smoothed_shares(counts: &[u64], bins: usize, pseudo: f64) -> Vec<f64> {
    let total = counts.iter().sum::<u64>() as f64 + pseudo * bins as f64;
    (0..bins).map(|i| (counts.get(i).copied().unwrap_or(0) as f64 + pseudo) / total).collect()
}

/// The population stability index Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) of `actual` against `expected`
/// shares over the same bins. Both must be positive in every bin: smooth them first.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected.iter().zip(actual).map(|(&e, &a)| (a - e) * (a / e).ln()).sum()
}

/// The base of a logarithm, which sets the unit of a divergence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogBase {
    /// Bits: the Jensen–Shannon divergence then lies in [0, 1].
    Two,
    /// Nats: the Jensen–Shannon divergence then lies in [0, ln 2].
    E,
}

/// The Jensen–Shannon divergence between two distributions over the same bins, each normalised
/// to sum to one (0 when either is empty): the mean Kullback–Leibler divergence of each from their
/// midpoint, in the unit `base` gives.
pub fn js_divergence(p: &[f64], q: &[f64], base: LogBase) -> f64 {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if sp <= 0.0 || sq <= 0.0 {
        return 0.0;
    }
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).ln() } else { 0.0 };
    let nats: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            let m = (a + b) / 2.0;
            (kl(a, m) + kl(b, m)) / 2.0
        })
        .sum::<f64>()
        .max(0.0);
    match base {
        LogBase::E => nats,
        LogBase::Two => (nats / std::f64::consts::LN_2).min(1.0),
    }
}

/// The Jensen–Shannon distance: the square root of the divergence in nats, a metric in
/// [0, √ln 2], as `scipy.spatial.distance.jensenshannon` and Evidently compute it.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    js_divergence(p, q, LogBase::E).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn jensen_shannon_matches_scipy_in_each_unit() {
        // scipy.spatial.distance.jensenshannon(p, q) (base e) and its square with base=2.
        let (p, q) = ([0.5, 0.5], [0.9, 0.1]);
        assert!(close(js_divergence(&p, &q, LogBase::Two), 0.146_793_102_436_052_15, 1e-12));
        assert!(close(js_distance(&[0.5, 0.3, 0.2], &[0.3, 0.3, 0.4]), 0.172_114_731_038_121_78, 1e-12));
        let (p, q) = ([0.25, 0.25, 0.5, 0.0], [0.0, 0.5, 0.25, 0.25]);
        let bits = js_divergence(&p, &q, LogBase::Two);
        assert!(close(bits, 0.311_278_124_459_132_8, 1e-12), "{bits}");
        let nats = js_divergence(&p, &q, LogBase::E);
        assert!(close(bits * std::f64::consts::LN_2, nats, 1e-15), "{bits} {nats}");
        assert!(close(js_distance(&p, &q), nats.sqrt(), 1e-15));
        // Unnormalised counts give the same as their shares; identical and disjoint extremes.
        assert!(close(js_distance(&[5.0, 3.0, 2.0], &[3.0, 3.0, 4.0]), 0.172_114_731_038_121_78, 1e-12));
        assert_eq!(js_divergence(&[0.3, 0.7], &[0.3, 0.7], LogBase::Two), 0.0);
        assert!(close(js_divergence(&[1.0, 0.0], &[0.0, 1.0], LogBase::Two), 1.0, 1e-15));
        assert_eq!(js_distance(&[], &[1.0]), 0.0);
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_the_shift() {
        assert!(psi(&[0.2, 0.3, 0.5], &[0.2, 0.3, 0.5]).abs() < 1e-15);
        // By hand: (0.55 − 0.5)·ln(0.55/0.5) + (0.45 − 0.5)·ln(0.45/0.5).
        let small = psi(&[0.5, 0.5], &[0.55, 0.45]);
        assert!(close(small, 0.05 * (1.1f64).ln() - 0.05 * (0.9f64).ln(), 1e-15), "{small}");
        assert!(psi(&[0.5, 0.5], &[0.9, 0.1]) > small);
        // Symmetric in its arguments.
        assert!(close(psi(&[0.5, 0.5], &[0.9, 0.1]), psi(&[0.9, 0.1], &[0.5, 0.5]), 1e-15));
    }

    #[test]
    fn each_smoothing_keeps_empty_bins_finite() {
        assert_eq!(shares(&[1, 3]), [0.25, 0.75]);
        assert_eq!(shares(&[0, 0]), [0.0, 0.0]);
        assert_eq!(floored_shares(&[0.0, 1.0], EVIDENTLY_FLOOR), [EVIDENTLY_FLOOR, 1.0]);
        // Half a count each over three bins, one missing at the end: 1.5/4.5, 2.5/4.5, 0.5/4.5.
        let s = smoothed_shares(&[1, 2], 3, 0.5);
        assert!(s.iter().zip([1.5, 2.5, 0.5]).all(|(a, b)| close(*a, b / 4.5, 1e-15)), "{s:?}");
        assert!(psi(&smoothed_shares(&[1000, 0], 2, 0.5), &smoothed_shares(&[999, 1], 2, 0.5)) < 0.01);
        assert!(psi(&floored_shares(&[1.0, 0.0], EVIDENTLY_FLOOR), &[0.5, 0.5]).is_finite());
    }
}
