//! What validation reports: the closed set of anomaly kinds, and the findings that collect them
//! column by column, counting rows and keeping a few example row numbers.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use mlops_proto as pb;
use mlops_shared::spec::{PipelineSpec, Severity};

/// What stands in a report or a profile for a value that is personal data.
pub(super) const WITHHELD: &str = "(withheld: personal data)";

/// How many example row numbers an anomaly keeps.
pub(super) const EXAMPLES: usize = 5;

/// The kind of an anomaly. [`AnomalyKind::as_str`] is what the protobuf `Anomaly.kind` field and
/// the reports carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// A declared column, or the target of training data, is absent from the data.
    MissingColumn,
    /// A column the spec does not declare (a warning: it is ignored).
    ExtraColumn,
    /// A value that is not of the column's type.
    TypeMismatch,
    /// A number that is infinite or NaN.
    NotFinite,
    /// An empty value in a column that is not nullable.
    NullValues,
    /// A number outside the column's `min` and `max`.
    OutOfRange,
    /// A category outside the column's declared domain.
    UnknownCategory,
    /// A value that does not match the column's `regex`.
    PatternMismatch,
    /// A value seen before in a `unique` column.
    NotUnique,
    /// A label that is not one of the two classes, or not a finite number for regression.
    UnknownLabel,
    /// Fewer rows than `min_rows`, or more than `max_rows`.
    RowCount,
    /// More rows repeating an earlier row than `max_duplicate_share` allows.
    DuplicateRows,
    /// The rarer class under `min_label_share`.
    LabelBalance,
    /// A feature moved further from the previous accepted version than its spec allows.
    Drift,
    /// The data could not be read.
    ParseError,
    /// The data has a header but no rows.
    EmptyDataset,
    /// A check failed unexpectedly.
    InternalError,
    /// The spec itself is unusable for a check (a `regex` that does not compile).
    SpecError,
    /// A column holds personal data its spec does not allow.
    PersonalData,
    /// A feature alone predicts the label less than its `min_power`.
    LowPower,
}

impl AnomalyKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 20] = [
        Self::MissingColumn,
        Self::ExtraColumn,
        Self::TypeMismatch,
        Self::NotFinite,
        Self::NullValues,
        Self::OutOfRange,
        Self::UnknownCategory,
        Self::PatternMismatch,
        Self::NotUnique,
        Self::UnknownLabel,
        Self::RowCount,
        Self::DuplicateRows,
        Self::LabelBalance,
        Self::Drift,
        Self::ParseError,
        Self::EmptyDataset,
        Self::InternalError,
        Self::SpecError,
        Self::PersonalData,
        Self::LowPower,
    ];

    /// The snake_case name events and reports carry.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingColumn => "missing_column",
            Self::ExtraColumn => "extra_column",
            Self::TypeMismatch => "type_mismatch",
            Self::NotFinite => "not_finite",
            Self::NullValues => "null_values",
            Self::OutOfRange => "out_of_range",
            Self::UnknownCategory => "unknown_category",
            Self::PatternMismatch => "pattern_mismatch",
            Self::NotUnique => "not_unique",
            Self::UnknownLabel => "unknown_label",
            Self::RowCount => "row_count",
            Self::DuplicateRows => "duplicate_rows",
            Self::LabelBalance => "label_balance",
            Self::Drift => "drift",
            Self::ParseError => "parse_error",
            Self::EmptyDataset => "empty_dataset",
            Self::InternalError => "internal_error",
            Self::SpecError => "spec_error",
            Self::PersonalData => "personal_data",
            Self::LowPower => "low_power",
        }
    }

    /// Whether the kind is about single values, and so tolerated by a feature's `mostly`.
    const fn is_value_check(self) -> bool {
        matches!(
            self,
            Self::NullValues
                | Self::TypeMismatch
                | Self::NotFinite
                | Self::OutOfRange
                | Self::UnknownCategory
                | Self::PatternMismatch
                | Self::NotUnique
        )
    }
}

