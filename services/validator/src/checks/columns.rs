//! The per-batch column checks: each declared column's values parse as its type and are finite,
//! nulls only where allowed, numbers within bounds, categories within the domain and matching the
//! pattern, values unique where the spec asks. Each column is checked and profiled on its own, so
//! the columns of a batch split over two threads.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::BuildHasher as _;

use foldhash::fast::FixedState;
use mlops_data::{Array as _, Cell, ColumnView, RecordBatch, text, view};
use mlops_proto as pb;
use mlops_shared::pii::Detector;
use mlops_shared::spec::{FeatureKind, FeatureSpec, full_match};
use mlops_shared::table::{parse_number, trim_cell};

use super::anomalies::{AnomalyKind, Findings};
use super::drift::Histogram;
use super::personal::Scan;
use crate::profile::{CategoricalProfile, NumericProfile};

/// Runs every column's checks and personal-data scans on one batch, each split over two threads;
/// `offset` is the number of rows before the batch. Returns false if one panicked on the other
/// thread.
pub(super) fn run_all(
    checks: &mut [ColumnCheck<'_>],
    scans: &mut [Scan<'_>],
    detector: &Detector,
    batch: &RecordBatch,
    offset: usize,
) -> bool {
    std::thread::scope(|scope| {
        let (left, right) = checks.split_at_mut(checks.len() / 2);
        let (left_scans, right_scans) = scans.split_at_mut(scans.len() / 2);
        let worker = scope.spawn(move || {
            left.iter_mut().for_each(|c| c.run(batch, offset));
            left_scans.iter_mut().for_each(|s| s.run(detector, batch, offset));
        });
        right.iter_mut().for_each(|c| c.run(batch, offset));
        right_scans.iter_mut().for_each(|s| s.run(detector, batch, offset));
        worker.join().is_ok()
    })
}

/// One feature's checks and statistics, run column by column (and so on any thread).
pub(super) struct ColumnCheck<'s> {
    pub(super) f: &'s FeatureSpec,
    /// The column's index in the data; `None` when it is missing.
    index: Option<usize>,
    found: Findings,
    profile: Profile,
    /// Hashes of the values seen, for `unique`: 8 bytes a row rather than the text (two distinct
    /// values collide with odds of 2^-64 a pair).
    distinct: Option<HashSet<u64, FixedState>>,
    /// This version's counts in the previous version's histogram bins, for numeric drift.
    drift: Option<Histogram<'s>>,
    /// The current batch's valid numbers (a reused buffer).
    values: Vec<f64>,
    /// The spec's `regex`, compiled (checked when the spec was applied).
    pattern: Option<Result<regex::Regex, regex::Error>>,
}

enum Profile {
    Numeric(Box<NumericProfile>),
    Categorical(CategoricalProfile),
}

impl<'s> ColumnCheck<'s> {
    /// The checks for `f`, at column `index` of the data if present; `previous` is the previous
    /// accepted version's profile, for drift.
    pub(super) fn new(f: &'s FeatureSpec, index: Option<usize>, previous: Option<&'s pb::DatasetProfile>) -> Self {
        Self {
            f,
            index,
            found: Findings::default(),
            profile: match f.kind {
                FeatureKind::Numeric => Profile::Numeric(Box::default()),
                FeatureKind::Categorical => Profile::Categorical(CategoricalProfile::with_domain(&f.categories)),
            },
            // Uniqueness and numeric drift need state beyond the profile.
            distinct: (f.unique && index.is_some()).then(HashSet::default),
            drift: Histogram::for_feature(f, previous),
            values: Vec::new(),
            pattern: f.regex.as_deref().map(full_match),
        }
    }

    /// Checks and profiles the column's cells in one batch.
    fn run(&mut self, batch: &RecordBatch, offset: usize) {
        let Some(i) = self.index else { return };
        let column = view(batch.column(i));
        if self.add_plain_numbers(&column) {
            return;
        }
        self.values.clear();
        for r in 0..batch.num_rows() {
            let cell = column.get(r);
            self.check_unique(cell, offset + r);
            match (check_cell(&mut self.found, self.f, cell, offset + r), &mut self.profile) {
                (Valid::Null, Profile::Numeric(p)) => p.add_null(),
                (Valid::Null, Profile::Categorical(p)) => p.add_null(),
                (Valid::Num(v), Profile::Numeric(_)) => self.values.push(v),
                (Valid::Cat(c), Profile::Categorical(p)) => {
                    let known = p.add(&c);
                    self.check_category(&c, known, offset + r);
                }
                _ => {}
            }
        }
        // The batch's valid numbers, counted together.
        if let Profile::Numeric(p) = &mut self.profile {
            p.add_all(&self.values);
            if let Some(h) = &mut self.drift {
                h.count(&self.values);
            }
        }
    }

    /// The common case, a whole batch of plain numbers within bounds: checked in one vectorisable
    /// pass and counted. Returns false, having counted nothing, when the cells need checking one by
    /// one.
    fn add_plain_numbers(&mut self, column: &ColumnView<'_>) -> bool {
        let (ColumnView::F64(a), Profile::Numeric(p), None) = (column, &mut self.profile, &self.distinct) else {
            return false;
        };
        let (lo, hi) = (self.f.min.unwrap_or(f64::NEG_INFINITY), self.f.max.unwrap_or(f64::INFINITY));
        let values = a.values();
        if a.null_count() != 0 || !values.iter().fold(true, |ok, v| ok & (*v >= lo) & (*v <= hi) & v.is_finite()) {
            return false;
        }
        p.add_all(values);
        if let Some(h) = &mut self.drift {
            h.count(values);
        }
        true
    }

    /// Reports a value seen before, in a `unique` column.
    fn check_unique(&mut self, cell: Cell<'_>, row: usize) {
        if let Some(seen) = &mut self.distinct
            && !matches!(cell, Cell::Null)
            && !seen.insert(FixedState::default().hash_one(text(cell)))
        {
            self.found.add(&self.f.name, AnomalyKind::NotUnique, Some(row), true, || {
                "values repeat in a unique column".into()
            });
        }
    }

    /// Reports a category outside the domain, or one that does not match the pattern.
    fn check_category(&mut self, c: &str, known: bool, row: usize) {
        let f = self.f;
        // An empty domain is an open one (a checked column that is not a feature).
        if !known && !f.categories.is_empty() {
            self.found.add(&f.name, AnomalyKind::UnknownCategory, Some(row), true, || {
                format!("{c:?} is not one of {}", f.categories.join(", "))
            });
        }
        match &self.pattern {
            Some(Ok(re)) if !re.is_match(c) => {
                self.found.add(&f.name, AnomalyKind::PatternMismatch, Some(row), true, || {
                    format!("{c:?} does not match {:?}", f.regex.as_deref().unwrap_or_default())
                });
            }
            Some(Err(e)) => self.found.add(&f.name, AnomalyKind::SpecError, None, true, || format!("`regex`: {e}")),
            _ => {}
        }
    }

    /// The column's findings, its profile (when the column is present) and its drift histogram.
    pub(super) fn finish(self) -> (Findings, Option<pb::ColumnProfile>, Option<Histogram<'s>>) {
        let profile = self.index.map(|_| match self.profile {
            Profile::Numeric(p) => p.finish(&self.f.name),
            Profile::Categorical(p) => p.finish(&self.f.name),
        });
        (self.found, profile, self.drift)
    }
}

/// A cell after its checks: a valid value for the profile, empty, or invalid (already reported).
enum Valid<'a> {
    Null,
    Num(f64),
    Cat(Cow<'a, str>),
    Invalid,
}

fn check_cell<'a>(found: &mut Findings, f: &FeatureSpec, value: Cell<'a>, row: usize) -> Valid<'a> {
    let value = match value {
        Cell::Str(s) => match trim_cell(s) {
            "" => Cell::Null,
            s => Cell::Str(s),
        },
        other => other,
    };
    if value == Cell::Null {
        if !f.nullable {
            found.add(&f.name, AnomalyKind::NullValues, Some(row), true, || {
                "empty values in a column that is not nullable".into()
            });
        }
        return Valid::Null;
    }
    match f.kind {
        FeatureKind::Numeric => check_number(found, f, value, row),
        FeatureKind::Categorical => {
            if let Cell::Other(t) = value {
                found.add(&f.name, AnomalyKind::TypeMismatch, Some(row), true, || {
                    format!("a {t} value is not a category")
                });
                return Valid::Invalid;
            }
            // Whether it is in the domain is answered as the profile counts it.
            Valid::Cat(text(value))
        }
    }
}

