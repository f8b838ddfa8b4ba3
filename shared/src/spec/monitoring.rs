//! The `monitoring` section: drift windows, the drift test and threshold for each feature, the
//! floor on label-based quality in production, and feedback versions made of labelled predictions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BusinessSpec, FeatureKind, FeatureSpec, SpecError, Task, bad};

/// Drift monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSpec {
    /// Predictions per window (tumbling).
    #[serde(default = "default_window")]
    pub window: u32,
    /// Also close a window this many seconds after its first prediction, however few it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u64>,
    /// What a window is compared with: the serving model's training data, or the window before.
    /// (Left out of the canonical form when it is the default, so older specs keep their hash.)
    #[serde(default, skip_serializing_if = "ReferenceKind::is_training")]
    pub reference: ReferenceKind,
    /// The drift test for every feature; chosen per feature by type, cardinality and reference
    /// size when absent (Evidently's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<DriftMethod>,
    /// Per-feature choices over `method` and the defaults, by feature name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, DriftOverride>,
    /// The PSI above which a feature has drifted, when PSI is its test.
    #[serde(default = "default_psi")]
    pub psi_threshold: f64,
    /// The window has drifted when this share of features has (Evidently's dataset-drift rule).
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    /// After an alert, further alerts of the same kind for the pipeline wait this long.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    /// Quality on delayed labels (`labels.arrived`), and the floor that raises an alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceSpec>,
    /// Labelled production predictions written back as training data (`source: feedback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackSpec>,
    /// The largest Jensen–Shannon distance (base 2, in [0, 1]) between the looked-up features'
    /// served values and the offline store's for the same time before a window raises
    /// `monitor.skew_detected` (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_skew: Option<f64>,
}

/// When labelled predictions become a feedback dataset version: once `min_rows` wait, or once the
/// oldest has waited `max_age_hours`, whichever comes first. A label whose prediction is older
/// than `max_age_hours` is left out (it still counts for quality).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSpec {
    #[serde(default = "default_feedback_rows")]
    pub min_rows: u64,
    #[serde(default = "default_feedback_age")]
    pub max_age_hours: f64,
}

/// The columns a feedback version adds to the spec's, naming each row's prediction: its id, the
/// model version that made it, and when (a UTC timestamp in milliseconds).
pub const FEEDBACK_COLUMNS: [&str; 3] = ["prediction_id", "model_version", "predicted_at"];

/// The most rows one feedback version holds: rows beyond it wait for the next one.
pub const MAX_FEEDBACK_ROWS: u64 = 1_000_000;

fn default_feedback_rows() -> u64 {
    5_000
}
fn default_feedback_age() -> f64 {
    24.0
}

impl FeedbackSpec {
    /// `max_age_hours` in milliseconds.
    pub fn max_age_ms(&self) -> i64 {
        (self.max_age_hours * 3_600_000.0) as i64
    }

    fn check(&self) -> Result<(), SpecError> {
        if !(1..=MAX_FEEDBACK_ROWS).contains(&self.min_rows) {
            return bad(format!("`monitoring.feedback.min_rows` must be between 1 and {MAX_FEEDBACK_ROWS}"));
        }
        // A year at most: the monitor keeps predictions for labels a week by default anyway.
        if !(self.max_age_hours.is_finite() && self.max_age_hours > 0.0 && self.max_age_hours <= 8760.0) {
            return bad("`monitoring.feedback.max_age_hours` must be a positive number of hours, at most 8760".into());
        }
        Ok(())
    }
}

/// What a monitoring window is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// The serving model's training data (its reference profile).
    #[default]
    Training,
    /// The window before (the first window is compared with the training data).
    Rolling,
}

impl ReferenceKind {
    fn is_training(&self) -> bool {
        *self == Self::Training
    }
}