/// `message` with each `"…"` segment whose content `is_personal` replaced by [`WITHHELD`]. A
/// backslash escapes the next character inside a segment.
fn withhold_quoted(message: &str, is_personal: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..];
        let mut escaped = false;
        let close = body.char_indices().find(|&(_, c)| {
            let end = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            end
        });
        let Some((close, _)) = close else {
            out.push_str(body);
            return out;
        };
        let value = &body[..close];
        out.push_str(if is_personal(value) { WITHHELD } else { value });
        out.push('"');
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    out
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Ordered by name, not by declaration: a column's anomalies are reported in this order, which must
// not change when a variant is added or moved.
impl Ord for AnomalyKind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for AnomalyKind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Collects anomalies per column (`""` for the dataset as a whole), one per kind, counting rows and
/// keeping the first few row numbers.
#[derive(Default)]
pub(super) struct Findings {
    by_column: BTreeMap<String, BTreeMap<AnomalyKind, pb::Anomaly>>,
}

impl Findings {
    /// Counts one finding. The first of a kind on a column sets its message and whether it blocks.
    pub(super) fn add(
        &mut self,
        column: &str,
        kind: AnomalyKind,
        row: Option<usize>,
        blocking: bool,
        message: impl FnOnce() -> String,
    ) {
        // Looked up before inserting: a column with a million bad cells allocates its name once.
        if !self.by_column.contains_key(column) {
            self.by_column.insert(column.to_owned(), BTreeMap::new());
        }
        let kinds = self.by_column.get_mut(column).expect("inserted above");
        let entry = kinds.entry(kind).or_insert_with(|| pb::Anomaly {
            kind: kind.as_str().into(),
            message: message(),
            count: 0,
            example_rows: vec![],
            blocking,
        });
        entry.count += 1;
        if let Some(row) = row
            && entry.example_rows.len() < EXAMPLES
        {
            entry.example_rows.push(row as u64 + 1);
        }
    }

    /// Records a finding counted elsewhere, replacing any of its kind on the column.
    pub(super) fn report(&mut self, column: &str, kind: AnomalyKind, anomaly: pb::Anomaly) {
        self.by_column.entry(column.to_owned()).or_default().insert(kind, anomaly);
    }

    /// Replaces the messages of `column`'s value checks, which quote a value, by ones that do not:
    /// for a column that holds personal data.
    pub(super) fn withhold_values(&mut self, column: &str) {
        for (kind, a) in self.by_column.get_mut(column).into_iter().flatten() {
            if kind.is_value_check() || *kind == AnomalyKind::UnknownLabel {
                a.message = format!("{kind} in {} rows (values withheld: the column holds personal data)", a.count);
            }
        }
    }

    /// Withholds, in every message, each quoted value (`"…"`, as messages quote values) that is
    /// itself personal data, whatever its column: a column under `min_share` does not hold
    /// personal data as a whole, but its stray e-mail address must not reach a report either.
    pub(super) fn withhold_personal_values(&mut self, is_personal: impl Fn(&str) -> bool) {
        for a in self.by_column.values_mut().flat_map(BTreeMap::values_mut) {
            a.message = withhold_quoted(&a.message, &is_personal);
        }
    }

    /// Takes over the columns of `other` (a column check's findings, on its own column alone); a
    /// column both hold keeps `other`'s.
    pub(super) fn merge(&mut self, other: Findings) {
        self.by_column.extend(other.by_column);
    }

    /// Downgrades to warnings what a feature's `severity: warn` or `mostly` tolerates.
    pub(super) fn apply_tolerances(&mut self, spec: &PipelineSpec, rows: u64) {
        for f in spec.features.iter().chain(&spec.columns) {
            let Some(kinds) = self.by_column.get_mut(&f.name) else { continue };
            for (kind, a) in kinds.iter_mut() {
                // Personal data is a matter of law, not of data quality: no tolerance downgrades it.
                if *kind == AnomalyKind::PersonalData {
                    continue;
                }
                if f.severity == Severity::Warn && *kind != AnomalyKind::MissingColumn {
                    a.blocking = false;
                } else if let Some(mostly) = f.mostly
                    && kind.is_value_check()
                    && rows > 0
                {
                    let passing = 1.0 - a.count as f64 / rows as f64;
                    if passing >= mostly {
                        a.blocking = false;
                        a.message =
                            format!("{} ({:.2}% of rows pass, within mostly {mostly})", a.message, passing * 100.0);
                    }
                }
            }
        }
    }

