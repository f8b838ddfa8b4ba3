//! The quality gate: every gate of the spec, on the candidate's metrics and — when a production
//! model exists — against the production model's metrics on the same rows.

use std::collections::BTreeMap;

use mlops_proto as pb;
use mlops_shared::spec::{GateSpec, ServingLimits, Task};

/// Judges `candidate` against `gates` (metrics of `task`), and against `production` when there is
/// one. The first model, with no champion, meets absolute thresholds only. Returns whether every
/// check passed, and each check with its numbers.
pub fn judge(
    task: Task,
    gates: &[GateSpec],
    candidate: &BTreeMap<String, f64>,
    production: Option<&BTreeMap<String, f64>>,
) -> (bool, Vec<pb::GateCheck>) {
    let mut checks = Vec::new();
    for g in gates {
        let value = candidate.get(&g.metric).copied().unwrap_or(f64::NAN);
        if let Some(min) = g.min {
            checks.push(pb::GateCheck {
                name: format!("{} >= {min}", g.metric),
                passed: value >= min,
                detail: format!("candidate {} = {value:.4}, floor {min}", g.metric),
            });
        }
        if let Some(max) = g.max {
            checks.push(pb::GateCheck {
                name: format!("{} <= {max}", g.metric),
                passed: value <= max,
                detail: format!("candidate {} = {value:.4}, ceiling {max}", g.metric),
            });
        }
        if let (Some(max_drop), Some(prod)) = (g.max_drop, production) {
            let champion = prod.get(&g.metric).copied().unwrap_or(f64::NAN);
            // How much worse the candidate is: a drop of a higher-is-better metric, a rise of an
            // error or a loss.
            let higher_is_better = task.higher_is_better(&g.metric).unwrap_or(true);
            let (worse, word) = if higher_is_better { (champion - value, "drop") } else { (value - champion, "rise") };
            checks.push(pb::GateCheck {
                name: format!("{} no worse than production by more than {max_drop}", g.metric),
                // A NaN champion (e.g. one class in the rows) cannot be beaten or lost to.
                passed: champion.is_nan() || worse <= max_drop,
                detail: format!("candidate {value:.4}, production {champion:.4} on the same rows, {word} {worse:.4}"),
            });
        }
    }
    let passed = checks.iter().all(|c| c.passed);
    (passed, checks)
}

/// The infrastructure gate: the candidate's measured single-row p99 latency (ms) and its
/// artifact size against the spec's limits.
pub fn serving_checks(
    limits: &ServingLimits,
    p99_ms: f64,
    rows_timed: usize,
    artifact_bytes: u64,
) -> Vec<pb::GateCheck> {
    let mut checks = Vec::new();
    if let Some(max) = limits.max_p99_ms {
        checks.push(pb::GateCheck {
            name: format!("single-row p99 latency <= {max} ms"),
            passed: p99_ms <= max,
            detail: format!("measured p99 {p99_ms:.4} ms over {rows_timed} single-row predictions"),
        });
    }
    if let Some(max) = limits.max_artifact_bytes {
        checks.push(pb::GateCheck {
            name: format!("artifact size <= {max} bytes"),
            passed: artifact_bytes <= max,
            detail: format!("artifact is {artifact_bytes} bytes"),
        });
    }
    checks
}

/// The 99th percentile (nearest rank) of `samples`, which it sorts.
pub fn p99(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable_by(f64::total_cmp);
    let rank = ((samples.len() as f64) * 0.99).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(auc: f64, acc: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("roc_auc".into(), auc), ("accuracy".into(), acc)])
    }

    fn gates() -> Vec<GateSpec> {
        vec![
            GateSpec { metric: "roc_auc".into(), min: Some(0.7), max: None, max_drop: Some(0.01) },
            GateSpec { metric: "accuracy".into(), min: Some(0.6), max: None, max_drop: None },
        ]
    }

    #[test]
    fn first_model_meets_floors_only() {
        let (passed, checks) = judge(Task::BinaryClassification, &gates(), &m(0.75, 0.7), None);
        assert!(passed);
        assert_eq!(checks.len(), 2);
        let (passed, checks) = judge(Task::BinaryClassification, &gates(), &m(0.65, 0.7), None);
        assert!(!passed);
        assert!(!checks[0].passed && checks[0].detail.contains("0.6500"));
    }

    #[test]
    fn regression_beyond_epsilon_fails_within_passes() {
        assert!(judge(Task::BinaryClassification, &gates(), &m(0.795, 0.7), Some(&m(0.80, 0.7))).0);
        let (passed, checks) = judge(Task::BinaryClassification, &gates(), &m(0.78, 0.7), Some(&m(0.80, 0.7)));
        assert!(!passed);
        let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].detail.contains("production 0.8000"), "{:?}", failed[0]);
        // A missing metric never passes a floor.
        assert!(!judge(Task::BinaryClassification, &gates(), &BTreeMap::new(), None).0);
    }

    #[test]
    fn serving_limits_gate_latency_and_size() {
        let limits = ServingLimits { max_p99_ms: Some(2.0), max_artifact_bytes: Some(1000) };
        let checks = serving_checks(&limits, 1.5, 500, 800);
        assert!(checks.iter().all(|c| c.passed) && checks.len() == 2, "{checks:?}");
        let checks = serving_checks(&limits, 2.5, 500, 1200);
        assert!(checks.iter().all(|c| !c.passed), "{checks:?}");
        assert!(checks[0].detail.contains("p99 2.5000 ms over 500") && checks[1].detail.contains("1200 bytes"));
        let mut samples: Vec<f64> = (1..=200).map(f64::from).collect();
        samples.reverse();
        assert_eq!(p99(&mut samples), 198.0);
        assert_eq!(p99(&mut [3.0]), 3.0);
        assert!(p99(&mut []).is_nan());
    }

    #[test]
    fn errors_gate_by_ceiling_and_by_rise() {
        let gates = [GateSpec { metric: "rmse".into(), min: None, max: Some(2.0), max_drop: Some(0.1) }];
        let rmse = |v: f64| BTreeMap::from([("rmse".to_owned(), v)]);
        assert!(judge(Task::Regression, &gates, &rmse(1.5), None).0);
        let (passed, checks) = judge(Task::Regression, &gates, &rmse(2.5), None);
        assert!(!passed && checks[0].detail.contains("ceiling 2"), "{checks:?}");
        // Lower is better: a smaller error than production passes, a rise beyond 0.1 fails.
        assert!(judge(Task::Regression, &gates, &rmse(1.0), Some(&rmse(1.5))).0);
        assert!(judge(Task::Regression, &gates, &rmse(1.55), Some(&rmse(1.5))).0);
        let (passed, checks) = judge(Task::Regression, &gates, &rmse(1.7), Some(&rmse(1.5)));
        assert!(!passed && checks[1].detail.contains("rise 0.2000"), "{checks:?}");
    }
}
