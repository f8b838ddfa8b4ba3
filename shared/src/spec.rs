//! The pipeline spec: what a team declares about its data, model, gates, deployment and monitoring.
//! Written in YAML (`mlops pipeline apply spec.yaml`), checked here, stored by the registry and
//! published to the `pipelines` key-value bucket as canonical JSON for every service to read.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::bus::{Bus, BusError, PIPELINES_KV};
use crate::ids::PipelineName;

/// Why a spec was refused. The message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("spec is not valid YAML for a pipeline: {0}")]
    Parse(String),
    #[error("spec: {0}")]
    Invalid(String),
}

/// A pipeline spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: PipelineName,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub features: Vec<FeatureSpec>,
    /// Columns the validator checks but the model never sees: ids, free text, timestamps kept
    /// as text. A categorical one may leave `categories` out (an open domain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<FeatureSpec>,
    pub target: TargetSpec,
    #[serde(default)]
    pub training: TrainingSpec,
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// The infrastructure gate: limits on what serving the candidate would cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_limits: Option<ServingLimits>,
    /// Slices and the staleness analysis.
    #[serde(default, skip_serializing_if = "is_default")]
    pub evaluation: EvaluationSpec,
    #[serde(default)]
    pub deployment: DeploymentSpec,
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    #[serde(default, skip_serializing_if = "is_default_validation")]
    pub validation: ValidationSpec,
}

fn is_default_validation(v: &ValidationSpec) -> bool {
    *v == ValidationSpec::default()
}

/// One input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FeatureKind,
    /// Inclusive lower bound (numeric features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Inclusive upper bound (numeric features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The allowed values (categorical features).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// A regular expression every value must match, whole (categorical columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Whether empty cells are allowed.
    #[serde(default)]
    pub nullable: bool,
    /// Whether this feature's anomalies block the dataset (`block`, the default) or only warn.
    #[serde(default, skip_serializing_if = "Severity::is_block")]
    pub severity: Severity,
    /// Share of rows that must pass each value check (type, nulls, range, domain); anomalies
    /// within this tolerance only warn. 1.0 (the default) tolerates none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mostly: Option<f64>,
    /// Whether every value must be distinct.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// Largest tolerated change against the previous accepted version: Jensen-Shannon divergence
    /// (base 2, in [0, 1]) over the previous histogram for numeric features, L-infinity distance
    /// of category frequencies for categorical ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drift: Option<f64>,
    /// How a categorical feature becomes model inputs (`one_hot` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// What a missing numeric value becomes before standardisation (`mean` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impute: Option<Impute>,
}

/// How a categorical feature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One input per category, 1 for the row's category; an unseen or missing one is all zeros.
    OneHot,
    /// One input: the category's position in `categories` (0, 1, …), for ordered categories;
    /// an unseen or missing one is -1.
    Ordinal,
}

/// How a missing numeric value is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impute {
    /// The training rows' mean.
    Mean,
    /// The training rows' median (robust to outliers).
    Median,
}

/// `pattern` compiled to match a whole value, not a part of it.
pub fn full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$")).size_limit(1 << 20).build()
}

/// Where a dataset belongs in a model's life (TFDV's environments). Serving-time data may lack the
/// label: it is validated and profiled (and compared with the training reference), never trained
/// on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Training,
    Serving,
}

impl Environment {
    /// Parses the wire form; empty means training.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "training" => Ok(Self::Training),
            "serving" => Ok(Self::Serving),
            other => Err(format!("environment {other:?} is not `training` or `serving`")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Training => "training",
            Self::Serving => "serving",
        }
    }
}

/// Whether an anomaly stops a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Block,
    Warn,
}

impl Severity {
    fn is_block(&self) -> bool {
        *self == Self::Block
    }
}

/// Checks of the dataset as a whole.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Largest tolerated share of rows that repeat an earlier row (over the declared columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duplicate_share: Option<f64>,
    /// Smallest tolerated share of the rarer class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_label_share: Option<f64>,
    /// Severity of these dataset-level checks.
    #[serde(default, skip_serializing_if = "Severity::is_block")]
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// The label column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: String,
    #[serde(default)]
    pub task: Task,
    /// The label value that means the positive class.
    #[serde(default = "default_positive")]
    pub positive: String,
    /// The label value that means the negative class.
    #[serde(default = "default_negative")]
    pub negative: String,
}

impl TargetSpec {
    /// The number a delayed label stands for: 1 or 0 for the positive and negative classes, the
    /// value for regression; `None` for anything else.
    pub fn read_label(&self, label: &str) -> Option<f64> {
        let label = label.trim();
        match self.task {
            Task::BinaryClassification if label == self.positive => Some(1.0),
            Task::BinaryClassification if label == self.negative => Some(0.0),
            Task::BinaryClassification => None,
            Task::Regression => label.parse::<f64>().ok().filter(|v| v.is_finite()),
        }
    }
}

fn default_positive() -> String {
    "1".into()
}
fn default_negative() -> String {
    "0".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Two classes (`target.positive` and `target.negative`); the model predicts the probability
    /// of the positive one.
    #[default]
    BinaryClassification,
    /// A numeric label; the model predicts its value.
    Regression,
}

