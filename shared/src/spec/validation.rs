//! The `validation` section: checks of a dataset as a whole (row counts, duplicates, label
//! balance), and the environment a dataset is validated for.

use serde::{Deserialize, Serialize};

use super::{Severity, SpecError, Task, bad};

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

impl ValidationSpec {
    /// Checks what the target's `task` rules out: a label share needs classes.
    pub(super) fn check_task(&self, task: Task) -> Result<(), SpecError> {
        if task == Task::Regression && self.min_label_share.is_some() {
            return bad("`validation.min_label_share` is for classification; the target is numeric".into());
        }
        Ok(())
    }

    /// Checks the row bounds and the shares.
    pub(super) fn check(&self) -> Result<(), SpecError> {
        if let (Some(lo), Some(hi)) = (self.min_rows, self.max_rows)
            && lo > hi
        {
            return bad(format!("`validation.min_rows` ({lo}) is greater than `validation.max_rows` ({hi})"));
        }
        for (key, share) in
            [("max_duplicate_share", self.max_duplicate_share), ("min_label_share", self.min_label_share)]
        {
            if share.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                return bad(format!("`validation.{key}` must be in [0, 1]"));
            }
        }
        Ok(())
    }
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
