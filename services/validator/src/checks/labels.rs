//! The label checks, batch by batch: a classification label is one of the target's two classes, a
//! regression label a finite number. The labels are profiled as the features are.

use mlops_data::{Cell, ColumnView, RecordBatch, text, view};
use mlops_proto as pb;
use mlops_shared::spec::{Classes, TargetSpec, Task};
use mlops_shared::table::parse_number;

use super::anomalies::{AnomalyKind, Findings};
use crate::profile::{CategoricalProfile, NumericProfile};

/// A cell as a finite number (a regression label, a numeric feature), or `None`.
pub(super) fn number(cell: Cell<'_>) -> Option<f64> {
    match cell {
        Cell::Num(v) if v.is_finite() => Some(v),
        Cell::Str(s) => parse_number(s).ok().flatten(),
        _ => None,
    }
}

/// A classification label: whether it is the positive class, `None` when it is neither class.
/// Numbers are matched by value (Parquet labels often are numbers), without formatting each.
pub(super) fn class(matcher: &Classes<'_>, cell: Cell<'_>) -> Option<bool> {
    match cell {
        Cell::Num(v) => matcher.of_number(v),
        Cell::Null => None,
        other => matcher.of(&text(other)),
    }
}

/// The target column's checks and profile, for data that has the column.
pub(super) struct Labels<'s> {
    target: &'s TargetSpec,
    index: usize,
    /// The count of each class (classification).
    classes: CategoricalProfile,
    /// The label values (regression).
    values: NumericProfile,
    /// How a label is matched to a class: as a number when both classes are numbers.
    matcher: Classes<'s>,
}

impl<'s> Labels<'s> {
    /// The checks for `target`, at column `index` of the data.
    pub(super) fn new(target: &'s TargetSpec, index: usize) -> Self {
        Self {
            target,
            index,
            classes: CategoricalProfile::with_domain([&target.positive, &target.negative]),
            values: NumericProfile::default(),
            matcher: target.classes(),
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
            match number(column.get(r)) {
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
            // Parquet labels are often numbers: matched by value, without formatting each.
            let cell = column.get(r);
            let class = class(&self.matcher, cell);
            // Counted under the spec's spelling of the class, so `1` and `1.0` are one category.
            let known = match class {
                Some(true) => self.classes.add(&t.positive),
                Some(false) => self.classes.add(&t.negative),
                None if matches!(cell, Cell::Null) || text(cell).trim().is_empty() => {
                    self.classes.add_null();
                    false
                }
                None => {
                    self.classes.add(&text(cell));
                    false
                }
            };
            if !known {
                found.add(&t.name, AnomalyKind::UnknownLabel, Some(offset + r), true, || {
                    let numeric = if self.matcher.numeric() { " (compared as numbers)" } else { "" };
                    format!("labels must be {:?} or {:?}{numeric}, found {:?}", t.positive, t.negative, text(cell))
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
