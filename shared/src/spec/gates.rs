//! The `gates`, `evaluation` and `serving_limits` sections: what a candidate model must score,
//! overall and on each slice, and what serving it may cost, before it is promoted.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{BusinessSpec, FeatureKind, FeatureSpec, SpecError, Task, bad, is_default};

/// One quality gate on a metric (one of the task's metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub metric: String,
    /// The rows the gate judges: the holdout (default) or the newest validated data.
    #[serde(default, skip_serializing_if = "is_default")]
    pub on: GateRows,
    /// Absolute floor, for a higher-is-better metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Absolute ceiling, for a lower-is-better metric (an error or a loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Largest tolerated worsening against the production model on the same rows (the epsilon):
    /// a drop for a higher-is-better metric, a rise for a lower-is-better one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drop: Option<f64>,
    /// Largest tolerated worsening as a share of the production model's value (0.02 = 2 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relative_drop: Option<f64>,
    /// Floor on every slice of `evaluation.slices` (higher-is-better metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_min: Option<f64>,
    /// Ceiling on every slice of `evaluation.slices` (lower-is-better metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_max: Option<f64>,
}

/// The rows a gate judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateRows {
    /// The seeded holdout split of the candidate's training data.
    #[default]
    Holdout,
    /// The rows of the pipeline's newest validated dataset that the candidate did not train on.
    Newest,
}

impl GateRows {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Holdout => "holdout",
            Self::Newest => "newest",
        }
    }
}

/// How candidates are judged beyond the gates' overall numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSpec {
    /// Categorical features whose every value is a slice: the evaluator measures each slice of the
    /// holdout, and the gates' `slice_min` / `slice_max` apply to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<String>,
    /// Slices with fewer holdout rows are reported but not gated.
    #[serde(default = "default_min_slice_rows")]
    pub min_slice_rows: u32,
    /// `mlops staleness`: how quality falls with a model's age.
    #[serde(default, skip_serializing_if = "is_default")]
    pub staleness: StalenessSpec,
}

impl Default for EvaluationSpec {
    fn default() -> Self {
        Self { slices: Vec::new(), min_slice_rows: default_min_slice_rows(), staleness: StalenessSpec::default() }
    }
}

fn default_min_slice_rows() -> u32 {
    30
}

/// The staleness analysis: the last `versions` production models on the newest data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StalenessSpec {
    /// How many of the latest production versions to compare.
    #[serde(default = "default_staleness_versions")]
    pub versions: u32,
    /// The largest tolerated quality loss, as a share of the freshest model's value.
    #[serde(default = "default_staleness_tolerance")]
    pub tolerance: f64,
    /// The metric compared; the task's default (roc_auc, rmse) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// When the evaluator runs the analysis and publishes `model.staleness_reported` (cron, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

impl Default for StalenessSpec {
    fn default() -> Self {
        Self {
            versions: default_staleness_versions(),
            tolerance: default_staleness_tolerance(),
            metric: None,
            schedule: None,
        }
    }
}

fn default_staleness_versions() -> u32 {
    5
}
fn default_staleness_tolerance() -> f64 {
    0.05
}

impl StalenessSpec {
    /// The parsed schedule, if any.
    pub fn cron(&self) -> Option<Result<croner::Cron, String>> {
        self.schedule.as_deref().map(|s| {
            s.parse::<croner::Cron>()
                .map_err(|e| format!("`evaluation.staleness.schedule` {s:?} is not a cron expression: {e}"))
        })
    }
}

/// Limits a candidate must meet to be promoted, measured by the evaluator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingLimits {
    /// The 99th percentile of single-row prediction time (preprocessing included), in
    /// milliseconds, measured on holdout rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<f64>,
    /// The artifact's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_artifact_bytes: Option<u64>,
}

/// Checks every gate: a metric of `task`, gated once per metric and rows, with thresholds that
/// suit the metric's direction and can be met, and slices only where `evaluation` declares them.
pub(super) fn check(
    gates: &[GateSpec],
    task: Task,
    evaluation: &EvaluationSpec,
    business: Option<&BusinessSpec>,
) -> Result<(), SpecError> {
    let mut gated = BTreeSet::new();
    for g in gates {
        let higher = super::business::direction(task, &g.metric, business).or_else(|e| bad(format!("gates: {e}")))?;
        let at = format!("gates: the gate on `{}` ({} rows)", g.metric, g.on.as_str());
        if !gated.insert((g.metric.as_str(), g.on)) {
            return bad(format!("{at} is given twice: merge the two into one"));
        }
        g.check_thresholds(&at, higher, evaluation)?;
    }
    Ok(())
}

