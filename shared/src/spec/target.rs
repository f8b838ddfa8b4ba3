//! The `target` section: the label column, the task it makes of the pipeline (classification or
//! regression) and the metrics each task is measured by.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{SpecError, bad};
use crate::table::parse_number;

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
        match self.task {
            Task::BinaryClassification => self.classes().of(label).map(|positive| f64::from(u8::from(positive))),
            Task::Regression => parse_number(label).ok().flatten(),
        }
    }

    /// How labels are matched to the two classes: as numbers when both classes are numbers, as
    /// text otherwise.
    pub fn classes(&self) -> Classes<'_> {
        let number = |s: &str| parse_number(s).ok().flatten();
        let numbers = number(&self.positive).zip(number(&self.negative));
        Classes { positive: self.positive.trim(), negative: self.negative.trim(), numbers }
    }

    /// Checks the label column against the `declared` feature and column names.
    pub(super) fn check(&self, declared: &BTreeSet<&str>) -> Result<(), SpecError> {
        if declared.contains(self.name.as_str()) {
            return bad(format!("target `{}` is also declared as a feature", self.name));
        }
        if self.name.is_empty() {
            return bad("`target.name` is empty".into());
        }
        let numbers = self.classes().numbers;
        if self.task == Task::BinaryClassification
            && (self.positive.trim() == self.negative.trim() || numbers.is_some_and(|(p, n)| p == n))
        {
            return bad("`target.positive` and `target.negative` must differ".into());
        }
        Ok(())
    }
}

/// The two classes of a classification target, ready to match labels against. When both classes
/// are numbers (`1`/`0`, `1.0`/`0.0`) a label matches by value, so `1`, `1.0` and `1.00` are one
/// class; otherwise it matches by its text, surrounding whitespace aside.
#[derive(Debug, Clone, Copy)]
pub struct Classes<'t> {
    positive: &'t str,
    negative: &'t str,
    /// The positive and negative classes' values, when both are numbers.
    numbers: Option<(f64, f64)>,
}

impl Classes<'_> {
    /// `Some(true)` for the positive class, `Some(false)` for the negative one, `None` for a
    /// label that is neither.
    pub fn of(&self, label: &str) -> Option<bool> {
        if self.numbers.is_some() {
            return parse_number(label).ok().flatten().and_then(|v| self.of_number(v));
        }
        let label = label.trim();
        if label == self.positive {
            Some(true)
        } else if label == self.negative {
            Some(false)
        } else {
            None
        }
    }

    /// The class of a label stored as a number (a Parquet or JSON column): matched by value
    /// against each class that is a number, even when the other is text.
    pub fn of_number(&self, value: f64) -> Option<bool> {
        if let Some((positive, negative)) = self.numbers {
            return if value == positive {
                Some(true)
            } else if value == negative {
                Some(false)
            } else {
                None
            };
        }
        let is = |class: &str| parse_number(class).ok().flatten() == Some(value);
        if is(self.positive) {
            Some(true)
        } else if is(self.negative) {
            Some(false)
        } else {
            None
        }
    }

    /// Whether labels are matched by value.
    pub fn numeric(&self) -> bool {
        self.numbers.is_some()
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
            super::BUSINESS_VALUE => (f64::NEG_INFINITY, f64::INFINITY),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(positive: &str, negative: &str) -> TargetSpec {
        TargetSpec {
            name: "y".into(),
            task: Task::BinaryClassification,
            positive: positive.into(),
            negative: negative.into(),
        }
    }

    #[test]
    fn numeric_classes_compare_as_numbers() {
        let t = target("1.0", "0.0");
        for (label, class) in [("1", Some(1.0)), ("1.0", Some(1.0)), (" 1.00 ", Some(1.0)), ("0", Some(0.0))] {
            assert_eq!(t.read_label(label), class, "{label:?}");
        }
        // Numeric, but not a class; and not a number at all.
        assert_eq!(t.read_label("2.0"), None);
        assert_eq!(t.read_label("yes"), None);
        assert_eq!(t.classes().of_number(1.0), Some(true));
        assert_eq!(t.classes().of_number(0.5), None);
    }

    #[test]
    fn text_classes_compare_as_text() {
        let t = target("True", "False");
        assert_eq!(t.read_label("True"), Some(1.0));
        assert_eq!(t.read_label(" False"), Some(0.0));
        assert_eq!(t.read_label("true"), None, "text classes are matched exactly");
        // A class written as a number among text classes still matches by its text.
        let mixed = target("1.0", "no");
        assert_eq!(mixed.classes().of_number(1.0), Some(true), "a stored number matches by value");
        assert_eq!(mixed.read_label("1"), None, "text matches as text");
    }

    #[test]
    fn classes_that_are_one_number_are_refused() {
        let err = target("1", "1.0").check(&BTreeSet::new()).unwrap_err();
        assert!(err.to_string().contains("must differ"), "{err}");
    }
}
