//! The quality gate: every gate of the spec, on the candidate's metrics and — when a production
//! model exists — against the production model's metrics on the same rows.

use std::collections::BTreeMap;

use mlops_proto as pb;
use mlops_shared::spec::{GateRows, GateSpec, ServingLimits, Task};

/// Metrics by name.
pub type Metrics = BTreeMap<String, f64>;

/// Both models measured on the same rows.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    pub rows: usize,
    pub candidate: Metrics,
    /// `None` when there is no production model.
    pub production: Option<Metrics>,
}

/// One slice: the holdout rows where `feature` is `value`.
#[derive(Debug, Clone)]
pub struct Slice {
    pub feature: String,
    pub value: String,
    pub scored: Scored,
}

/// What the gates judge: the holdout, the newest validated data when there is some, and the
/// holdout's slices.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub holdout: Scored,
    pub newest: Option<Scored>,
    pub slices: Vec<Slice>,
    /// Slices with fewer rows are reported but not gated.
    pub min_slice_rows: usize,
}

fn check(name: String, passed: bool, detail: String) -> pb::GateCheck {
    pb::GateCheck { name, passed, detail }
}

/// Judges the candidate against `gates` (metrics of `task`), and against the production model
/// when there is one. The first model, with no champion, meets absolute thresholds only. Returns
/// whether every check passed, and each check with its numbers.
pub fn judge(task: Task, gates: &[GateSpec], measured: &Measured) -> (bool, Vec<pb::GateCheck>) {
    let mut checks = Vec::new();
    for g in gates {
        let higher_is_better = task.higher_is_better(&g.metric).unwrap_or(true);
        let (rows, on) = match g.on {
            GateRows::Holdout => (Some(&measured.holdout), ""),
            GateRows::Newest => (measured.newest.as_ref(), " on the newest data"),
        };
        let Some(rows) = rows.filter(|r| r.rows > 0) else {
            checks.push(check(
                format!("{}{on}", g.metric),
                false,
                "no newest validated rows the candidate did not train on".into(),
            ));
            continue;
        };
        let value = rows.candidate.get(&g.metric).copied().unwrap_or(f64::NAN);
        if let Some(min) = g.min {
            checks.push(check(
                format!("{} >= {min}{on}", g.metric),
                value >= min,
                format!("candidate {} = {value:.4} on {} rows, floor {min}", g.metric, rows.rows),
            ));
        }
        if let Some(max) = g.max {
            checks.push(check(
                format!("{} <= {max}{on}", g.metric),
                value <= max,
                format!("candidate {} = {value:.4} on {} rows, ceiling {max}", g.metric, rows.rows),
            ));
        }
        if let Some(prod) = &rows.production {
            let champion = prod.get(&g.metric).copied().unwrap_or(f64::NAN);
            // How much worse the candidate is: a drop of a higher-is-better metric, a rise of an
            // error or a loss.
            let (worse, word) = if higher_is_better { (champion - value, "drop") } else { (value - champion, "rise") };
            let relative = worse / champion.abs();
            let detail = format!(
                "candidate {value:.4}, production {champion:.4} on the same {} rows, {word} {worse:.4} ({:.2} %)",
                rows.rows,
                relative * 100.0
            );
            // A NaN champion (e.g. one class in the rows) cannot be beaten or lost to.
            if let Some(max_drop) = g.max_drop {
                checks.push(check(
                    format!("{} no worse than production by more than {max_drop}{on}", g.metric),
                    champion.is_nan() || worse <= max_drop,
                    detail.clone(),
                ));
            }
            if let Some(share) = g.max_relative_drop {
                checks.push(check(
                    format!("{} no worse than production by more than {} %{on}", g.metric, share * 100.0),
                    champion.is_nan() || worse <= 0.0 || relative <= share,
                    detail,
                ));
            }
        }
        let bound = if higher_is_better { g.slice_min } else { g.slice_max };
        if let Some(bound) = bound {
            checks.extend(slice_checks(g, bound, higher_is_better, measured));
        }
    }
    let passed = checks.iter().all(|c| c.passed);
    (passed, checks)
}

