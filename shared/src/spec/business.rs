//! What a model's decisions are worth: `business.value`, the value of each outcome of a binary
//! decision (a true positive, a false positive, a missed positive, a true negative). The trainer
//! picks the decision threshold that maximises the mean value per decision on the holdout, the
//! served label uses it, and the evaluator gates on `business_value` like on any other metric.

use serde::{Deserialize, Serialize};

use super::{FeatureKind, FeatureSpec, SpecError, Task, bad};
use crate::table::{Column, Frame};

/// The metric the value matrix defines: the mean value of one decision.
pub const BUSINESS_VALUE: &str = "business_value";

/// The `business` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessSpec {
    pub value: ValueMatrix,
    /// A numeric feature holding each row's amount (an order's value, a customer's monthly
    /// charges): a decision on the row is worth the matrix's value times it, and a missing amount
    /// counts as 0. Absent, every row counts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// The value of each outcome of one decision, in the team's unit (money, say).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatrix {
    /// A positive decision on a positive row.
    pub tp: f64,
    /// A positive decision on a negative row.
    pub fp: f64,
    /// A negative decision on a positive row.
    #[serde(rename = "fn")]
    pub fn_: f64,
    /// A negative decision on a negative row.
    pub tn: f64,
}

impl ValueMatrix {
    /// The value of deciding `positive` on a row whose label is `actual`.
    pub fn of(&self, positive: bool, actual: bool) -> f64 {
        match (positive, actual) {
            (true, true) => self.tp,
            (true, false) => self.fp,
            (false, true) => self.fn_,
            (false, false) => self.tn,
        }
    }
}

impl BusinessSpec {
    /// Each row's amount in `frame` (read under a spec whose features are `features`): the
    /// `amount` feature's values, a missing one as 0; `None` without an amount.
    pub fn amounts(&self, features: &[FeatureSpec], frame: &Frame) -> Option<Vec<f64>> {
        let name = self.amount.as_deref()?;
        let at = features.iter().position(|f| f.name == name)?;
        match frame.columns.get(at)? {
            Column::Numeric(values) => {
                Some(values.iter().map(|v| v.filter(|v| v.is_finite()).unwrap_or(0.0)).collect())
            }
            Column::Categorical(_) => None,
        }
    }

    /// Checks that `amount`, when given, names a numeric feature.
    pub(super) fn check_amount(&self, features: &[FeatureSpec]) -> Result<(), SpecError> {
        let Some(name) = self.amount.as_deref() else { return Ok(()) };
        match features.iter().find(|f| f.name == name) {
            Some(f) if f.kind == FeatureKind::Numeric => Ok(()),
            Some(_) => {
                bad(format!("`business.amount`: `{name}` is categorical; each row's amount is a numeric feature"))
            }
            None => bad(format!(
                "`business.amount` names `{name}`, which is not a feature; each row's amount is a numeric feature (features: {})",
                features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Checks the matrix: finite values, for a classifier, where the decision changes the value.
    pub(super) fn check(&self, task: Task) -> Result<(), SpecError> {
        if task != Task::BinaryClassification {
            return bad(format!(
                "`business.value` prices decisions: it needs a binary_classification target, not {}",
                task.as_str()
            ));
        }
        let m = &self.value;
        if [m.tp, m.fp, m.fn_, m.tn].iter().any(|v| !v.is_finite()) {
            return bad("`business.value`: tp, fp, fn and tn must be finite numbers".into());
        }
        if m.tp == m.fn_ && m.fp == m.tn {
            return bad(format!(
                "`business.value` cannot be maximised: a positive decision is worth what a negative one is \
                 (tp = fn = {}, fp = tn = {}), so no threshold changes the value",
                m.tp, m.fp
            ));
        }
        Ok(())
    }
}

/// Whether higher values of `metric` are better, for `task` with or without a value matrix;
/// `None` names why the metric is unknown.
pub(super) fn direction(task: Task, metric: &str, business: Option<&BusinessSpec>) -> Result<bool, String> {
    if metric == BUSINESS_VALUE {
        return match business {
            Some(_) => Ok(true),
            None => Err(format!("`{BUSINESS_VALUE}` needs `business.value` (what each decision is worth)")),
        };
    }
    task.higher_is_better(metric).ok_or_else(|| {
        let extra = if business.is_some() { format!(", {BUSINESS_VALUE}") } else { String::new() };
        format!("`{metric}` is not a {} metric (known: {}{extra})", task.as_str(), task.metric_names())
    })
}