/// A drift test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Two-sample Kolmogorov–Smirnov (numeric): drifted when p < threshold (0.05).
    Ks,
    /// Chi-square goodness of fit of the bins: drifted when p < threshold (0.05).
    ChiSquare,
    /// Population stability index of the bins: drifted when ≥ `psi_threshold`.
    Psi,
    /// Wasserstein distance over the reference's standard deviation (numeric): drifted when ≥
    /// threshold (0.1).
    Wasserstein,
    /// Jensen–Shannon distance of the bins (the square root of the divergence in nats, as scipy
    /// and Evidently): drifted when ≥ threshold (0.1). `jensen_shannon`, its name before the
    /// divergence and the distance were told apart, still reads.
    #[serde(alias = "jensen_shannon")]
    JensenShannonDistance,
}

impl DriftMethod {
    /// The name in specs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ks => "ks",
            Self::ChiSquare => "chi_square",
            Self::Psi => "psi",
            Self::Wasserstein => "wasserstein",
            Self::JensenShannonDistance => "jensen_shannon_distance",
        }
    }

    /// Whether the score is a p-value (drifted below the threshold) rather than a distance.
    pub fn is_test(self) -> bool {
        matches!(self, Self::Ks | Self::ChiSquare)
    }

    /// Whether it compares distributions of numbers only.
    pub fn numeric_only(self) -> bool {
        matches!(self, Self::Ks | Self::Wasserstein)
    }
}

/// One feature's drift test and threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<DriftMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// Label-based quality in production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceSpec {
    /// The task's metric (e.g. `accuracy`, `roc_auc`, `rmse`).
    pub metric: String,
    /// Floor for a higher-is-better metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Ceiling for a lower-is-better metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Labelled predictions the quality is measured on (the newest this many).
    #[serde(default = "default_performance_window")]
    pub window: u32,
}

fn default_performance_window() -> u32 {
    200
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            window: default_window(),
            window_secs: None,
            reference: ReferenceKind::default(),
            method: None,
            features: BTreeMap::new(),
            psi_threshold: default_psi(),
            drift_share: default_drift_share(),
            cooldown_secs: default_cooldown(),
            performance: None,
            feedback: None,
            max_skew: None,
        }
    }
}

fn default_window() -> u32 {
    500
}
fn default_psi() -> f64 {
    0.2
}
fn default_drift_share() -> f64 {
    0.5
}
fn default_cooldown() -> u64 {
    3600
}

impl MonitoringSpec {
    /// Checks the window and thresholds, each per-feature choice against the spec's `features`,
    /// and the quality floor against `task`.
    pub(super) fn check(
        &self,
        features: &[FeatureSpec],
        task: Task,
        business: Option<&BusinessSpec>,
    ) -> Result<(), SpecError> {
        if self.window < 10 {
            return bad("`monitoring.window` must be at least 10 predictions".into());
        }
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            return bad("`monitoring.drift_share` must be in (0, 1]".into());
        }
        if self.psi_threshold <= 0.0 {
            return bad("`monitoring.psi_threshold` must be positive".into());
        }
        if self.max_skew.is_some_and(|m| !(m > 0.0 && m <= 1.0)) {
            return bad("`monitoring.max_skew` must be in (0, 1]".into());
        }
        if self.window_secs == Some(0) {
            return bad("`monitoring.window_secs` must be at least 1".into());
        }
        for (name, o) in &self.features {
            let Some(f) = features.iter().find(|f| f.name == *name) else {
                return bad(format!("`monitoring.features.{name}`: `{name}` is not a feature"));
            };
            o.check(name, f.kind, self.method)?;
        }
        if let Some(p) = &self.performance {
            p.check(task, business)?;
        }
        if let Some(f) = &self.feedback {
            f.check()?;
        }
        Ok(())
    }
}

impl DriftOverride {
    /// Checks the choice for the feature `name`, of type `kind`, where `method` is the test for
    /// every feature.
    fn check(&self, name: &str, kind: FeatureKind, method: Option<DriftMethod>) -> Result<(), SpecError> {
        if let Some(method) = self.method.or(method)
            && method.numeric_only()
            && kind == FeatureKind::Categorical
        {
            return bad(format!(
                "`monitoring.features.{name}`: `{}` compares numbers; `{name}` is categorical",
                method.as_str()
            ));
        }
        if let Some(t) = self.threshold {
            let is_test = self.method.or(method).is_some_and(DriftMethod::is_test);
            if !(t.is_finite() && t > 0.0) || (is_test && t >= 1.0) {
                return bad(format!(
                    "`monitoring.features.{name}.threshold` must be positive{}",
                    if is_test { " and below 1 (a p-value)" } else { "" }
                ));
            }
        }
        Ok(())
    }
}