/// One check per sliced feature: every slice with enough rows meets the bound. A slice whose
/// metric is undefined (e.g. one class only) is reported, not gated.
fn slice_checks(g: &GateSpec, bound: f64, higher_is_better: bool, measured: &Measured) -> Vec<pb::GateCheck> {
    let mut features: Vec<&str> = measured.slices.iter().map(|s| s.feature.as_str()).collect();
    features.dedup();
    let (op, word) = if higher_is_better { (">=", "floor") } else { ("<=", "ceiling") };
    features
        .into_iter()
        .map(|feature| {
            let mut passed = true;
            let mut parts = Vec::new();
            for s in measured.slices.iter().filter(|s| s.feature == feature) {
                let v = s.scored.candidate.get(&g.metric).copied().unwrap_or(f64::NAN);
                let rows = s.scored.rows;
                if rows < measured.min_slice_rows {
                    parts.push(format!("{} {v:.4} ({rows} rows, too few to gate)", s.value));
                } else if v.is_nan() {
                    parts.push(format!("{} undefined ({rows} rows)", s.value));
                } else {
                    let ok = if higher_is_better { v >= bound } else { v <= bound };
                    passed &= ok;
                    parts.push(format!("{} {v:.4} ({rows} rows){}", s.value, if ok { "" } else { " FAILS" }));
                }
            }
            check(
                format!("{} {op} {bound} on every slice of {feature}", g.metric),
                passed,
                format!("{word} {bound}: {}", parts.join(", ")),
            )
        })
        .collect()
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

    fn m(auc: f64, acc: f64) -> Metrics {
        BTreeMap::from([("roc_auc".into(), auc), ("accuracy".into(), acc)])
    }

    fn gate(metric: &str) -> GateSpec {
        GateSpec {
            metric: metric.into(),
            on: GateRows::Holdout,
            min: None,
            max: None,
            max_drop: None,
            max_relative_drop: None,
            slice_min: None,
            slice_max: None,
        }
    }

    fn gates() -> Vec<GateSpec> {
        vec![
            GateSpec { min: Some(0.7), max_drop: Some(0.01), ..gate("roc_auc") },
            GateSpec { min: Some(0.6), ..gate("accuracy") },
        ]
    }

    fn holdout(candidate: Metrics, production: Option<Metrics>) -> Measured {
        Measured { holdout: Scored { rows: 100, candidate, production }, ..Default::default() }
    }

    #[test]
    fn first_model_meets_floors_only() {
        let (passed, checks) = judge(Task::BinaryClassification, &gates(), &holdout(m(0.75, 0.7), None));
        assert!(passed);
        assert_eq!(checks.len(), 2);
        let (passed, checks) = judge(Task::BinaryClassification, &gates(), &holdout(m(0.65, 0.7), None));
        assert!(!passed);
        assert!(!checks[0].passed && checks[0].detail.contains("0.6500"));
    }

    #[test]
    fn regression_beyond_epsilon_fails_within_passes() {
        let task = Task::BinaryClassification;
        assert!(judge(task, &gates(), &holdout(m(0.795, 0.7), Some(m(0.80, 0.7)))).0);
        let (passed, checks) = judge(task, &gates(), &holdout(m(0.78, 0.7), Some(m(0.80, 0.7))));
        assert!(!passed);
        let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].detail.contains("production 0.8000"), "{:?}", failed[0]);
        // A missing metric never passes a floor.
        assert!(!judge(task, &gates(), &holdout(BTreeMap::new(), None)).0);
    }

    #[test]
    fn relative_change_thresholds_scale_with_the_champion() {
        let gates = [GateSpec { max_relative_drop: Some(0.02), ..gate("roc_auc") }];
        let task = Task::BinaryClassification;
        // 0.80 -> 0.788 is a 1.5 % drop; 0.80 -> 0.78 is 2.5 %.
        assert!(judge(task, &gates, &holdout(m(0.788, 0.7), Some(m(0.80, 0.7)))).0);
        let (passed, checks) = judge(task, &gates, &holdout(m(0.78, 0.7), Some(m(0.80, 0.7))));
        assert!(!passed && checks[0].detail.contains("(2.50 %)"), "{checks:?}");
        // An error metric: a 10 % rise against a 5 % tolerance fails, a fall always passes.
        let gates = [GateSpec { max_relative_drop: Some(0.05), ..gate("rmse") }];
        let rmse = |v: f64| BTreeMap::from([("rmse".to_owned(), v)]);
        assert!(!judge(Task::Regression, &gates, &holdout(rmse(2.2), Some(rmse(2.0)))).0);
        assert!(judge(Task::Regression, &gates, &holdout(rmse(1.0), Some(rmse(2.0)))).0);
        // No champion: no change check at all.
        assert!(judge(Task::Regression, &gates, &holdout(rmse(9.0), None)).1.is_empty());
    }

    #[test]
    fn newest_rows_gate_separately_and_fail_when_absent() {
        let gates = [GateSpec { on: GateRows::Newest, min: Some(0.7), ..gate("roc_auc") }];
        let task = Task::BinaryClassification;
        let mut measured = holdout(m(0.9, 0.9), None);
        let (passed, checks) = judge(task, &gates, &measured);
        assert!(!passed && checks[0].detail.contains("no newest validated rows"), "{checks:?}");
        measured.newest = Some(Scored { rows: 40, candidate: m(0.65, 0.7), production: None });
        let (passed, checks) = judge(task, &gates, &measured);
        assert!(!passed && checks[0].name.contains("on the newest data"), "{checks:?}");
        assert!(checks[0].detail.contains("0.6500 on 40 rows"), "{checks:?}");
        measured.newest = Some(Scored { rows: 40, candidate: m(0.75, 0.7), production: None });
        assert!(judge(task, &gates, &measured).0);
    }

    #[test]
    fn every_slice_with_enough_rows_meets_its_floor() {
        let gates = [GateSpec { min: Some(0.7), slice_min: Some(0.65), ..gate("roc_auc") }];
        let slice = |value: &str, rows: usize, auc: f64| Slice {
            feature: "contract".into(),
            value: value.into(),
            scored: Scored { rows, candidate: m(auc, 0.7), production: None },
        };
        let mut measured = holdout(m(0.8, 0.7), None);
        measured.min_slice_rows = 30;
        measured.slices =
            vec![slice("month-to-month", 300, 0.72), slice("one-year", 80, 0.66), slice("two-year", 10, 0.2)];
        let (passed, checks) = judge(Task::BinaryClassification, &gates, &measured);
        assert!(passed, "{checks:?}");
        assert_eq!(checks[1].name, "roc_auc >= 0.65 on every slice of contract");
        assert!(checks[1].detail.contains("two-year 0.2000 (10 rows, too few to gate)"), "{checks:?}");
        measured.slices[1] = slice("one-year", 80, 0.61);
        measured.slices.push(slice("(missing)", 50, f64::NAN));
        let (passed, checks) = judge(Task::BinaryClassification, &gates, &measured);
        assert!(!passed, "{checks:?}");
        assert!(checks[1].detail.contains("one-year 0.6100 (80 rows) FAILS"), "{checks:?}");
        assert!(checks[1].detail.contains("(missing) undefined (50 rows)"), "{checks:?}");
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
        let gates = [GateSpec { max: Some(2.0), max_drop: Some(0.1), ..gate("rmse") }];
        let rmse = |v: f64| BTreeMap::from([("rmse".to_owned(), v)]);
        let task = Task::Regression;
        assert!(judge(task, &gates, &holdout(rmse(1.5), None)).0);
        let (passed, checks) = judge(task, &gates, &holdout(rmse(2.5), None));
        assert!(!passed && checks[0].detail.contains("ceiling 2"), "{checks:?}");
        // Lower is better: a smaller error than production passes, a rise beyond 0.1 fails.
        assert!(judge(task, &gates, &holdout(rmse(1.0), Some(rmse(1.5)))).0);
        assert!(judge(task, &gates, &holdout(rmse(1.55), Some(rmse(1.5)))).0);
        let (passed, checks) = judge(task, &gates, &holdout(rmse(1.7), Some(rmse(1.5))));
        assert!(!passed && checks[1].detail.contains("rise 0.2000"), "{checks:?}");
    }
}