/// A numeric column's non-empty cell: a finite number, within bounds.
fn check_number<'a>(found: &mut Findings, f: &FeatureSpec, value: Cell<'a>, row: usize) -> Valid<'a> {
    let v = match value {
        Cell::Num(v) => v,
        Cell::Str(s) => match parse_number(s) {
            Ok(Some(v)) => v,
            Err(_) if s.parse::<f64>().is_ok() => {
                found.add(&f.name, AnomalyKind::NotFinite, Some(row), true, || format!("non-finite value {s:?}"));
                return Valid::Invalid;
            }
            _ => {
                found.add(&f.name, AnomalyKind::TypeMismatch, Some(row), true, || format!("{s:?} is not a number"));
                return Valid::Invalid;
            }
        },
        Cell::Bool(_) | Cell::Other(_) | Cell::Null => {
            found.add(&f.name, AnomalyKind::TypeMismatch, Some(row), true, || format!("{value:?} is not a number"));
            return Valid::Invalid;
        }
    };
    if !v.is_finite() {
        found.add(&f.name, AnomalyKind::NotFinite, Some(row), true, || format!("non-finite value {v}"));
        return Valid::Invalid;
    }
    if f.min.is_some_and(|lo| v < lo) || f.max.is_some_and(|hi| v > hi) {
        found.add(&f.name, AnomalyKind::OutOfRange, Some(row), true, || {
            format!("{v} is outside [{}, {}]", fmt_bound(f.min), fmt_bound(f.max))
        });
    }
    Valid::Num(v)
}

fn fmt_bound(b: Option<f64>) -> String {
    b.map_or_else(|| "-".into(), |v| v.to_string())
}