/// Classification metrics, and whether higher is better.
pub const CLASSIFICATION_METRICS: &[(&str, bool)] = &[
    ("roc_auc", true),
    ("accuracy", true),
    ("log_loss", false),
    ("precision", true),
    ("recall", true),
    ("f1", true),
    ("pr_auc", true),
    ("brier", false),
];
/// Regression metrics, and whether higher is better.
pub const REGRESSION_METRICS: &[(&str, bool)] = &[("rmse", false), ("mae", false), ("r2", true), ("mape", false)];

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BinaryClassification => "binary_classification",
            Self::Regression => "regression",
        }
    }

    /// The metrics measured for this task (name, higher is better).
    pub fn metrics(self) -> &'static [(&'static str, bool)] {
        match self {
            Self::BinaryClassification => CLASSIFICATION_METRICS,
            Self::Regression => REGRESSION_METRICS,
        }
    }

    /// Whether higher values of `metric` are better; `None` for a metric of another task.
    pub fn higher_is_better(self, metric: &str) -> Option<bool> {
        self.metrics().iter().find(|(m, _)| *m == metric).map(|(_, h)| *h)
    }

    /// The values `metric` can take: probabilities and rates in [0, 1], errors and losses from 0,
    /// R² up to 1.
    pub fn metric_range(metric: &str) -> (f64, f64) {
        match metric {
            "log_loss" | "rmse" | "mae" | "mape" => (0.0, f64::INFINITY),
            "r2" => (f64::NEG_INFINITY, 1.0),
            _ => (0.0, 1.0),
        }
    }

    /// The metric a search ranks by unless the spec says otherwise.
    pub fn default_metric(self) -> &'static str {
        self.metrics()[0].0
    }

    fn metric_names(self) -> String {
        self.metrics().iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
    }
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Hyper-parameters by name; each algorithm documents the ones it reads.
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// Share of rows held out for evaluation, in (0, 1).
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Which accepted training versions a run trains on (the newest one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TrainingWindow>,
    /// What starts a run besides a manual request (new data, drift and degradation alerts, at
    /// once, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<TriggerSpec>,
    /// Hyper-parameter candidates tried on validation rows before the final fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSpec>,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::default(),
            params: BTreeMap::new(),
            holdout: default_holdout(),
            seed: default_seed(),
            window: None,
            triggers: None,
            search: None,
        }
    }
}

/// What starts a training run, and how bursts are tamed. A manual request (`mlops train`) and a
/// schedule slot always start a run at once; the automatic triggers wait for the debounce window
/// and the cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The events that start a run (default: all three).
    #[serde(default = "all_trigger_events")]
    pub on: Vec<TriggerEvent>,
    /// New data waits this long after the first new version for more, then one run trains on
    /// all of it: a hundred small batches inside the window make one run.
    #[serde(default)]
    pub debounce_secs: f64,
    /// After a run is queued, automatic triggers wait until this long has passed.
    #[serde(default)]
    pub cooldown_secs: f64,
    /// A cron expression in UTC: five fields (minute granularity), or six with seconds first;
    /// also `@hourly`, `@daily` and the like. Each slot queues a run on the training window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

impl Default for TriggerSpec {
    fn default() -> Self {
        Self { on: all_trigger_events(), debounce_secs: 0.0, cooldown_secs: 0.0, schedule: None }
    }
}

impl TriggerSpec {
    /// Whether `event` starts runs.
    pub fn fires_on(&self, event: TriggerEvent) -> bool {
        self.on.contains(&event)
    }

    /// The parsed schedule, if any.
    pub fn cron(&self) -> Option<Result<croner::Cron, String>> {
        self.schedule.as_deref().map(|s| {
            s.parse::<croner::Cron>()
                .map_err(|e| format!("`training.triggers.schedule` {s:?} is not a cron expression: {e}"))
        })
    }
}

/// An event that may start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEvent {
    /// A training version passed validation.
    NewData,
    /// The monitor raised a drift alert.
    Drift,
    /// The monitor found label-based quality under its floor.
    Degradation,
}

fn all_trigger_events() -> Vec<TriggerEvent> {
    vec![TriggerEvent::NewData, TriggerEvent::Drift, TriggerEvent::Degradation]
}

/// Hyper-parameter search: every combination of the listed values (a grid) is trained on part of
/// the training rows and scored on the rest; the best is refitted on all training rows. Every
/// candidate and its score is kept in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// Values to try, by parameter name; the other parameters come from `training.params`.
    pub params: BTreeMap<String, Vec<f64>>,
    /// k-fold cross-validation with this many folds; absent, one validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<u32>,
    /// The share of training rows held for validation when there are no folds.
    #[serde(default = "default_validation_share")]
    pub validation: f64,
    /// The metric that ranks candidates: one of the task's (`roc_auc` by default for
    /// classification, `rmse` for regression); lower is better for losses and errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// The largest grid a search may hold.
pub const MAX_CANDIDATES: usize = 256;

fn default_validation_share() -> f64 {
    0.2
}

