//! The reference profile: each feature's distribution in the training data, so that live traffic
//! can be compared with it (the monitor's drift tests). Numeric features keep decile edges and
//! shares, the standard deviation, and the values themselves — all of them up to
//! [`SAMPLE_VALUES`], evenly spaced order statistics of them beyond — so that KS and Wasserstein
//! tests run on the distribution, not on ten bins. Categorical features keep the share of each
//! declared category plus one bin for anything else.

use serde::{Deserialize, Serialize};

use crate::spec::{FeatureKind, FeatureSpec};
use crate::table::{Column, Frame, Value};

/// Bins per numeric feature.
const NUMERIC_BINS: usize = 10;
/// Values a numeric feature keeps: every one up to this many, evenly spaced order statistics
/// beyond (their empirical CDF is within 1/(2·SAMPLE_VALUES) of the whole column's).
pub const SAMPLE_VALUES: usize = 2000;

/// One feature's binned training distribution. The last bin of every feature counts missing
/// values (and, for categories, values outside the declared domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureProfile {
    Numeric {
        name: String,
        edges: Vec<f64>,
        fractions: Vec<f64>,
        /// The non-missing values, sorted (or their order statistics; see [`SAMPLE_VALUES`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sample: Vec<f64>,
        /// How many non-missing values `sample` stands for.
        #[serde(default)]
        values: u64,
        /// Their population standard deviation.
        #[serde(default)]
        std: f64,
    },
    Categorical {
        name: String,
        categories: Vec<String>,
        fractions: Vec<f64>,
    },
}

impl FeatureProfile {
    /// The feature's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Numeric { name, .. } | Self::Categorical { name, .. } => name,
        }
    }

    /// The training share of each bin.
    pub fn fractions(&self) -> &[f64] {
        match self {
            Self::Numeric { fractions, .. } | Self::Categorical { fractions, .. } => fractions,
        }
    }
}

impl FeatureProfile {
    /// The profile of numeric `values` (missing ones as `None`) named `name`.
    pub fn numeric(name: &str, values: &[Option<f64>]) -> Self {
        let mut sorted: Vec<f64> = values.iter().flatten().copied().filter(|x| x.is_finite()).collect();
        crate::stats::sort_floats(&mut sorted);
        let mut edges: Vec<f64> =
            (1..NUMERIC_BINS).filter_map(|q| sorted.get(q * sorted.len() / NUMERIC_BINS).copied()).collect();
        edges.dedup();
        let mut profile = Self::Numeric {
            name: name.to_owned(),
            edges,
            fractions: vec![],
            sample: order_statistics(&sorted, SAMPLE_VALUES),
            values: sorted.len() as u64,
            std: population_std(&sorted),
        };
        // The bins' counts from the sorted values, as `bin_index` would count them one by one:
        // bin i holds edges[i-1] <= x < edges[i]; the last bin, what is missing or not finite.
        let mut counts = vec![0u64; profile_bins(&profile)];
        if let Self::Numeric { edges, .. } = &profile {
            let mut below = 0;
            for (i, e) in edges.iter().enumerate() {
                let next = sorted.partition_point(|x| x < e);
                counts[i] = (next - below) as u64;
                below = next;
            }
            counts[edges.len()] = (sorted.len() - below) as u64;
            counts[edges.len() + 1] = (values.len() - sorted.len()) as u64;
        }
        let total = values.len().max(1) as f64;
        if let Self::Numeric { fractions, .. } = &mut profile {
            *fractions = counts.iter().map(|&c| c as f64 / total).collect();
        }
        profile
    }
}

fn profile_bins(p: &FeatureProfile) -> usize {
    match p {
        FeatureProfile::Numeric { edges, .. } => edges.len() + 2,
        FeatureProfile::Categorical { categories, .. } => categories.len() + 1,
    }
}

/// All of `sorted` up to `k` values; beyond, the `k` order statistics at ranks (2i + 1)·n / 2k,
/// in integer arithmetic so every platform picks the same ones.
pub fn order_statistics(sorted: &[f64], k: usize) -> Vec<f64> {
    let n = sorted.len();
    if n <= k {
        return sorted.to_vec();
    }
    (0..k).map(|i| sorted[(2 * i + 1) * n / (2 * k)]).collect()
}

