//! Drift of live inputs against the serving model's training data: each feature's values are
//! binned exactly as the reference profile was, and the population stability index compares the
//! two distributions. A window is drifted when the share of drifted features reaches the spec's
//! `drift_share` (Evidently's dataset-drift rule).

use mlops_proto as pb;
use mlops_shared::model::{FeatureProfile, ReferenceProfile, bin_index};
use mlops_shared::spec::MonitoringSpec;
use mlops_shared::table::Value;

/// Shares below this are raised to it, so an empty bin does not make PSI infinite (as Evidently).
const EPS: f64 = 1e-4;

/// Population stability index: Σ (a − e) · ln(a / e) over bins, with `a` the current and `e` the
/// reference shares.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(EPS), a.max(EPS));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Per-feature bin counts of one window of live predictions.
#[derive(Debug, Clone)]
pub struct Window {
    pub counts: Vec<Vec<u64>>,
    pub rows: u64,
}

impl Window {
    /// An empty window shaped like `reference`.
    pub fn new(reference: &ReferenceProfile) -> Self {
        Self { counts: reference.features.iter().map(|f| vec![0; f.fractions().len()]).collect(), rows: 0 }
    }

    /// Counts one prediction's inputs.
    pub fn add(&mut self, reference: &ReferenceProfile, log: &pb::PredictionLogged) {
        for (f, counts) in reference.features.iter().zip(&mut self.counts) {
            let v = match f {
                FeatureProfile::Numeric { name, .. } => {
                    log.numeric.get(name).map_or(Value::Missing, |x| Value::Num(*x))
                }
                FeatureProfile::Categorical { name, .. } => {
                    log.categorical.get(name).map_or(Value::Missing, |c| Value::Cat(c.clone()))
                }
            };
            counts[bin_index(f, &v)] += 1;
        }
        self.rows += 1;
    }

    /// Each feature's PSI against `reference`, and the share of drifted features.
    pub fn drift(&self, reference: &ReferenceProfile, spec: &MonitoringSpec) -> (Vec<pb::FeatureDrift>, f64) {
        let n = self.rows.max(1) as f64;
        let features: Vec<pb::FeatureDrift> = reference
            .features
            .iter()
            .zip(&self.counts)
            .map(|(f, counts)| {
                let current: Vec<f64> = counts.iter().map(|&c| c as f64 / n).collect();
                let score = psi(f.fractions(), &current);
                pb::FeatureDrift {
                    feature: f.name().to_owned(),
                    method: "psi".into(),
                    score,
                    threshold: spec.psi_threshold,
                    drifted: score > spec.psi_threshold,
                }
            })
            .collect();
        let share = features.iter().filter(|f| f.drifted).count() as f64 / features.len().max(1) as f64;
        (features, share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_matches_a_hand_computation() {
        // (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5) = 0.1021651 + 0.0672944
        let v = psi(&[0.5, 0.5], &[0.3, 0.7]);
        assert!((v - 0.169_459_572_077_696_7).abs() < 1e-12, "{v}");
        assert_eq!(psi(&[0.25; 4], &[0.25; 4]), 0.0);
        // An empty bin is smoothed, not infinite.
        assert!(psi(&[0.5, 0.5], &[1.0, 0.0]).is_finite());
    }

    #[test]
    fn shifted_inputs_drift_and_unshifted_do_not() {
        let reference = ReferenceProfile {
            rows: 100,
            features: vec![
                FeatureProfile::Numeric {
                    name: "x".into(),
                    edges: vec![0.0, 1.0],
                    fractions: vec![0.3, 0.4, 0.3, 0.0],
                },
                FeatureProfile::Categorical {
                    name: "c".into(),
                    categories: vec!["a".into(), "b".into()],
                    fractions: vec![0.5, 0.5, 0.0],
                },
            ],
        };
        let spec = MonitoringSpec { drift_share: 0.5, ..MonitoringSpec::default() };
        let log = |x: f64, c: &str| pb::PredictionLogged {
            numeric: [("x".to_string(), x)].into(),
            categorical: [("c".to_string(), c.to_string())].into(),
            ..Default::default()
        };
        let mut same = Window::new(&reference);
        for i in 0..100 {
            let x = [-0.5, 0.5, 0.5, 0.5, 1.5, 1.5, -0.5, 0.5, 1.5, -0.5][i % 10];
            same.add(&reference, &log(x, if i % 2 == 0 { "a" } else { "b" }));
        }
        let (f, share) = same.drift(&reference, &spec);
        assert!(f.iter().all(|f| f.score < 0.01), "{f:?}");
        assert_eq!(share, 0.0);
        let mut shifted = Window::new(&reference);
        for _ in 0..100 {
            shifted.add(&reference, &log(5.0, "a"));
        }
        let (f, share) = shifted.drift(&reference, &spec);
        assert!(f.iter().all(|f| f.drifted), "{f:?}");
        assert_eq!(share, 1.0);
    }
}
