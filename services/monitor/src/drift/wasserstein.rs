//! The first Wasserstein distance (earth mover's distance) between two samples, normalised by the
//! reference's standard deviation as Evidently does, so one threshold fits every feature's scale.

/// W1 between two sorted samples: ∫ |F_a(x) − F_b(x)| dx, as `scipy.stats.wasserstein_distance`.
pub fn distance(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut x = a[0].min(b[0]);
    let mut total = 0.0;
    // Walk the merged values; between consecutive ones both CDFs are constant.
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        total += (i as f64 / na - j as f64 / nb).abs() * (next - x);
        x = next;
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
    }
    total
}

/// W1 divided by the reference's (population) standard deviation, floored at 0.001 as Evidently.
pub fn normalised(reference: &[f64], current: &[f64], reference_std: f64) -> f64 {
    distance(reference, current) / reference_std.max(0.001)
}
