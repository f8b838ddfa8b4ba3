//! The profile of a dataset, built in the same streaming pass as the checks: exact count, nulls,
//! min, max, mean and standard deviation (merged per batch, Chan et al.); quantiles and a histogram
//! from a seeded uniform reservoir sample (exact while the column fits in it); category frequencies.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use mlops_proto as pb;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// The quantile levels of every numeric profile.
pub const QUANTILE_LEVELS: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
/// Values kept per numeric column for quantiles and histograms: a quantile's rank is then off by
/// about 0.4% at most (one standard error at the median), plenty for a reference distribution.
pub const RESERVOIR: usize = 16_384;
const BINS: usize = 20;
const TOP: usize = 20;
/// Distinct values tracked per categorical column; beyond, new values count as one "(other)".
const MAX_DISTINCT: usize = 10_000;

/// How a column is profiled, as its profile's `kind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Moments, quantiles and a histogram.
    Numeric,
    /// Category frequencies.
    Categorical,
}

impl ColumnKind {
    /// The name the profile carries.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Numeric => "numeric",
            Self::Categorical => "categorical",
        }
    }
}

/// A numeric column's running statistics.
#[derive(Debug, Clone)]
pub struct NumericProfile {
    count: u64,
    nulls: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    sample: Vec<f64>,
    rng: ChaCha8Rng,
    /// Algorithm L's state: the running weight and the index of the next value to take.
    w: f64,
    next: u64,
}

impl Default for NumericProfile {
    fn default() -> Self {
        Self {
            count: 0,
            nulls: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sample: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(0x6d6c_6f70),
            w: 1.0,
            next: u64::MAX,
        }
    }
}

impl NumericProfile {
    /// Counts a run of valid values. Moments are computed per run and merged (Chan, Golub and
    /// LeVeque), which is as exact as Welford's per-value update and lets the loops vectorise.
    pub fn add_all(&mut self, values: &[f64]) {
        if values.is_empty() {
            return;
        }
        let n = values.len() as f64;
        let (sum, min, max) = values
            .iter()
            .fold((0.0, f64::INFINITY, f64::NEG_INFINITY), |(s, lo, hi), &v| (s + v, lo.min(v), hi.max(v)));
        let mean = sum / n;
        let m2: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        let before = self.count as f64;
        let total = before + n;
        let delta = mean - self.mean;
        self.mean += delta * n / total;
        self.m2 += m2 + delta * delta * before * n / total;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        // The first RESERVOIR values fill the sample; after that, Li's Algorithm L draws how
        // many values to skip before the next replacement, so the generator runs about
        // RESERVOIR × ln(count / RESERVOIR) times, not once per value.
        let mut rest = values;
        if self.sample.len() < RESERVOIR {
            let take = (RESERVOIR - self.sample.len()).min(rest.len());
            self.sample.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.count += take as u64;
            if self.sample.len() == RESERVOIR {
                self.w = (self.uniform().ln() / RESERVOIR as f64).exp();
                self.next = self.count + self.skip();
            }
        }
        let end = self.count + rest.len() as u64;
        while self.next < end {
            let v = rest[(self.next - self.count) as usize];
            let slot = ((u128::from(self.rng.next_u64()) * RESERVOIR as u128) >> 64) as usize;
            self.sample[slot] = v;
            self.w *= (self.uniform().ln() / RESERVOIR as f64).exp();
            self.next += 1 + self.skip();
        }
        self.count = end;
    }

    /// A uniform draw in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// How many values Algorithm L passes over before the next replacement.
    fn skip(&mut self) -> u64 {
        let s = (self.uniform().ln() / (1.0 - self.w).ln()).floor();
        if s.is_finite() && s < 1e18 { s as u64 } else { u64::MAX / 2 }
    }

    /// Counts an empty cell.
    pub fn add_null(&mut self) {
        self.nulls += 1;
    }