impl PerformanceSpec {
    /// Checks the metric (one of `task`'s), that the limit suits its direction, and the window.
    fn check(&self, task: Task, business: Option<&BusinessSpec>) -> Result<(), SpecError> {
        let higher = super::business::direction(task, &self.metric, business)
            .or_else(|e| bad(format!("`monitoring.performance.metric`: {e}")))?;
        match (higher, self.min, self.max) {
            (_, None, None) => return bad("`monitoring.performance` needs `min` or `max`".into()),
            (true, _, Some(_)) => {
                return bad(format!("`monitoring.performance`: `{}` is higher-is-better: give `min`", self.metric));
            }
            (false, Some(_), _) => {
                return bad(format!("`monitoring.performance`: `{}` is lower-is-better: give `max`", self.metric));
            }
            _ => {}
        }
        if self.window < 10 {
            return bad("`monitoring.performance.window` must be at least 10 labelled predictions".into());
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
    fn monitoring_choices_name_what_is_wrong() {
        let m = |body: &str| format!("{SPEC}monitoring: {body}\n");
        let cases = [
            (m("{features: {plan: {method: ks}}}"), "`monitoring.features.plan`: `plan` is not a feature"),
            (
                m("{features: {contract: {method: wasserstein}}}"),
                "`wasserstein` compares numbers; `contract` is categorical",
            ),
            (m("{method: ks, features: {contract: {}}}"), "`ks` compares numbers; `contract` is categorical"),
            (m("{features: {tenure: {method: ks, threshold: 5}}}"), "below 1 (a p-value)"),
            (m("{features: {tenure: {method: mmd}}}"), "unknown variant `mmd`"),
            (m("{window_secs: 0}"), "`monitoring.window_secs` must be at least 1"),
            (m("{reference: yesterday}"), "unknown variant `yesterday`"),
            (m("{performance: {metric: rmse, max: 1}}"), "`rmse` is not a binary_classification metric"),
            (m("{performance: {metric: accuracy, max: 0.9}}"), "`accuracy` is higher-is-better: give `min`"),
            (m("{performance: {metric: log_loss, min: 0.9}}"), "`log_loss` is lower-is-better: give `max`"),
            (m("{performance: {metric: accuracy}}"), "needs `min` or `max`"),
            (m("{feedback: {min_rows: 0}}"), "`monitoring.feedback.min_rows` must be between 1 and"),
            (m("{feedback: {max_age_hours: -1}}"), "`monitoring.feedback.max_age_hours` must be a positive"),
            (m("{feedback: {rows: 10}}"), "unknown field `rows`"),
            (
                format!("{}columns:\n  - {{name: prediction_id, type: categorical}}\n", m("{feedback: {}}")),
                "adds a column `prediction_id` to feedback versions; rename the spec's `prediction_id`",
            ),
        ];
        for (text, expected) in cases {
            let err = PipelineSpec::from_yaml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        let ok = PipelineSpec::from_yaml(&m(
            "{reference: rolling, window_secs: 60, method: psi, features: {tenure: {method: wasserstein, threshold: 0.2}}, \
             performance: {metric: accuracy, min: 0.7, window: 100}}",
        ))
        .unwrap();
        assert_eq!(ok.monitoring.features["tenure"].method, Some(DriftMethod::Wasserstein));
        assert_eq!(ok.monitoring.reference, ReferenceKind::Rolling);
        let feedback = PipelineSpec::from_yaml(&m("{feedback: {min_rows: 100}}")).unwrap().monitoring.feedback;
        assert_eq!(feedback, Some(FeedbackSpec { min_rows: 100, max_age_hours: 24.0 }));
        // The defaults leave the canonical form as it was, so older specs keep their hash.
        let plain = String::from_utf8(PipelineSpec::from_yaml(SPEC).unwrap().canonical_json()).unwrap();
        assert!(!plain.contains("reference") && !plain.contains("performance"), "{plain}");
    }
}