impl SearchSpec {
    /// Every candidate: the grid's combinations in a fixed order (the last parameter varies
    /// fastest), each merged over `base`.
    pub fn candidates(&self, base: &BTreeMap<String, f64>) -> Vec<BTreeMap<String, f64>> {
        let mut out = vec![base.clone()];
        for (name, values) in &self.params {
            out = out
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(name.clone(), *v);
                        c
                    })
                })
                .collect();
        }
        out
    }

    /// The metric that ranks candidates for `task`, and whether higher is better.
    pub fn ranking(&self, task: Task) -> (&str, bool) {
        let metric = self.metric.as_deref().unwrap_or(task.default_metric());
        (metric, task.higher_is_better(metric).unwrap_or(true))
    }
}

/// The data a run trains on: the newest `versions` accepted versions, or every version accepted in
/// the last `days` days (the newest always included); with both, whichever holds fewer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<f64>,
}

impl TrainingWindow {
    /// The ids to train on from `history` (id, arrival in Unix ms; oldest first), at `now_ms`.
    pub fn select(window: Option<&Self>, history: &[(String, i64)], now_ms: i64) -> Vec<String> {
        let newest = history.len().saturating_sub(1);
        let mut from = newest;
        if let Some(w) = window {
            from = 0;
            if let Some(n) = w.versions {
                from = from.max(history.len().saturating_sub(n.max(1) as usize));
            }
            if let Some(days) = w.days {
                let since = now_ms - (days * 86_400_000.0) as i64;
                let first_recent = history.iter().position(|(_, ms)| *ms >= since).unwrap_or(newest);
                from = from.max(first_recent.min(newest));
            }
        }
        history.get(from..).unwrap_or_default().iter().map(|(id, _)| id.clone()).collect()
    }
}

fn default_holdout() -> f64 {
    0.2
}
fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// L2-regularised logistic regression. Params: `l2` (default 1.0), `max_iter` (default 50),
    /// `tol` (default 1e-8).
    #[default]
    LogisticRegression,
    /// Gradient-boosted decision trees — on the log-odds for classification, on the value (squared
    /// error) for regression — grown leaf by leaf over histogram bins (as LightGBM does). Params:
    /// `trees` (100), `learning_rate` (0.1), `num_leaves` (31), `max_depth` (0: unlimited),
    /// `min_data_in_leaf` (20), `l2` (0), `max_bins` (255).
    GradientBoosting,
    /// Least squares with an optional L2 penalty on the weights (ridge; the intercept is not
    /// penalised), for regression. Params: `l2` (0: ordinary least squares).
    LinearRegression,
}

impl Algorithm {
    /// The name used in artifacts and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogisticRegression => "logistic_regression",
            Self::GradientBoosting => "gradient_boosting",
            Self::LinearRegression => "linear_regression",
        }
    }

    /// Whether it learns `task`.
    pub fn supports(self, task: Task) -> bool {
        match self {
            Self::LogisticRegression => task == Task::BinaryClassification,
            Self::LinearRegression => task == Task::Regression,
            Self::GradientBoosting => true,
        }
    }

    fn known_params(self) -> &'static [&'static str] {
        match self {
            Self::LogisticRegression => &["l2", "max_iter", "tol"],
            Self::GradientBoosting => {
                &["trees", "learning_rate", "num_leaves", "max_depth", "min_data_in_leaf", "l2", "max_bins"]
            }
            Self::LinearRegression => &["l2"],
        }
    }

    /// Checks one hyper-parameter value, found at `at` in the spec.
    fn check_param(self, at: &str, name: &str, v: f64) -> Result<(), String> {
        let known = self.known_params();
        if !known.contains(&name) {
            return Err(format!("`{at}` is not a parameter of {} (known: {})", self.as_str(), known.join(", ")));
        }
        if !v.is_finite() || v < 0.0 {
            return Err(format!("`{at}` must be a finite non-negative number"));
        }
        if let Some((_, lo, hi)) = self.integer_params().iter().find(|(n, _, _)| *n == name)
            && (v.fract() != 0.0 || v < *lo || v > *hi)
        {
            return Err(format!("`{at}` must be a whole number in [{lo}, {hi}], got {v}"));
        }
        if name == "learning_rate" && !(v > 0.0 && v <= 1.0) {
            return Err(format!("`{at}` must be in (0, 1], got {v}"));
        }
        Ok(())
    }

    /// The parameters that must be whole numbers, with their smallest and largest values.
    fn integer_params(self) -> &'static [(&'static str, f64, f64)] {
        match self {
            Self::LogisticRegression => &[("max_iter", 1.0, 10_000.0)],
            Self::LinearRegression => &[],
            Self::GradientBoosting => &[
                ("trees", 1.0, 100_000.0),
                ("num_leaves", 2.0, 65_536.0),
                ("max_depth", 0.0, 64.0),
                ("min_data_in_leaf", 1.0, 1e9),
                ("max_bins", 2.0, 256.0),
            ],
        }
    }
}

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

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
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

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// Jensen–Shannon distance of the bins: drifted when ≥ threshold (0.1).
    JensenShannon,
}

impl DriftMethod {
    /// The name in specs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ks => "ks",
            Self::ChiSquare => "chi_square",
            Self::Psi => "psi",
            Self::Wasserstein => "wasserstein",
            Self::JensenShannon => "jensen_shannon",
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

impl PipelineSpec {
    /// Parses and checks a YAML spec.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        let mut spec: Self = serde_norway::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        // The default algorithm is the task's: linear regression for a regression target.
        if spec.target.task == Task::Regression {
            let named = serde_norway::from_str::<serde_norway::Value>(text)
                .ok()
                .is_some_and(|v| v.get("training").and_then(|t| t.get("algorithm")).is_some());
            if !named {
                spec.training.algorithm = Algorithm::LinearRegression;
            }
        }
        spec.check()?;
        Ok(spec)
    }