    /// Whether any finding so far blocks the dataset.
    pub(super) fn blocks(&self) -> bool {
        self.by_column.values().any(|kinds| kinds.values().any(|a| a.blocking))
    }

    /// The column reports, by column name, each column's anomalies by kind.
    pub(super) fn into_columns(self) -> Vec<pb::ColumnReport> {
        self.by_column
            .into_iter()
            .map(|(column, kinds)| pb::ColumnReport { column, anomalies: kinds.into_values().collect() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn quoted_personal_values_are_withheld_and_the_rest_kept() {
        let personal = |v: &str| v.contains('@');
        let m = r#"unknown category "ann@example.com" (known: "a", "b"), then "x \"q\" y", and "open"#;
        assert_eq!(
            withhold_quoted(m, personal),
            r#"unknown category "(withheld: personal data)" (known: "a", "b"), then "x \"q\" y", and "open"#
        );
        assert_eq!(withhold_quoted("no quotes", personal), "no quotes");
    }

    #[test]
    fn each_kind_is_its_documented_snake_case_name_and_all_are_distinct() {
        let documented = [
            (AnomalyKind::MissingColumn, "missing_column"),
            (AnomalyKind::ExtraColumn, "extra_column"),
            (AnomalyKind::TypeMismatch, "type_mismatch"),
            (AnomalyKind::NotFinite, "not_finite"),
            (AnomalyKind::NullValues, "null_values"),
            (AnomalyKind::OutOfRange, "out_of_range"),
            (AnomalyKind::UnknownCategory, "unknown_category"),
            (AnomalyKind::PatternMismatch, "pattern_mismatch"),
            (AnomalyKind::NotUnique, "not_unique"),
            (AnomalyKind::UnknownLabel, "unknown_label"),
            (AnomalyKind::RowCount, "row_count"),
            (AnomalyKind::DuplicateRows, "duplicate_rows"),
            (AnomalyKind::LabelBalance, "label_balance"),
            (AnomalyKind::Drift, "drift"),
            (AnomalyKind::ParseError, "parse_error"),
            (AnomalyKind::EmptyDataset, "empty_dataset"),
            (AnomalyKind::InternalError, "internal_error"),
            (AnomalyKind::SpecError, "spec_error"),
            (AnomalyKind::PersonalData, "personal_data"),
            (AnomalyKind::LowPower, "low_power"),
        ];
        assert_eq!(documented.map(|(kind, _)| kind), AnomalyKind::ALL);
        for (kind, name) in documented {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
            let snake = name.split('_').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
            assert!(snake, "{name} is not snake_case");
        }
        let names: HashSet<&str> = AnomalyKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), AnomalyKind::ALL.len());
    }

    #[test]
    fn kinds_sort_by_name_as_reports_list_them() {
        let mut by_kind = AnomalyKind::ALL;
        by_kind.sort();
        let mut by_name = AnomalyKind::ALL.map(AnomalyKind::as_str);
        by_name.sort_unstable();
        assert_eq!(by_kind.map(AnomalyKind::as_str), by_name);
    }

    #[test]
    fn a_kind_is_counted_once_per_column_with_its_first_message_and_a_few_rows() {
        let mut found = Findings::default();
        for row in 0..8 {
            found.add("age", AnomalyKind::OutOfRange, Some(row), true, || format!("row {row}"));
        }
        found.add("age", AnomalyKind::NullValues, Some(9), false, || "empty".into());
        let columns = found.into_columns();
        let kinds: Vec<&str> = columns[0].anomalies.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["null_values", "out_of_range"]);
        let range = &columns[0].anomalies[1];
        assert_eq!(
            (range.count, range.message.as_str(), range.example_rows.clone()),
            (8, "row 0", vec![1, 2, 3, 4, 5])
        );
    }
}