impl GateSpec {
    /// Checks the thresholds of the gate named `at` in messages, on a metric for which `higher`
    /// tells whether higher is better.
    fn check_thresholds(&self, at: &str, higher: bool, evaluation: &EvaluationSpec) -> Result<(), SpecError> {
        let limits = [self.min, self.max, self.max_drop, self.max_relative_drop, self.slice_min, self.slice_max];
        if limits.iter().all(Option::is_none) {
            return bad(format!(
                "{at} needs `min`, `max`, `max_drop`, `max_relative_drop`, `slice_min` or `slice_max`"
            ));
        }
        if limits.iter().flatten().any(|v| !v.is_finite()) {
            return bad(format!("{at}: every threshold must be a finite number"));
        }
        if higher && (self.max.is_some() || self.slice_max.is_some()) {
            return bad(format!(
                "{at}: `{}` is higher-is-better: give floors (`min`, `slice_min`), not ceilings",
                self.metric
            ));
        }
        if !higher && (self.min.is_some() || self.slice_min.is_some()) {
            return bad(format!(
                "{at}: `{}` is lower-is-better: give ceilings (`max`, `slice_max`), not floors",
                self.metric
            ));
        }
        // A threshold no model can meet is a contradiction, not a gate.
        let (lo, hi) = Task::metric_range(&self.metric);
        for (name, floor) in [("min", self.min), ("slice_min", self.slice_min)] {
            if floor.is_some_and(|v| v > hi) {
                return bad(format!(
                    "{at}: `{name}` {} can never be met: `{}` is at most {hi}",
                    floor.unwrap_or_default(),
                    self.metric
                ));
            }
        }
        for (name, ceiling) in [("max", self.max), ("slice_max", self.slice_max)] {
            if ceiling.is_some_and(|v| v < lo) {
                return bad(format!(
                    "{at}: `{name}` {} can never be met: `{}` is at least {lo}",
                    ceiling.unwrap_or_default(),
                    self.metric
                ));
            }
        }
        if self.max_drop.is_some_and(|d| d < 0.0) {
            return bad(format!("{at}: `max_drop` must not be negative"));
        }
        if self.max_relative_drop.is_some_and(|d| d < 0.0) {
            return bad(format!("{at}: `max_relative_drop` must not be negative (0.02 is 2 %)"));
        }
        if (self.slice_min.is_some() || self.slice_max.is_some()) && evaluation.slices.is_empty() {
            return bad(format!("{at}: per-slice thresholds need `evaluation.slices` (the features to slice by)"));
        }
        if (self.slice_min.is_some() || self.slice_max.is_some()) && self.on == GateRows::Newest {
            return bad(format!(
                "{at}: slices are measured on the holdout: use `on: holdout` for per-slice thresholds"
            ));
        }
        Ok(())
    }
}

impl EvaluationSpec {
    /// Checks the slices (categorical `features`, each named once), the smallest slice, and the
    /// staleness analysis for `task`.
    pub(super) fn check(&self, features: &[FeatureSpec], task: Task) -> Result<(), SpecError> {
        let mut sliced = BTreeSet::new();
        for name in &self.slices {
            match features.iter().find(|f| f.name == *name) {
                Some(f) if f.kind == FeatureKind::Categorical => {}
                Some(_) => {
                    return bad(format!("`evaluation.slices`: `{name}` is numeric: slice by categorical features"));
                }
                None => return bad(format!("`evaluation.slices`: `{name}` is not a feature")),
            }
            if !sliced.insert(name.as_str()) {
                return bad(format!("`evaluation.slices` names `{name}` twice"));
            }
        }
        if self.min_slice_rows == 0 {
            return bad("`evaluation.min_slice_rows` must be at least 1".into());
        }
        self.staleness.check(task)
    }
}