    /// The finished profile.
    pub fn finish(mut self, name: &str) -> pb::ColumnProfile {
        self.sample.sort_by(f64::total_cmp);
        let s = &self.sample;
        let quantiles = if s.is_empty() { vec![] } else { QUANTILE_LEVELS.iter().map(|&p| quantile(s, p)).collect() };
        let (edges, counts) =
            if s.is_empty() { (vec![], vec![]) } else { histogram(s, self.min, self.max, self.count) };
        let empty = self.count == 0;
        pb::ColumnProfile {
            name: name.into(),
            kind: ColumnKind::Numeric.as_str().into(),
            count: self.count,
            nulls: self.nulls,
            min: if empty { 0.0 } else { self.min },
            max: if empty { 0.0 } else { self.max },
            mean: self.mean,
            std: if empty { 0.0 } else { (self.m2 / self.count as f64).sqrt() },
            quantiles,
            histogram_edges: edges,
            histogram_counts: counts,
            ..Default::default()
        }
    }
}

/// The `p` quantile of sorted `s` by linear interpolation between closest ranks (numpy's default).
pub fn quantile(s: &[f64], p: f64) -> f64 {
    let h = (s.len() - 1) as f64 * p;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

fn histogram(sorted: &[f64], min: f64, max: f64, total: u64) -> (Vec<f64>, Vec<u64>) {
    let width = (max - min) / BINS as f64;
    let edges: Vec<f64> = (0..=BINS).map(|i| if i == BINS { max } else { min + width * i as f64 }).collect();
    let mut counts = vec![0u64; BINS];
    for &v in sorted {
        let i = if width > 0.0 { (((v - min) / width) as usize).min(BINS - 1) } else { 0 };
        counts[i] += 1;
    }
    // Scale sampled counts to the column's size, keeping the total exact.
    if sorted.len() as u64 != total {
        let scale = total as f64 / sorted.len() as f64;
        let mut scaled: Vec<u64> = counts.iter().map(|&c| (c as f64 * scale).floor() as u64).collect();
        let short = total - scaled.iter().sum::<u64>();
        if let Some(biggest) = (0..BINS).max_by_key(|&i| counts[i]) {
            scaled[biggest] += short;
        }
        counts = scaled;
    }
    (edges, counts)
}

/// A categorical column's value frequencies. Declared values are counted by position (one hash
/// lookup per cell, which also answers whether the value is in the domain); others by value.
#[derive(Debug, Clone, Default)]
pub struct CategoricalProfile {
    nulls: u64,
    count: u64,
    domain: HashMap<String, usize, FixedState>,
    declared: Vec<(String, u64)>,
    counts: HashMap<String, u64, FixedState>,
    overflow: u64,
}

impl CategoricalProfile {
    /// A profile whose declared values are `domain`.
    pub fn with_domain<'a>(domain: impl IntoIterator<Item = &'a String>) -> Self {
        let mut p = Self::default();
        for v in domain {
            if !p.domain.contains_key(v) {
                p.domain.insert(v.clone(), p.declared.len());
                p.declared.push((v.clone(), 0));
            }
        }
        p
    }

    /// Counts a value; whether it is a declared one.
    pub fn add(&mut self, v: &str) -> bool {
        self.count += 1;
        if let Some(&i) = self.domain.get(v) {
            self.declared[i].1 += 1;
            return true;
        }
        if let Some(c) = self.counts.get_mut(v) {
            *c += 1;
        } else if self.counts.len() < MAX_DISTINCT {
            self.counts.insert(v.to_owned(), 1);
        } else {
            self.overflow += 1;
        }
        false
    }

    /// Counts an empty cell.
    pub fn add_null(&mut self) {
        self.nulls += 1;
    }

    /// How many times `v` was counted.
    pub fn count_of(&self, v: &str) -> u64 {
        self.domain.get(v).map_or_else(|| self.counts.get(v).copied().unwrap_or(0), |&i| self.declared[i].1)
    }

    /// The finished profile.
    pub fn finish(self, name: &str) -> pb::ColumnProfile {
        let mut top: Vec<(String, u64)> =
            self.declared.into_iter().filter(|(_, c)| *c > 0).chain(self.counts).collect();
        let distinct = top.len() as u64 + u64::from(self.overflow > 0);
        if self.overflow > 0 {
            top.push(("(other)".into(), self.overflow));
        }
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP);
        pb::ColumnProfile {
            name: name.into(),
            kind: ColumnKind::Categorical.as_str().into(),
            count: self.count,
            nulls: self.nulls,
            top_categories: top.into_iter().map(|(value, count)| pb::CategoryCount { value, count }).collect(),
            distinct,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_quantile(values: &[f64], p: f64) -> f64 {
        let mut s = values.to_vec();
        s.sort_by(f64::total_cmp);
        let h = (s.len() - 1) as f64 * p;
        s[h.floor() as usize] + (h - h.floor()) * (s[h.ceil() as usize] - s[h.floor() as usize])
    }

    proptest! {
        // Against a two-pass reference computation: mean, population std, min, max and quantiles
        // (exact below the reservoir size); histogram counts add up to the count.
        #[test]
        fn numeric_profile_matches_a_reference(values in prop::collection::vec(-1e6f64..1e6, 1..2000), nulls in 0u64..50, cut in 1usize..700) {
            let mut p = NumericProfile::default();
            // In runs of uneven length, as batches arrive.
            let mut rest = values.as_slice();
            while !rest.is_empty() {
                let (run, tail) = rest.split_at(cut.min(rest.len()));
                p.add_all(run);
                rest = tail;
            }
            for _ in 0..nulls { p.add_null(); }
            let c = p.finish("x");
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            prop_assert_eq!(c.count, values.len() as u64);
            prop_assert_eq!(c.nulls, nulls);
            prop_assert!((c.mean - mean).abs() <= 1e-9 * (1.0 + mean.abs()), "{} vs {}", c.mean, mean);
            prop_assert!((c.std - std).abs() <= 1e-6 * (1.0 + std), "{} vs {}", c.std, std);
            prop_assert_eq!(c.min, values.iter().copied().fold(f64::INFINITY, f64::min));
            prop_assert_eq!(c.max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            for (q, &level) in c.quantiles.iter().zip(&QUANTILE_LEVELS) {
                prop_assert_eq!(*q, reference_quantile(&values, level));
            }
            prop_assert_eq!(c.histogram_counts.iter().sum::<u64>(), values.len() as u64);
            prop_assert_eq!(c.histogram_edges.len(), 21);
        }
    }

    #[test]
    fn quantiles_match_numpy() {
        // numpy.quantile([1, 2, 3, 4, 10], [0.25, 0.5, 0.99]) == [2.0, 3.0, 9.76]
        let s = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(quantile(&s, 0.25), 2.0);
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert!((quantile(&s, 0.99) - 9.76).abs() < 1e-12);
    }

    #[test]
    fn large_columns_are_sampled_deterministically_with_exact_moments() {
        let run = || {
            let mut p = NumericProfile::default();
            let values: Vec<f64> = (0..200_000u64).map(|i| (i % 1000) as f64).collect();
            for run in values.chunks(65_536) {
                p.add_all(run);
            }
            p.finish("x")
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert_eq!((a.count, a.kind.as_str()), (200_000, "numeric"));
        assert!((a.mean - 499.5).abs() < 1e-9);
        assert!((a.quantiles[3] - 499.5).abs() < 15.0, "{:?}", a.quantiles);
        assert_eq!(a.histogram_counts.iter().sum::<u64>(), 200_000);
    }

    #[test]
    fn categories_are_counted_most_frequent_first() {
        let mut p = CategoricalProfile::with_domain(&["a".to_owned(), "z".to_owned()]);
        let known: Vec<bool> = ["b", "a", "b", "c", "b", "a"].into_iter().map(|v| p.add(v)).collect();
        assert_eq!(known, [false, true, false, false, false, true]);
        assert_eq!((p.count_of("a"), p.count_of("b"), p.count_of("z")), (2, 3, 0));
        p.add_null();
        let c = p.finish("c");
        let top: Vec<(&str, u64)> = c.top_categories.iter().map(|t| (t.value.as_str(), t.count)).collect();
        assert_eq!(top, vec![("b", 3), ("a", 2), ("c", 1)]);
        assert_eq!((c.count, c.nulls, c.distinct), (6, 1, 3));
        assert_eq!(c.kind, "categorical");
    }
}