    /// Parses the canonical JSON form stored in the key-value bucket.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SpecError> {
        let spec: Self = serde_json::from_slice(bytes).map_err(|e| SpecError::Parse(e.to_string()))?;
        spec.check()?;
        Ok(spec)
    }

    /// The canonical JSON form: same spec, same bytes.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a spec always serializes")
    }

    /// sha256 of the canonical form, recorded in every model's lineage.
    pub fn hash(&self) -> String {
        crate::sha256_hex(&self.canonical_json())
    }

    /// The feature named `name`.
    pub fn feature(&self, name: &str) -> Option<&FeatureSpec> {
        self.features.iter().find(|f| f.name == name)
    }

    /// The names of the numeric columns (features, checked columns, a regression target), which
    /// readers may decode as numbers.
    pub fn numeric_features(&self) -> Vec<&str> {
        let regression_target = (self.target.task == Task::Regression).then_some(self.target.name.as_str());
        self.features
            .iter()
            .chain(&self.columns)
            .filter(|f| f.kind == FeatureKind::Numeric)
            .map(|f| f.name.as_str())
            .chain(regression_target)
            .collect()
    }

    /// The checked column (feature or not) named `name`.
    pub fn checked_column(&self, name: &str) -> Option<&FeatureSpec> {
        self.features.iter().chain(&self.columns).find(|f| f.name == name)
    }

    /// Checks everything serde cannot: names, bounds, shares, known metrics and parameters.
    pub fn check(&self) -> Result<(), SpecError> {
        let bad = |msg: String| Err(SpecError::Invalid(msg));
        if self.features.is_empty() {
            return bad("`features` must list at least one feature".into());
        }
        let mut seen = BTreeSet::new();
        let sections = self.features.iter().map(|f| ("features", f)).chain(self.columns.iter().map(|f| ("columns", f)));
        for (section, f) in sections {
            let at = format!("{section}.{}", f.name);
            if f.name.is_empty() {
                return bad(format!("an entry of `{section}` has an empty `name`"));
            }
            if !seen.insert(f.name.as_str()) {
                return bad(format!("column `{}` is declared twice", f.name));
            }
            if f.mostly.is_some_and(|m| !(m > 0.0 && m <= 1.0)) {
                return bad(format!("{at}: `mostly` must be in (0, 1]"));
            }
            if f.max_drift.is_some_and(|d| !(0.0..=1.0).contains(&d)) {
                return bad(format!("{at}: `max_drift` must be in [0, 1]"));
            }
            match f.kind {
                FeatureKind::Numeric => {
                    if !f.categories.is_empty() {
                        return bad(format!("{at}: `categories` is for categorical features"));
                    }
                    if f.encoding.is_some() {
                        return bad(format!("{at}: `encoding` is for categorical features"));
                    }
                    if f.regex.is_some() {
                        return bad(format!("{at}: `regex` is for categorical columns"));
                    }
                    if let (Some(lo), Some(hi)) = (f.min, f.max)
                        && lo > hi
                    {
                        return bad(format!("{at}: `min` ({lo}) is greater than `max` ({hi})"));
                    }
                }
                FeatureKind::Categorical => {
                    // A model input needs its categories (they are its one-hot columns); a column
                    // that is only checked may have an open domain.
                    if f.categories.is_empty() && section == "features" {
                        return bad(format!("{at}: a categorical feature needs `categories`"));
                    }
                    if f.min.is_some() || f.max.is_some() {
                        return bad(format!("{at}: `min`/`max` are for numeric features"));
                    }
                    if f.impute.is_some() {
                        return bad(format!("{at}: `impute` is for numeric features"));
                    }
                    if let Some(pattern) = &f.regex {
                        let re = full_match(pattern).map_err(|e| SpecError::Invalid(format!("{at}: `regex`: {e}")))?;
                        if let Some(c) = f.categories.iter().find(|c| !re.is_match(c)) {
                            return bad(format!("{at}: category {c:?} does not match `regex` {pattern:?}"));
                        }
                    }
                }
            }
        }
        if seen.contains(self.target.name.as_str()) {
            return bad(format!("target `{}` is also declared as a feature", self.target.name));
        }
        if self.target.name.is_empty() {
            return bad("`target.name` is empty".into());
        }
        let task = self.target.task;
        if task == Task::BinaryClassification && self.target.positive == self.target.negative {
            return bad("`target.positive` and `target.negative` must differ".into());
        }
        if !self.training.algorithm.supports(task) {
            return bad(format!(
                "`training.algorithm` {} does not learn {} (`target.task`)",
                self.training.algorithm.as_str(),
                task.as_str()
            ));
        }
        if task == Task::Regression && self.validation.min_label_share.is_some() {
            return bad("`validation.min_label_share` is for classification; the target is numeric".into());
        }
        if let Some(w) = &self.training.window {
            if w.versions.is_none() && w.days.is_none() {
                return bad("`training.window` needs `versions` or `days`".into());
            }
            if w.versions == Some(0) {
                return bad("`training.window.versions` must be at least 1".into());
            }
            if w.days.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
                return bad("`training.window.days` must be a positive number".into());
            }
        }
        if !(self.training.holdout > 0.0 && self.training.holdout < 1.0) {
            return bad(format!("`training.holdout` must be in (0, 1), got {}", self.training.holdout));
        }
        let algorithm = self.training.algorithm;
        for (k, v) in &self.training.params {
            algorithm.check_param(&format!("training.params.{k}"), k, *v).map_err(SpecError::Invalid)?;
        }
        if let Some(t) = &self.training.triggers {
            for (key, secs) in [("debounce_secs", t.debounce_secs), ("cooldown_secs", t.cooldown_secs)] {
                if !(secs.is_finite() && (0.0..=30.0 * 86_400.0).contains(&secs)) {
                    return bad(format!("`training.triggers.{key}` must be in [0, 2592000] seconds, got {secs}"));
                }
            }
            if let Some(Err(e)) = t.cron() {
                return bad(e);
            }
        }
        if let Some(search) = &self.training.search {
            if search.params.is_empty() {
                return bad("`training.search.params` lists no parameter to search".into());
            }
            for (k, values) in &search.params {
                if values.is_empty() {
                    return bad(format!("`training.search.params.{k}` lists no value"));
                }
                for v in values {
                    algorithm.check_param(&format!("training.search.params.{k}"), k, *v).map_err(SpecError::Invalid)?;
                }
            }
            let n: usize = search.params.values().map(Vec::len).product();
            if n > MAX_CANDIDATES {
                return bad(format!("`training.search` makes {n} candidates; at most {MAX_CANDIDATES} are allowed"));
            }
            if search.folds.is_some_and(|k| !(2..=20).contains(&k)) {
                return bad("`training.search.folds` must be in [2, 20]".into());
            }
            if !(search.validation > 0.0 && search.validation < 1.0) {
                return bad(format!("`training.search.validation` must be in (0, 1), got {}", search.validation));
            }
            if let Some(metric) = &search.metric
                && task.higher_is_better(metric).is_none()
            {
                return bad(format!(
                    "`training.search.metric` `{metric}` is not a {} metric (known: {})",
                    task.as_str(),
                    task.metric_names()
                ));
            }
        }
        let mut gated = BTreeSet::new();
        for g in &self.gates {
            let Some(higher) = task.higher_is_better(&g.metric) else {
                return bad(format!(
                    "gates: `{}` is not a {} metric (known: {})",
                    g.metric,
                    task.as_str(),
                    task.metric_names()
                ));
            };
            let at = format!("gates: the gate on `{}` ({} rows)", g.metric, g.on.as_str());
            if !gated.insert((g.metric.as_str(), g.on)) {
                return bad(format!("{at} is given twice: merge the two into one"));
            }
            let limits = [g.min, g.max, g.max_drop, g.max_relative_drop, g.slice_min, g.slice_max];
            if limits.iter().all(Option::is_none) {
                return bad(format!(
                    "{at} needs `min`, `max`, `max_drop`, `max_relative_drop`, `slice_min` or `slice_max`"
                ));
            }
            if limits.iter().flatten().any(|v| !v.is_finite()) {
                return bad(format!("{at}: every threshold must be a finite number"));
            }
            if higher && (g.max.is_some() || g.slice_max.is_some()) {
                return bad(format!(
                    "{at}: `{}` is higher-is-better: give floors (`min`, `slice_min`), not ceilings",
                    g.metric
                ));
            }
            if !higher && (g.min.is_some() || g.slice_min.is_some()) {
                return bad(format!(
                    "{at}: `{}` is lower-is-better: give ceilings (`max`, `slice_max`), not floors",
                    g.metric
                ));
            }
            // A threshold no model can meet is a contradiction, not a gate.
            let (lo, hi) = Task::metric_range(&g.metric);
            for (name, floor) in [("min", g.min), ("slice_min", g.slice_min)] {
                if floor.is_some_and(|v| v > hi) {
                    return bad(format!(
                        "{at}: `{name}` {} can never be met: `{}` is at most {hi}",
                        floor.unwrap_or_default(),
                        g.metric
                    ));
                }
            }
            for (name, ceiling) in [("max", g.max), ("slice_max", g.slice_max)] {
                if ceiling.is_some_and(|v| v < lo) {
                    return bad(format!(
                        "{at}: `{name}` {} can never be met: `{}` is at least {lo}",
                        ceiling.unwrap_or_default(),
                        g.metric
                    ));
                }
            }
            if g.max_drop.is_some_and(|d| d < 0.0) {
                return bad(format!("{at}: `max_drop` must not be negative"));
            }
            if g.max_relative_drop.is_some_and(|d| d < 0.0) {
                return bad(format!("{at}: `max_relative_drop` must not be negative (0.02 is 2 %)"));
            }
            if (g.slice_min.is_some() || g.slice_max.is_some()) && self.evaluation.slices.is_empty() {
                return bad(format!("{at}: per-slice thresholds need `evaluation.slices` (the features to slice by)"));
            }
            if (g.slice_min.is_some() || g.slice_max.is_some()) && g.on == GateRows::Newest {
                return bad(format!(
                    "{at}: slices are measured on the holdout: use `on: holdout` for per-slice thresholds"
                ));
            }
        }
        let mut sliced = BTreeSet::new();
        for name in &self.evaluation.slices {
            match self.feature(name) {
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
        if self.evaluation.min_slice_rows == 0 {
            return bad("`evaluation.min_slice_rows` must be at least 1".into());
        }
        let st = &self.evaluation.staleness;
        if !(2..=50).contains(&st.versions) {
            return bad("`evaluation.staleness.versions` must be between 2 and 50".into());
        }
        if !(st.tolerance > 0.0 && st.tolerance < 1.0) {
            return bad("`evaluation.staleness.tolerance` must be in (0, 1), e.g. 0.05 for 5 %".into());
        }
        if let Some(metric) = &st.metric
            && task.higher_is_better(metric).is_none()
        {
            return bad(format!(
                "`evaluation.staleness.metric` `{metric}` is not a {} metric (known: {})",
                task.as_str(),
                task.metric_names()
            ));
        }
        if let Some(Err(e)) = st.cron() {
            return bad(e);
        }
        if let Some(l) = &self.serving_limits {
            if l.max_p99_ms.is_none() && l.max_artifact_bytes.is_none() {
                return bad("`serving_limits` needs `max_p99_ms` or `max_artifact_bytes`".into());
            }
            if l.max_p99_ms.is_some_and(|ms| !(ms.is_finite() && ms > 0.0)) {
                return bad("`serving_limits.max_p99_ms` must be a positive number of milliseconds".into());
            }
            if l.max_artifact_bytes == Some(0) {
                return bad("`serving_limits.max_artifact_bytes` must be positive".into());
            }
        }
        let c = &self.deployment.canary;
        if !(c.percent > 0.0 && c.percent <= 100.0) {
            return bad("`deployment.canary.percent` must be in (0, 100]".into());
        }
        if !(c.duration_secs.is_finite() && c.duration_secs >= 0.0) {
            return bad("`deployment.canary.duration_secs` must be a number of seconds, 0 or more".into());
        }
        if c.min_requests == 0 {
            return bad("`deployment.canary.min_requests` must be at least 1".into());
        }
        if !(c.max_error_rate_increase >= 0.0 && c.max_error_rate_increase <= 1.0) {
            return bad("`deployment.canary.max_error_rate_increase` must be in [0, 1]".into());
        }
        if !(c.max_latency_ratio.is_finite() && c.max_latency_ratio >= 1.0) {
            return bad("`deployment.canary.max_latency_ratio` must be 1 or more".into());
        }
        if !(c.max_prediction_psi.is_finite() && c.max_prediction_psi > 0.0) {
            return bad("`deployment.canary.max_prediction_psi` must be positive".into());
        }
        if c.min_labels == 0 {
            return bad("`deployment.canary.min_labels` must be at least 1".into());
        }
        if !(c.max_accuracy_drop.is_finite() && (0.0..1.0).contains(&c.max_accuracy_drop)) {
            return bad("`deployment.canary.max_accuracy_drop` must be in [0, 1)".into());
        }
        if !(c.max_mae_increase.is_finite() && c.max_mae_increase >= 0.0) {
            return bad("`deployment.canary.max_mae_increase` must be 0 or more".into());
        }
        if !(0.0..=1.0).contains(&self.deployment.log_sample) {
            return bad("`deployment.log_sample` must be in [0, 1]".into());
        }
        let v = &self.validation;
        if let (Some(lo), Some(hi)) = (v.min_rows, v.max_rows)
            && lo > hi
        {
            return bad(format!("`validation.min_rows` ({lo}) is greater than `validation.max_rows` ({hi})"));
        }
        for (key, share) in [("max_duplicate_share", v.max_duplicate_share), ("min_label_share", v.min_label_share)] {
            if share.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                return bad(format!("`validation.{key}` must be in [0, 1]"));
            }
        }
        let m = &self.monitoring;
        if m.window < 10 {
            return bad("`monitoring.window` must be at least 10 predictions".into());
        }
        if !(m.drift_share > 0.0 && m.drift_share <= 1.0) {
            return bad("`monitoring.drift_share` must be in (0, 1]".into());
        }
        if m.psi_threshold <= 0.0 {
            return bad("`monitoring.psi_threshold` must be positive".into());
        }
        if m.window_secs == Some(0) {
            return bad("`monitoring.window_secs` must be at least 1".into());
        }
        for (name, o) in &m.features {
            let Some(f) = self.features.iter().find(|f| f.name == *name) else {
                return bad(format!("`monitoring.features.{name}`: `{name}` is not a feature"));
            };
            if let Some(method) = o.method.or(m.method)
                && method.numeric_only()
                && f.kind == FeatureKind::Categorical
            {
                return bad(format!(
                    "`monitoring.features.{name}`: `{}` compares numbers; `{name}` is categorical",
                    method.as_str()
                ));
            }
            if let Some(t) = o.threshold {
                let is_test = o.method.or(m.method).is_some_and(DriftMethod::is_test);
                if !(t.is_finite() && t > 0.0) || (is_test && t >= 1.0) {
                    return bad(format!(
                        "`monitoring.features.{name}.threshold` must be positive{}",
                        if is_test { " and below 1 (a p-value)" } else { "" }
                    ));
                }
            }
        }
        if let Some(p) = &m.performance {
            let task = self.target.task;
            let Some(higher) = task.higher_is_better(&p.metric) else {
                return bad(format!(
                    "`monitoring.performance.metric` `{}` is not a {} metric (known: {})",
                    p.metric,
                    task.as_str(),
                    task.metric_names()
                ));
            };
            match (higher, p.min, p.max) {
                (_, None, None) => return bad("`monitoring.performance` needs `min` or `max`".into()),
                (true, _, Some(_)) => {
                    return bad(format!("`monitoring.performance`: `{}` is higher-is-better: give `min`", p.metric));
                }
                (false, Some(_), _) => {
                    return bad(format!("`monitoring.performance`: `{}` is lower-is-better: give `max`", p.metric));
                }
                _ => {}
            }
            if p.window < 10 {
                return bad("`monitoring.performance.window` must be at least 10 labelled predictions".into());
            }
        }
        Ok(())
    }
}

