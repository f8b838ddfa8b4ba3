//! The two-sample Kolmogorov–Smirnov test: the largest gap between the two empirical CDFs, and
//! its p-value — exact, by counting the lattice paths that stay inside the gap (as scipy's
//! `ks_2samp` does up to 10,000 values a side), or beyond that from the Kolmogorov distribution
//! with Stephens' small-sample correction.

/// The KS statistic of two sorted samples (NaN-free): sup |F_a(x) − F_b(x)|, as
/// `scipy.stats.ks_2samp(a, b).statistic`.
pub fn statistic(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        // Step past every copy of the smaller value in both samples at once, so ties move both
        // CDFs together before the gap is measured.
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    d
}

/// Largest sample size, and product of the two, for the exact p-value.
const EXACT_MAX: u64 = 10_000;
const EXACT_CELLS: u64 = 20_000_000;

/// P(D ≥ d) for two samples of sizes `n` and `m` under "same distribution".
pub fn p_value(d: f64, n: u64, m: u64) -> f64 {
    if n == 0 || m == 0 || d <= 0.0 {
        return 1.0;
    }
    if n.max(m) <= EXACT_MAX && n * m <= EXACT_CELLS {
        return exact_p_value(d, n as usize, m as usize);
    }
    let en = (n as f64 * m as f64 / (n + m) as f64).sqrt();
    kolmogorov_sf((en + 0.12 + 0.11 / en) * d)
}

/// 1 − (paths from (0, 0) to (n, m) with |i/n − j/m| < d everywhere) / C(n + m, n). Each cell
/// holds its count divided by C(i + j, i), so the recurrence needs no big numbers:
/// A(i, j) = A(i − 1, j) · i/(i + j) + A(i, j − 1) · j/(i + j).
fn exact_p_value(d: f64, n: usize, m: usize) -> f64 {
    let (nf, mf) = (n as f64, m as f64);
    // Cells on the boundary |i/n − j/m| = d are outside; compare in units of 1/(n·m), with a
    // tolerance for the rounding of `d`.
    let limit = d * nf * mf - 1e-7 * (nf * mf).max(1.0).sqrt();
    let inside = |i: usize, j: usize| ((i * m) as f64 - (j * n) as f64).abs() < limit;
    let mut row = vec![0.0f64; m + 1];
    for j in 0..=m {
        row[j] = if inside(0, j) { 1.0 } else { 0.0 };
        if row[j] == 0.0 {
            // Once a path leaves along the edge it cannot come back on it.
            row[j + 1..].iter_mut().for_each(|c| *c = 0.0);
            break;
        }
    }
    for i in 1..=n {
        row[0] = if inside(i, 0) { row[0] } else { 0.0 };
        for j in 1..=m {
            row[j] = if inside(i, j) {
                let t = (i + j) as f64;
                row[j] * (i as f64 / t) + row[j - 1] * (j as f64 / t)
            } else {
                0.0
            };
        }
    }
    (1.0 - row[m]).clamp(0.0, 1.0)
}

/// Q(λ) = 2 Σ (−1)^(k−1) exp(−2 k² λ²), the Kolmogorov distribution's survival function.
fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda < 0.2 {
        // The series converges too slowly here, and the answer is 1 to 1e-20 anyway.
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let term = (-2.0 * (k as f64 * lambda).powi(2)).exp();
        sum += sign * term;
        if term < 1e-16 * sum.abs() {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}
