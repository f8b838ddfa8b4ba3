//! The `target` section: the label column, the task it makes of the pipeline (classification or
//! regression) and the metrics each task is measured by.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{SpecError, bad};

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

    /// Checks the label column against the `declared` feature and column names.
    pub(super) fn check(&self, declared: &BTreeSet<&str>) -> Result<(), SpecError> {
        if declared.contains(self.name.as_str()) {
            return bad(format!("target `{}` is also declared as a feature", self.name));
        }
        if self.name.is_empty() {
            return bad("`target.name` is empty".into());
        }
        if self.task == Task::BinaryClassification && self.positive == self.negative {
            return bad("`target.positive` and `target.negative` must differ".into());
        }
        Ok(())
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

    pub(super) fn metric_names(self) -> String {
        self.metrics().iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
    }
}