/// The population standard deviation (numpy's `std`, ddof 0): the mean first, then the mean
/// squared deviation from it (two passes in order, no division per value).
pub fn population_std(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// Which bin of `profile` the value `v` falls in.
pub fn bin_index(profile: &FeatureProfile, v: &Value) -> usize {
    match profile {
        FeatureProfile::Numeric { edges, .. } => match v {
            // edges are interior cut points: bin i holds edges[i-1] <= x < edges[i].
            Value::Num(x) if x.is_finite() => edges.partition_point(|e| e <= x),
            _ => edges.len() + 1,
        },
        FeatureProfile::Categorical { categories, .. } => match v {
            Value::Cat(c) => categories.iter().position(|k| k == c).unwrap_or(categories.len()),
            _ => categories.len(),
        },
    }
}

/// Profiles of every feature, in spec order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceProfile {
    pub rows: u64,
    pub features: Vec<FeatureProfile>,
    /// The model's own predictions (probabilities or values) on its holdout, for prediction drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<FeatureProfile>,
}

impl ReferenceProfile {
    /// Profiles `frame`, whose columns follow `features`.
    pub fn fit(features: &[FeatureSpec], frame: &Frame) -> Self {
        let profiles = features
            .iter()
            .zip(&frame.columns)
            .map(|(f, col)| {
                if let (FeatureKind::Numeric, Column::Numeric(values)) = (f.kind, col) {
                    return FeatureProfile::numeric(&f.name, values);
                }
                let mut profile = FeatureProfile::Categorical {
                    name: f.name.clone(),
                    categories: f.categories.clone(),
                    fractions: vec![0.0; f.categories.len() + 1],
                };
                let mut counts = vec![0u64; profile.fractions().len()];
                for row in 0..frame.rows {
                    let v = match col {
                        Column::Numeric(v) => v[row].map_or(Value::Missing, Value::Num),
                        Column::Categorical(v) => v[row].clone().map_or(Value::Missing, Value::Cat),
                    };
                    counts[bin_index(&profile, &v)] += 1;
                }
                let total = frame.rows.max(1) as f64;
                if let FeatureProfile::Categorical { fractions, .. } = &mut profile {
                    *fractions = counts.iter().map(|&c| c as f64 / total).collect();
                }
                profile
            })
            .collect();
        Self { rows: frame.rows as u64, features: profiles, prediction: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PipelineSpec, tests::SPEC};

    #[test]
    fn deciles_split_uniform_data_evenly() {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        let n = 1000;
        let frame = Frame {
            columns: vec![
                Column::Numeric((0..n).map(|i| Some(i as f64)).collect()),
                Column::Numeric((0..n).map(|i| if i % 4 == 0 { None } else { Some(1.0) }).collect()),
                Column::Categorical((0..n).map(|i| Some(["monthly", "yearly", "weekly"][i % 3].to_string())).collect()),
            ],
            target: None,
            rows: n,
        };
        let p = ReferenceProfile::fit(&spec.features, &frame);
        let FeatureProfile::Numeric { edges, fractions, .. } = &p.features[0] else { panic!() };
        assert_eq!(edges.len(), 9);
        for f in &fractions[..10] {
            assert!((f - 0.1).abs() < 1e-9, "{fractions:?}");
        }
        assert_eq!(fractions[10], 0.0);
        // A constant column collapses to one edge; a quarter of it is missing.
        let missing = *p.features[1].fractions().last().unwrap();
        assert!((missing - 0.25).abs() < 1e-9);
        // One third of the categories is outside the declared domain.
        let other = *p.features[2].fractions().last().unwrap();
        assert!((other - 333.0 / 1000.0).abs() < 1e-9);
        assert!(p.features.iter().all(|f| (f.fractions().iter().sum::<f64>() - 1.0).abs() < 1e-9));
        // Small columns keep every value; the standard deviation is numpy's (ddof 0).
        let FeatureProfile::Numeric { sample, values, std, .. } = &p.features[0] else { panic!() };
        assert_eq!((sample.len(), *values), (1000, 1000));
        assert!((std - 288.674_990_257_209_5).abs() < 1e-9, "{std}"); // numpy.std(range(1000))
    }

    #[test]
    fn large_columns_keep_evenly_spaced_order_statistics() {
        let sorted: Vec<f64> = (0..10_000).map(f64::from).collect();
        let s = order_statistics(&sorted, 2000);
        assert_eq!(s.len(), 2000);
        assert_eq!((s[0], s[1], s[1999]), (2.0, 7.0, 9997.0));
        assert_eq!(order_statistics(&sorted[..5], 2000), sorted[..5]);
    }
}
