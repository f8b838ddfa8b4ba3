//! The `deployment` section: how a new model replaces the serving one (at once, as a canary or as
//! a shadow), how a live release is judged, and how many predictions are logged.

use serde::{Deserialize, Serialize};

use super::{SpecError, bad, is_default};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(default)]
    pub strategy: Strategy,
    /// Share of predictions logged to `mlops.predictions.<pipeline>`, in [0, 1].
    #[serde(default = "default_sample")]
    pub log_sample: f64,
    /// How a `canary` or `shadow` release runs and is judged.
    #[serde(default, skip_serializing_if = "is_default")]
    pub canary: CanarySpec,
}

fn default_sample() -> f64 {
    1.0
}

/// A spec without a `deployment` section: direct releases, every prediction logged (the
/// monitor's drift windows and label quality need them).
impl Default for DeploymentSpec {
    fn default() -> Self {
        Self { strategy: Strategy::default(), log_sample: default_sample(), canary: CanarySpec::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Swap the new model in for all traffic at once.
    #[default]
    Direct,
    /// Send `canary.percent` of the requests to the new model, compare it live with the serving
    /// one, and promote it to all traffic or roll it back.
    Canary,
    /// Mirror requests to the new model (its answers are compared, never returned), then promote
    /// or roll back on the same comparison.
    Shadow,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Canary => "canary",
            Self::Shadow => "shadow",
        }
    }
}

/// A live release and its judgement: after `duration_secs` and `min_requests` answered by the new
/// model, it is promoted unless it is worse than the serving model by one of the limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// Percent of requests the new model answers (canary) or sees mirrored (shadow), 1 to 100.
    #[serde(default = "default_canary_percent")]
    pub percent: f64,
    #[serde(default = "default_canary_duration")]
    pub duration_secs: f64,
    #[serde(default = "default_canary_requests")]
    pub min_requests: u64,
    /// Largest tolerated rise of the error rate (failed predictions per request) over the serving model's.
    #[serde(default = "default_error_rise")]
    pub max_error_rate_increase: f64,
    /// Largest tolerated ratio of the new model's p99 latency to the serving model's (a 1 ms
    /// difference is always tolerated).
    #[serde(default = "default_latency_ratio")]
    pub max_latency_ratio: f64,
    /// Largest tolerated population stability index between the two models' predicted
    /// probabilities (classification).
    #[serde(default = "default_prediction_psi")]
    pub max_prediction_psi: f64,
    /// Labelled predictions (`labels.arrived`) each model needs before label quality is judged.
    #[serde(default = "default_min_labels")]
    pub min_labels: u64,
    /// Classification: largest tolerated drop of accuracy on labelled predictions (absolute).
    #[serde(default = "default_accuracy_drop")]
    pub max_accuracy_drop: f64,
    /// Regression: largest tolerated rise of the mean absolute error on labelled predictions, as
    /// a share of the serving model's.
    #[serde(default = "default_mae_increase")]
    pub max_mae_increase: f64,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            percent: default_canary_percent(),
            duration_secs: default_canary_duration(),
            min_requests: default_canary_requests(),
            max_error_rate_increase: default_error_rise(),
            max_latency_ratio: default_latency_ratio(),
            max_prediction_psi: default_prediction_psi(),
            min_labels: default_min_labels(),
            max_accuracy_drop: default_accuracy_drop(),
            max_mae_increase: default_mae_increase(),
        }
    }
}

fn default_canary_percent() -> f64 {
    10.0
}
fn default_canary_duration() -> f64 {
    300.0
}
fn default_canary_requests() -> u64 {
    100
}
fn default_error_rise() -> f64 {
    0.01
}
fn default_latency_ratio() -> f64 {
    2.0
}
fn default_prediction_psi() -> f64 {
    0.25
}
fn default_min_labels() -> u64 {
    30
}
fn default_accuracy_drop() -> f64 {
    0.05
}
fn default_mae_increase() -> f64 {
    0.1
}

impl DeploymentSpec {
    /// Checks the live release's limits, then the logged share.
    pub(super) fn check(&self) -> Result<(), SpecError> {
        self.canary.check()?;
        if !(0.0..=1.0).contains(&self.log_sample) {
            return bad("`deployment.log_sample` must be in [0, 1]".into());
        }
        Ok(())
    }
}

impl CanarySpec {
    /// Checks the traffic share, the duration, the evidence needed and each tolerated worsening.
    fn check(&self) -> Result<(), SpecError> {
        if !(self.percent > 0.0 && self.percent <= 100.0) {
            return bad("`deployment.canary.percent` must be in (0, 100]".into());
        }
        if !(self.duration_secs.is_finite() && self.duration_secs >= 0.0) {
            return bad("`deployment.canary.duration_secs` must be a number of seconds, 0 or more".into());
        }
        if self.min_requests == 0 {
            return bad("`deployment.canary.min_requests` must be at least 1".into());
        }
        if !(self.max_error_rate_increase >= 0.0 && self.max_error_rate_increase <= 1.0) {
            return bad("`deployment.canary.max_error_rate_increase` must be in [0, 1]".into());
        }
        if !(self.max_latency_ratio.is_finite() && self.max_latency_ratio >= 1.0) {
            return bad("`deployment.canary.max_latency_ratio` must be 1 or more".into());
        }
        if !(self.max_prediction_psi.is_finite() && self.max_prediction_psi > 0.0) {
            return bad("`deployment.canary.max_prediction_psi` must be positive".into());
        }
        if self.min_labels == 0 {
            return bad("`deployment.canary.min_labels` must be at least 1".into());
        }
        if !(self.max_accuracy_drop.is_finite() && (0.0..1.0).contains(&self.max_accuracy_drop)) {
            return bad("`deployment.canary.max_accuracy_drop` must be in [0, 1)".into());
        }
        if !(self.max_mae_increase.is_finite() && self.max_mae_increase >= 0.0) {
            return bad("`deployment.canary.max_mae_increase` must be 0 or more".into());
        }
        Ok(())
    }
}