/// Reads pipeline specs from the `pipelines` key-value bucket.
#[derive(Clone)]
pub struct SpecStore {
    kv: async_nats::jetstream::kv::Store,
}

impl SpecStore {
    /// Opens the bucket.
    pub async fn open(bus: &Bus) -> Result<Self, BusError> {
        Ok(Self { kv: bus.kv(PIPELINES_KV).await? })
    }

    /// The current spec of `name`, or `None` for an unknown pipeline.
    pub async fn get(&self, name: &str) -> Result<Option<PipelineSpec>, BusError> {
        let err = |message: String| BusError::Kv { bucket: PIPELINES_KV, message };
        match self.kv.get(name).await.map_err(|e| err(e.to_string()))? {
            None => Ok(None),
            Some(bytes) => PipelineSpec::from_json(&bytes).map(Some).map_err(|e| err(format!("{name}: {e}"))),
        }
    }

    /// Every stored spec, in name order. A stored spec this version cannot read is skipped with a
    /// warning rather than hiding the others.
    pub async fn all(&self) -> Result<Vec<PipelineSpec>, BusError> {
        use futures::TryStreamExt as _;
        let err = |message: String| BusError::Kv { bucket: PIPELINES_KV, message };
        let keys = self.kv.keys().await.map_err(|e| err(e.to_string()))?;
        let mut names: Vec<String> = keys.try_collect().await.map_err(|e| err(e.to_string()))?;
        names.sort();
        let mut specs = Vec::with_capacity(names.len());
        for name in names {
            match self.get(&name).await {
                Ok(Some(spec)) => specs.push(spec),
                Ok(None) => {}
                Err(e) => tracing::warn!(pipeline = %name, error = %e, "unreadable pipeline spec skipped"),
            }
        }
        Ok(specs)
    }

