//! The `validation` section: checks of a dataset as a whole (row counts, duplicates, label
//! balance), and the environment a dataset is validated for.

use std::collections::BTreeMap;

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
    /// How personal data is recognised ([`crate::pii`]).
    #[serde(default, skip_serializing_if = "PersonalDataSpec::is_default")]
    pub personal_data: PersonalDataSpec,
}

/// How personal data is recognised in every column.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalDataSpec {
    /// The share of a column's non-empty values that must be personal data of one kind for the
    /// column to count as holding it ([`DEFAULT_MIN_SHARE`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_share: Option<f64>,
    /// National id patterns by name (`us_ssn: '\d{3}-\d{2}-\d{4}'`), each matching a whole value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub national_ids: BTreeMap<String, String>,
}

/// The default `min_share`: above the one in ten random numbers that pass a Luhn check, so a
/// column of ordinary 16-digit ids is not taken for card numbers, and far below the share of a
/// column that does hold personal data.
pub const DEFAULT_MIN_SHARE: f64 = 0.2;

impl PersonalDataSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The share that makes a column one holding personal data.
    pub fn min_share(&self) -> f64 {
        self.min_share.unwrap_or(DEFAULT_MIN_SHARE)
    }

    /// The detector of the built-in kinds and these national ids.
    pub fn detector(&self) -> Result<crate::pii::Detector, SpecError> {
        crate::pii::Detector::new(&self.national_ids)
            .map_err(|e| SpecError::Invalid(format!("validation.personal_data.national_ids: {e}")))
    }
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
        if self.personal_data.min_share.is_some_and(|x| !(x > 0.0 && x <= 1.0)) {
            return bad("`validation.personal_data.min_share` must be in (0, 1]".into());
        }
        if let Some(name) = self
            .personal_data
            .national_ids
            .keys()
            .find(|n| n.is_empty() || !n.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'))
        {
            return bad(format!("`validation.personal_data.national_ids`: name {name:?} is not snake_case"));
        }
        self.personal_data.detector()?;
        Ok(())
    }
}

/// How a dataset version came: sent by a person or system (`upload` over gRPC, `path` or `object`
/// by `data.arrived`), or written by the monitor from labelled production predictions
/// (`feedback`). Training windows may select by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    Upload,
    Path,
    Object,
    Feedback,
}

impl Origin {
    /// Every origin, in the order reports list them.
    pub const ALL: [Self; 4] = [Self::Upload, Self::Path, Self::Object, Self::Feedback];

    /// Parses the wire form; empty (events from before origins) means `upload`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" => Ok(Self::Upload),
            other => Self::ALL
                .into_iter()
                .find(|o| o.as_str() == other)
                .ok_or_else(|| format!("origin {other:?} is not one of upload, path, object, feedback")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Path => "path",
            Self::Object => "object",
            Self::Feedback => "feedback",
        }
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
    /// A feature view's batch: keys, event times and features, no target.
    Features,
}

impl Environment {
    /// Parses the wire form; empty means training.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "training" => Ok(Self::Training),
            "serving" => Ok(Self::Serving),
            "features" => Ok(Self::Features),
            other => Err(format!("environment {other:?} is not `training`, `serving` or `features`")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Training => "training",
            Self::Serving => "serving",
            Self::Features => "features",
        }
    }
}
