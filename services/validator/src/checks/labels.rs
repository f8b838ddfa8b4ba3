//! The label checks, batch by batch: a classification label is one of the target's two classes, a
//! regression label a finite number. The labels are profiled as the features are.

use std::borrow::Cow;

use mlops_data::{Cell, ColumnView, RecordBatch, text, view};
use mlops_proto as pb;
use mlops_shared::spec::{TargetSpec, Task};
use mlops_shared::table::parse_number;

use super::anomalies::{AnomalyKind, Findings};
use crate::profile::{CategoricalProfile, NumericProfile};

/// The target column's checks and profile, for data that has the column.
pub(super) struct Labels<'s> {
    target: &'s TargetSpec,
    index: usize,
    /// The count of each class (classification).
    classes: CategoricalProfile,
    /// The label values (regression).
    values: NumericProfile,
    /// The positive and negative classes as numbers, where they are numbers.
    numbers: (Option<f64>, Option<f64>),
}

impl<'s> Labels<'s> {
    /// The checks for `target`, at column `index` of the data.
    pub(super) fn new(target: &'s TargetSpec, index: usize) -> Self {
        let number = |s: &str| parse_number(s).ok().flatten();
        Self {
            target,
            index,
            classes: CategoricalProfile::with_domain([&target.positive, &target.negative]),
            values: NumericProfile::default(),
            numbers: (number(&target.positive), number(&target.negative)),
        }
    }

    /// Checks a batch's labels; `offset` is the number of rows before it.
    pub(super) fn check_batch(&mut self, found: &mut Findings, batch: &RecordBatch, offset: usize) {
        let column = view(batch.column(self.index));
        match self.target.task {
            Task::Regression => self.check_numbers(found, &column, batch.num_rows(), offset),
            Task::BinaryClassification => self.check_classes(found, &column, batch.num_rows(), offset),
        }
    }

    fn check_numbers(&mut self, found: &mut Findings, column: &ColumnView<'_>, rows: usize, offset: usize) {
        let mut values = Vec::with_capacity(rows);
        for r in 0..rows {
            let value = match column.get(r) {
                Cell::Num(v) if v.is_finite() => Some(v),
                Cell::Str(s) => parse_number(s).ok().flatten(),
                _ => None,
            };
            match value {
                Some(v) => values.push(v),
                None => {
                    self.values.add_null();
                    let cell = text(column.get(r));
                    found.add(&self.target.name, AnomalyKind::UnknownLabel, Some(offset + r), true, || {
                        format!("labels must be finite numbers (the task is regression), found {cell:?}")
                    });
                }
            }
        }
        self.values.add_all(&values);
    }

    fn check_classes(&mut self, found: &mut Findings, column: &ColumnView<'_>, rows: usize, offset: usize) {
        let t = self.target;
        for r in 0..rows {
            // Parquet labels are often integers: matched as numbers, without formatting each.
            let text = match column.get(r) {
                Cell::Num(v) if self.numbers.0 == Some(v) => Cow::Borrowed(t.positive.as_str()),
                Cell::Num(v) if self.numbers.1 == Some(v) => Cow::Borrowed(t.negative.as_str()),
                other => text(other),
            };
            let known = if text.is_empty() {
                self.classes.add_null();
                false
            } else {
                self.classes.add(&text)
            };
            if !known {
                found.add(&t.name, AnomalyKind::UnknownLabel, Some(offset + r), true, || {
                    format!("labels must be {:?} or {:?}, found {text:?}", t.positive, t.negative)
                });
            }
        }
    }

    /// How many labels so far are the positive class.
    pub(super) fn positives(&self) -> u64 {
        self.classes.count_of(&self.target.positive)
    }

    /// The label column's profile.
    pub(super) fn finish(self) -> pb::ColumnProfile {
        match self.target.task {
            Task::BinaryClassification => self.classes.finish(&self.target.name),
            Task::Regression => self.values.finish(&self.target.name),
        }
    }
}