    /// Stores `spec` as the current spec of its pipeline.
    pub async fn put(&self, spec: &PipelineSpec) -> Result<(), BusError> {
        self.kv
            .put(spec.name.as_str(), spec.canonical_json().into())
            .await
            .map(drop)
            .map_err(|e| BusError::Kv { bucket: PIPELINES_KV, message: e.to_string() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SPEC: &str = r#"
name: churn
features:
  - {name: tenure, type: numeric, min: 0, max: 100}
  - {name: charges, type: numeric, nullable: true}
  - {name: contract, type: categorical, categories: [monthly, yearly]}
target: {name: churned}
gates:
  - {metric: roc_auc, min: 0.7, max_drop: 0.01}
"#;

    #[test]
    fn parses_with_defaults_and_hashes_canonically() {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        assert_eq!(spec.training.seed, 42);
        assert_eq!(spec.target.positive, "1");
        assert_eq!(spec.monitoring.window, 500);
        let again = PipelineSpec::from_json(&spec.canonical_json()).unwrap();
        assert_eq!(spec, again);
        assert_eq!(spec.hash(), again.hash());
    }

    #[test]
    fn checked_columns_may_have_an_open_domain_and_a_pattern() {
        let spec = PipelineSpec::from_yaml(&format!(
            "{SPEC}columns: [{{name: customer_id, type: categorical, regex: \"C[0-9]{{4}}\", unique: true}}]\n"
        ))
        .unwrap();
        assert!(spec.checked_column("customer_id").is_some() && spec.feature("customer_id").is_none());
        let re = full_match(spec.columns[0].regex.as_deref().unwrap()).unwrap();
        assert!(re.is_match("C0042") && !re.is_match("xC0042") && !re.is_match("C00421"));
        // The spec's hash is unchanged for specs that do not use the new keys.
        let plain = PipelineSpec::from_yaml(SPEC).unwrap();
        let json = String::from_utf8(plain.canonical_json()).unwrap();
        assert!(!json.contains("columns") && !json.contains("regex"), "{json}");
    }

    #[test]
    fn training_windows_select_the_newest_versions_or_the_recent_ones() {
        let day = 86_400_000;
        let history: Vec<(String, i64)> = (0..5).map(|i| (format!("d{i}"), i * day)).collect();
        let ids = |w: Option<TrainingWindow>, now| TrainingWindow::select(w.as_ref(), &history, now);
        assert_eq!(ids(None, 10 * day), ["d4"]);
        assert_eq!(ids(Some(TrainingWindow { versions: Some(2), days: None }), 0), ["d3", "d4"]);
        assert_eq!(ids(Some(TrainingWindow { versions: Some(9), days: None }), 0).len(), 5);
        assert_eq!(ids(Some(TrainingWindow { versions: None, days: Some(1.5) }), 4 * day), ["d3", "d4"]);
        // Nothing recent: the newest version still.
        assert_eq!(ids(Some(TrainingWindow { versions: None, days: Some(1.0) }), 40 * day), ["d4"]);
        assert_eq!(ids(Some(TrainingWindow { versions: Some(1), days: Some(30.0) }), 4 * day), ["d4"]);
        assert!(TrainingWindow::select(None, &[], 0).is_empty());
        let err =
            |w: &str| PipelineSpec::from_yaml(&format!("{SPEC}training: {{window: {w}}}\n")).unwrap_err().to_string();
        assert!(err("{}").contains("needs `versions` or `days`"));
        assert!(err("{versions: 0}").contains("at least 1"));
        assert!(err("{days: -1}").contains("positive"));
    }

    #[test]
    fn errors_name_the_offending_key() {
        let cases = [
            (SPEC.replace("min: 0, max: 100", "min: 5, max: 1"), "features.tenure"),
            (SPEC.replace("roc_auc", "f7"), "`f7` is not a binary_classification metric"),
            (SPEC.replace("name: churned", "name: tenure"), "also declared as a feature"),
            (SPEC.replace("target:", "targte:"), "targte"),
            (SPEC.replace("categories: [monthly, yearly]", ""), "needs `categories`"),
            (SPEC.replace("name: churn\n", "name: Churn!\n"), "pipeline name"),
            (SPEC.replace("max: 100}", "max: 100, mostly: 1.5}"), "features.tenure: `mostly`"),
            (format!("{SPEC}validation: {{min_rows: 10, max_rows: 5}}\n"), "validation.min_rows"),
            (format!("{SPEC}training: {{params: {{depth: 3}}}}\n"), "training.params.depth"),
            (format!("{SPEC}columns: [{{name: id, type: categorical, regex: \"C(\"}}]\n"), "columns.id: `regex`"),
            (
                format!("{SPEC}columns: [{{name: n, type: numeric, regex: x}}]\n"),
                "columns.n: `regex` is for categorical",
            ),
            (format!("{SPEC}columns: [{{name: tenure, type: numeric}}]\n"), "column `tenure` is declared twice"),
            (
                SPEC.replace("categories: [monthly, yearly]", "categories: [monthly, yearly], regex: \"m.*\""),
                "category \"yearly\" does not match `regex`",
            ),
        ];
        for (text, expected) in cases {
            let err = PipelineSpec::from_yaml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

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
        // The defaults leave the canonical form as it was, so older specs keep their hash.
        let plain = String::from_utf8(PipelineSpec::from_yaml(SPEC).unwrap().canonical_json()).unwrap();
        assert!(!plain.contains("reference") && !plain.contains("performance"), "{plain}");
    }

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

    #[test]
    fn triggers_and_searches_are_checked_with_reasons() {
        let with = |training: &str| PipelineSpec::from_yaml(&format!("{SPEC}training: {training}\n"));
        let t = with("{triggers: {debounce_secs: 30, cooldown_secs: 600, schedule: \"0 3 * * *\", on: [new_data]}}")
            .unwrap()
            .training
            .triggers
            .unwrap();
        assert!(t.fires_on(TriggerEvent::NewData) && !t.fires_on(TriggerEvent::Drift));
        assert!(matches!(t.cron(), Some(Ok(_))));
        let defaults = with("{triggers: {schedule: \"*/5 * * * * *\"}}").unwrap().training.triggers.unwrap();
        assert!(defaults.fires_on(TriggerEvent::Degradation) && defaults.debounce_secs == 0.0);
        let err = |training: &str| with(training).unwrap_err().to_string();
        assert!(err("{triggers: {schedule: \"every day\"}}").contains("not a cron expression"));
        assert!(err("{triggers: {debounce_secs: -1}}").contains("debounce_secs"));
        assert!(err("{triggers: {on: [sunrise]}}").contains("sunrise"));
        let s = with("{search: {params: {l2: [0.1, 1, 10]}, folds: 5}}").unwrap().training.search.unwrap();
        let base = BTreeMap::from([("max_iter".to_owned(), 20.0)]);
        let c = s.candidates(&base);
        assert_eq!(c.len(), 3);
        assert_eq!((c[2]["l2"], c[2]["max_iter"]), (10.0, 20.0));
        assert!(err("{search: {params: {l2: []}}}").contains("lists no value"));
        assert!(err("{search: {params: {trees: [10]}}}").contains("`training.search.params.trees` is not a parameter"));
        assert!(err("{search: {params: {max_iter: [2.5]}}}").contains("whole number"));
        assert!(err("{search: {params: {l2: [1]}, folds: 1}}").contains("folds"));
        assert!(
            err("{search: {params: {l2: [1]}, metric: f2}}").contains("`f2` is not a binary_classification metric")
        );
        let big = format!(
            "{{search: {{params: {{l2: [{}], tol: [{}]}}}}}}",
            vec!["1"; 17].join(","),
            vec!["1"; 16].join(",")
        );
        assert!(err(&big).contains("272 candidates"));
    }
}
