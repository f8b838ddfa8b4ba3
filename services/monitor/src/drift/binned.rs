//! The chi-square goodness-of-fit test on binned distributions (PSI and the Jensen–Shannon
//! distance are in `mlops_shared::stats::divergence`), and the equal-width binning Evidently uses
//! for numeric columns.

/// Pearson's chi-square goodness of fit of the current counts to the reference shares scaled to
/// the current total (Evidently's `chisquare`): the p-value. Bins empty in both are left out; a
/// bin the reference never saw but the window did makes the p-value 0.
pub fn chi_square_p(reference_shares: &[f64], current: &[u64]) -> f64 {
    let n: f64 = current.iter().sum::<u64>() as f64;
    let total_share: f64 = reference_shares.iter().sum();
    if n == 0.0 || total_share <= 0.0 {
        return 1.0;
    }
    let (mut stat, mut bins) = (0.0, 0usize);
    for (&share, &obs) in reference_shares.iter().zip(current) {
        let expected = share / total_share * n;
        let obs = obs as f64;
        if expected == 0.0 {
            if obs > 0.0 {
                return 0.0;
            }
            continue;
        }
        bins += 1;
        stat += (obs - expected).powi(2) / expected;
    }
    if bins < 2 {
        return 1.0;
    }
    mlops_shared::stats::chi2_sf(stat, (bins - 1) as f64)
}

/// `bins` equal-width bins over the range of both samples, as `numpy.histogram_bin_edges(a + b,
/// bins)`, and each sample's counts in them as `numpy.histogram` (the last bin holds its right
/// edge; a value on an inner edge goes to the bin above, after the same correction numpy makes
/// for rounding).
pub fn equal_width_counts(a: &[f64], b: &[f64], bins: usize) -> (Vec<u64>, Vec<u64>) {
    let (mut lo, mut hi) =
        a.iter().chain(b).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if !(lo.is_finite() && hi.is_finite()) {
        (lo, hi) = (0.0, 1.0);
    }
    if lo == hi {
        // numpy widens a zero range by half a unit on each side.
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let bins = bins.max(1);
    let step = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|k| if k == bins { hi } else { lo + k as f64 * step }).collect();
    let norm = bins as f64 / (hi - lo);
    let counts = |v: &[f64]| {
        let mut counts = vec![0u64; bins];
        for &x in v {
            let mut i = (((x - lo) * norm) as usize).min(bins - 1);
            if x < edges[i] {
                i -= 1;
            } else if i + 1 < bins && x >= edges[i + 1] {
                i += 1;
            }
            counts[i] += 1;
        }
        counts
    };
    (counts(a), counts(b))
}