impl StalenessSpec {
    /// Checks the number of versions, the tolerance, the metric (one of `task`'s) and the schedule.
    fn check(&self, task: Task) -> Result<(), SpecError> {
        if !(2..=50).contains(&self.versions) {
            return bad("`evaluation.staleness.versions` must be between 2 and 50".into());
        }
        if !(self.tolerance > 0.0 && self.tolerance < 1.0) {
            return bad("`evaluation.staleness.tolerance` must be in (0, 1), e.g. 0.05 for 5 %".into());
        }
        if let Some(metric) = &self.metric
            && task.higher_is_better(metric).is_none()
        {
            return bad(format!(
                "`evaluation.staleness.metric` `{metric}` is not a {} metric (known: {})",
                task.as_str(),
                task.metric_names()
            ));
        }
        if let Some(Err(e)) = self.cron() {
            return bad(e);
        }
        Ok(())
    }
}

impl ServingLimits {
    /// Checks that at least one limit is given, and that each can be met.
    pub(super) fn check(&self) -> Result<(), SpecError> {
        if self.max_p99_ms.is_none() && self.max_artifact_bytes.is_none() {
            return bad("`serving_limits` needs `max_p99_ms` or `max_artifact_bytes`".into());
        }
        if self.max_p99_ms.is_some_and(|ms| !(ms.is_finite() && ms > 0.0)) {
            return bad("`serving_limits.max_p99_ms` must be a positive number of milliseconds".into());
        }
        if self.max_artifact_bytes == Some(0) {
            return bad("`serving_limits.max_artifact_bytes` must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PipelineSpec;
    use crate::spec::tests::SPEC;

    #[test]
    fn contradictory_or_unmeetable_gates_are_refused() {
        let gates = |g: &str| SPEC.replace("  - {metric: roc_auc, min: 0.7, max_drop: 0.01}\n", g);
        let cases = [
            (gates("  - {metric: roc_auc, min: 1.2}\n"), "`min` 1.2 can never be met: `roc_auc` is at most 1"),
            (gates("  - {metric: log_loss, max: -0.1}\n"), "`max` -0.1 can never be met: `log_loss` is at least 0"),
            (
                gates("  - {metric: roc_auc, min: 0.7}\n  - {metric: roc_auc, min: 0.8}\n"),
                "the gate on `roc_auc` (holdout rows) is given twice",
            ),
            (gates("  - {metric: roc_auc, max_relative_drop: -0.1}\n"), "`max_relative_drop` must not be negative"),
            (gates("  - {metric: roc_auc, slice_min: 0.6}\n"), "per-slice thresholds need `evaluation.slices`"),
            (gates("  - {metric: brier, slice_min: 0.2}\n"), "`brier` is lower-is-better"),
            (gates("  - {metric: roc_auc, on: newest}\n"), "needs `min`, `max`"),
            (gates("  - {metric: roc_auc, on: latest, min: 0.5}\n"), "unknown variant `latest`"),
            (format!("{SPEC}evaluation: {{slices: [tenure]}}\n"), "`tenure` is numeric"),
            (format!("{SPEC}evaluation: {{slices: [plan]}}\n"), "`plan` is not a feature"),
            (format!("{SPEC}evaluation: {{staleness: {{tolerance: 5}}}}\n"), "tolerance` must be in (0, 1)"),
            (format!("{SPEC}evaluation: {{staleness: {{versions: 1}}}}\n"), "between 2 and 50"),
            (format!("{SPEC}evaluation: {{staleness: {{schedule: often}}}}\n"), "not a cron expression"),
            (format!("{SPEC}evaluation: {{staleness: {{metric: rmse}}}}\n"), "`rmse` is not a binary_classification"),
        ];
        for (text, expected) in cases {
            let err = PipelineSpec::from_yaml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        let ok = gates(
            "  - {metric: roc_auc, min: 0.7, max_relative_drop: 0.02, slice_min: 0.6}\n  \
             - {metric: roc_auc, on: newest, min: 0.65}\n",
        );
        let spec =
            PipelineSpec::from_yaml(&format!("{ok}evaluation: {{slices: [contract], min_slice_rows: 20}}\n")).unwrap();
        assert_eq!(spec.gates[1].on, GateRows::Newest);
        assert_eq!((spec.evaluation.min_slice_rows, spec.evaluation.staleness.versions), (20, 5));
        // A spec that leaves the new sections out hashes as it did before they existed.
        assert!(
            !String::from_utf8(PipelineSpec::from_yaml(SPEC).unwrap().canonical_json()).unwrap().contains("evaluation")
        );
    }
}
