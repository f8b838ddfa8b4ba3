//! Statistical tests on counts: the chi-square test of homogeneity and the distribution it needs.
//! Checked against SciPy's values in the tests.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..].iter().enumerate().fold(G[0], |acc, (i, g)| acc + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // The series for P(a, x), then Q = 1 - P.
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * ln_front.exp()).max(0.0)
    } else {
        // Lentz's continued fraction for Q(a, x).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (ln_front.exp() * h).clamp(0.0, 1.0)
    }
}

/// P(X > x) for X chi-square distributed with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// The chi-square test of homogeneity of two histograms over the same bins (bins empty in both
/// are left out): the statistic, the degrees of freedom and the p-value. `None` when either
/// histogram is empty or fewer than two bins hold counts.
pub fn chi2_homogeneity(a: &[u64], b: &[u64]) -> Option<(f64, usize, f64)> {
    let n = a.len().max(b.len());
    let get = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0) as f64;
    let (ta, tb) = ((0..n).map(|i| get(a, i)).sum::<f64>(), (0..n).map(|i| get(b, i)).sum::<f64>());
    if ta == 0.0 || tb == 0.0 {
        return None;
    }
    let total = ta + tb;
    let mut stat = 0.0;
    let mut bins = 0;
    for i in 0..n {
        let col = get(a, i) + get(b, i);
        if col == 0.0 {
            continue;
        }
        bins += 1;
        for (obs, row) in [(get(a, i), ta), (get(b, i), tb)] {
            let expected = row * col / total;
            stat += (obs - expected).powi(2) / expected;
        }
    }
    if bins < 2 {
        return None;
    }
    let df = bins - 1;
    Some((stat, df, chi2_sf(stat, df as f64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn chi2_survival_matches_scipy() {
        // scipy.stats.chi2.sf
        for (x, df, expected) in [
            (3.84, 1.0, 0.05004352124870519),
            (10.0, 5.0, 0.07523524614651217),
            (20.0, 9.0, 0.017912404529843298),
            (0.5, 3.0, 0.9188914116546758),
            (150.0, 40.0, 1.2397921541617078e-14),
        ] {
            let got = chi2_sf(x, df);
            assert!(close(got, expected, 1e-9), "chi2.sf({x}, {df}) = {got}, scipy {expected}");
        }
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13));
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-13));
    }

    #[test]
    fn homogeneity_matches_scipy_and_skips_empty_bins() {
        // scipy.stats.chi2_contingency([[10, 20, 30, 0], [15, 15, 40, 5]], correction=False):
        // 6.557142857142857, p 0.08743596797497216, df 3.
        let (stat, df, p) = chi2_homogeneity(&[10, 20, 30, 0], &[15, 15, 40, 5]).unwrap();
        assert!(
            close(stat, 6.557142857142857, 1e-12) && df == 3 && close(p, 0.08743596797497216, 1e-9),
            "{stat} {df} {p}"
        );
        assert!(chi2_homogeneity(&[5, 0], &[0, 0]).is_none());
        assert!(chi2_homogeneity(&[5, 0], &[7, 0]).is_none());
    }
}
