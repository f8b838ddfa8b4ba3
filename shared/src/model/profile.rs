//! The reference profile: each feature's distribution in the training data, binned so that live
//! traffic can be compared with it (PSI in the monitor). Numeric features use decile edges of the
//! training values; categorical features use the declared categories plus one bin for anything else.

use serde::{Deserialize, Serialize};

use crate::spec::{FeatureKind, FeatureSpec};
use crate::table::{Column, Frame, Value};

/// Bins per numeric feature.
const NUMERIC_BINS: usize = 10;

/// One feature's binned training distribution. The last bin of every feature counts missing
/// values (and, for categories, values outside the declared domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureProfile {
    Numeric { name: String, edges: Vec<f64>, fractions: Vec<f64> },
    Categorical { name: String, categories: Vec<String>, fractions: Vec<f64> },
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
}

impl ReferenceProfile {
    /// Profiles `frame`, whose columns follow `features`.
    pub fn fit(features: &[FeatureSpec], frame: &Frame) -> Self {
        let profiles = features
            .iter()
            .zip(&frame.columns)
            .map(|(f, col)| {
                let mut profile = match (f.kind, col) {
                    (FeatureKind::Numeric, Column::Numeric(values)) => {
                        let mut sorted: Vec<f64> = values.iter().flatten().copied().collect();
                        sorted.sort_by(f64::total_cmp);
                        let mut edges: Vec<f64> = (1..NUMERIC_BINS)
                            .filter_map(|q| sorted.get(q * sorted.len() / NUMERIC_BINS).copied())
                            .collect();
                        edges.dedup();
                        let bins = edges.len() + 2;
                        FeatureProfile::Numeric { name: f.name.clone(), edges, fractions: vec![0.0; bins] }
                    }
                    _ => FeatureProfile::Categorical {
                        name: f.name.clone(),
                        categories: f.categories.clone(),
                        fractions: vec![0.0; f.categories.len() + 1],
                    },
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
                match &mut profile {
                    FeatureProfile::Numeric { fractions, .. } | FeatureProfile::Categorical { fractions, .. } => {
                        *fractions = counts.iter().map(|&c| c as f64 / total).collect();
                    }
                }
                profile
            })
            .collect();
        Self { rows: frame.rows as u64, features: profiles }
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
    }
}
