//! The checks a dataset must pass against its pipeline's declared schema: columns present, values
//! parse as their type and are finite, nulls only where allowed, numbers within bounds, categories
//! within the domain, labels one of the two classes. Each finding names its column, counts the rows
//! and gives a few example row numbers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use mlops_data::{Batches, Cell, DataError, view};
use mlops_proto as pb;
use mlops_shared::spec::{FeatureKind, FeatureSpec, PipelineSpec};
use mlops_shared::table::parse_number;

use crate::profile::{CategoricalProfile, NumericProfile};

const EXAMPLES: usize = 5;

/// What validation found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub rows: u64,
    pub columns: Vec<pb::ColumnReport>,
    /// The profile of every declared column present (features, then the target).
    pub profile: pb::DatasetProfile,
}

impl Report {
    /// Whether any anomaly blocks the dataset.
    pub fn blocked(&self) -> bool {
        self.columns.iter().any(|c| c.anomalies.iter().any(|a| a.blocking))
    }

    /// One line: the blocking anomalies, column by column.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .flat_map(|c| {
                c.anomalies.iter().filter(|a| a.blocking).map(move |a| {
                    if c.column.is_empty() { a.message.clone() } else { format!("{}: {}", c.column, a.message) }
                })
            })
            .collect();
        parts.join("; ")
    }

    /// The column reports with only non-blocking anomalies.
    pub fn warnings(&self) -> Vec<pb::ColumnReport> {
        self.columns
            .iter()
            .map(|c| pb::ColumnReport {
                column: c.column.clone(),
                anomalies: c.anomalies.iter().filter(|a| !a.blocking).cloned().collect(),
            })
            .filter(|c| !c.anomalies.is_empty())
            .collect()
    }
}

/// Collects anomalies per column, counting rows and keeping the first few row numbers.
#[derive(Default)]
struct Findings {
    by_column: BTreeMap<String, BTreeMap<&'static str, pb::Anomaly>>,
}

impl Findings {
    fn add(
        &mut self,
        column: &str,
        kind: &'static str,
        row: Option<usize>,
        blocking: bool,
        message: impl FnOnce() -> String,
    ) {
        let entry = self.by_column.entry(column.to_owned()).or_default().entry(kind).or_insert_with(|| pb::Anomaly {
            kind: kind.into(),
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

    fn blocks(&self) -> bool {
        self.by_column.values().any(|kinds| kinds.values().any(|a| a.blocking))
    }

    fn into_report(self, rows: u64, profile: pb::DatasetProfile) -> Report {
        let columns = self
            .by_column
            .into_iter()
            .map(|(column, kinds)| pb::ColumnReport { column, anomalies: kinds.into_values().collect() })
            .collect();
        Report { rows, columns, profile }
    }
}

/// Validates a dataset, read as a stream of batches, against `spec`.
pub fn validate(batches: Result<Batches, DataError>, spec: &PipelineSpec) -> Report {
    let mut found = Findings::default();
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            found.add("", "parse_error", None, true, || e.to_string());
            return found.into_report(0, pb::DatasetProfile::default());
        }
    };
    let schema = batches.schema.clone();
    // Decoding runs a batch or two ahead on another core while this one checks.
    let batches = batches.read_ahead(2);
    for f in schema.fields() {
        if spec.feature(f.name()).is_none() && *f.name() != spec.target.name {
            found.add(f.name(), "extra_column", None, false, || "column is not in the spec and is ignored".into());
        }
    }
    let features: Vec<(&FeatureSpec, Option<usize>)> =
        spec.features.iter().map(|f| (f, schema.index_of(&f.name).ok())).collect();
    for (f, i) in &features {
        if i.is_none() {
            found.add(&f.name, "missing_column", None, true, || "declared in the spec but absent from the data".into());
        }
    }
    let t = &spec.target;
    let target = schema.index_of(&t.name).ok();
    let mut profiles: Vec<Profile> = features
        .iter()
        .map(|(f, _)| match f.kind {
            FeatureKind::Numeric => Profile::Numeric(Box::default()),
            FeatureKind::Categorical => Profile::Categorical(CategoricalProfile::default()),
        })
        .collect();
    let mut target_profile = CategoricalProfile::default();
    if target.is_none() {
        found.add(&t.name, "missing_column", None, true, || "the target column is absent from the data".into());
    }
    let mut offset = 0usize;
    for batch in batches {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                found.add("", "parse_error", None, true, || e.to_string());
                break;
            }
        };
        for ((f, i), profile) in features.iter().zip(&mut profiles) {
            let Some(i) = i else { continue };
            let column = view(batch.column(*i));
            for r in 0..batch.num_rows() {
                match (check_cell(&mut found, f, column.get(r), offset + r), &mut *profile) {
                    (Valid::Null, Profile::Numeric(p)) => p.add_null(),
                    (Valid::Null, Profile::Categorical(p)) => p.add_null(),
                    (Valid::Num(v), Profile::Numeric(p)) => p.add(v),
                    (Valid::Cat(c), Profile::Categorical(p)) => p.add(&c),
                    _ => {}
                }
            }
        }
        if let Some(i) = target {
            let column = view(batch.column(i));
            for r in 0..batch.num_rows() {
                let text = cell_text(column.get(r));
                if text.is_empty() {
                    target_profile.add_null();
                } else {
                    target_profile.add(&text);
                }
                if text != t.positive && text != t.negative {
                    found.add(&t.name, "unknown_label", Some(offset + r), true, || {
                        format!("labels must be {:?} or {:?}, found {text:?}", t.positive, t.negative)
                    });
                }
            }
        }
        offset += batch.num_rows();
    }
    if offset == 0 && !found.blocks() {
        found.add("", "empty_dataset", None, true, || "the dataset has a header but no rows".into());
    }
    let mut columns: Vec<pb::ColumnProfile> = features
        .iter()
        .zip(profiles)
        .filter(|((_, i), _)| i.is_some())
        .map(|((f, _), p)| match p {
            Profile::Numeric(p) => p.finish(&f.name),
            Profile::Categorical(p) => p.finish(&f.name),
        })
        .collect();
    if target.is_some() {
        columns.push(target_profile.finish(&t.name));
    }
    found.into_report(offset as u64, pb::DatasetProfile { rows: offset as u64, columns })
}

enum Profile {
    Numeric(Box<NumericProfile>),
    Categorical(CategoricalProfile),
}

/// A cell after its checks: a valid value for the profile, empty, or invalid (already reported).
enum Valid<'a> {
    Null,
    Num(f64),
    Cat(Cow<'a, str>),
    Invalid,
}

/// A cell as the text a CSV would hold (`1`, not `1.0`), borrowed when it already is text.
fn cell_text(c: Cell<'_>) -> Cow<'_, str> {
    match c {
        Cell::Str(s) => Cow::Borrowed(s.trim()),
        Cell::Num(v) if v.fract() == 0.0 && v.abs() < 1e15 => Cow::Owned(format!("{}", v as i64)),
        Cell::Num(v) => Cow::Owned(v.to_string()),
        Cell::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Cell::Null | Cell::Other(_) => Cow::Borrowed(""),
    }
}

fn check_cell<'a>(found: &mut Findings, f: &FeatureSpec, value: Cell<'a>, row: usize) -> Valid<'a> {
    let value = match value {
        Cell::Str(s) if s.trim().is_empty() => Cell::Null,
        Cell::Str(s) => Cell::Str(s.trim()),
        other => other,
    };
    if value == Cell::Null {
        if !f.nullable {
            found.add(&f.name, "null_values", Some(row), true, || {
                "empty values in a column that is not nullable".into()
            });
        }
        return Valid::Null;
    }
    match f.kind {
        FeatureKind::Numeric => {
            let v = match value {
                Cell::Num(v) => v,
                Cell::Str(s) => match parse_number(s) {
                    Ok(Some(v)) => v,
                    Err(_) if s.parse::<f64>().is_ok() => {
                        found.add(&f.name, "not_finite", Some(row), true, || format!("non-finite value {s:?}"));
                        return Valid::Invalid;
                    }
                    _ => {
                        found.add(&f.name, "type_mismatch", Some(row), true, || format!("{s:?} is not a number"));
                        return Valid::Invalid;
                    }
                },
                Cell::Bool(_) | Cell::Other(_) | Cell::Null => {
                    found.add(&f.name, "type_mismatch", Some(row), true, || format!("{value:?} is not a number"));
                    return Valid::Invalid;
                }
            };
            if !v.is_finite() {
                found.add(&f.name, "not_finite", Some(row), true, || format!("non-finite value {v}"));
                return Valid::Invalid;
            }
            if f.min.is_some_and(|lo| v < lo) || f.max.is_some_and(|hi| v > hi) {
                found.add(&f.name, "out_of_range", Some(row), true, || {
                    format!("{v} is outside [{}, {}]", fmt_bound(f.min), fmt_bound(f.max))
                });
            }
            Valid::Num(v)
        }
        FeatureKind::Categorical => {
            if let Cell::Other(t) = value {
                found.add(&f.name, "type_mismatch", Some(row), true, || format!("a {t} value is not a category"));
                return Valid::Invalid;
            }
            let text = cell_text(value);
            if !f.categories.iter().any(|c| c == text.as_ref()) {
                found.add(&f.name, "unknown_category", Some(row), true, || {
                    format!("{text:?} is not one of {}", f.categories.join(", "))
                });
            }
            Valid::Cat(text)
        }
    }
}

fn fmt_bound(b: Option<f64>) -> String {
    b.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name: churn
features:
  - {name: tenure, type: numeric, min: 0, max: 100}
  - {name: charges, type: numeric, nullable: true}
  - {name: contract, type: categorical, categories: [monthly, yearly]}
target: {name: churned}
"#;

    fn spec() -> PipelineSpec {
        PipelineSpec::from_yaml(SPEC).unwrap()
    }

    fn validate(bytes: &[u8], spec: &PipelineSpec) -> Report {
        let batches = mlops_data::open(mlops_data::Source::Bytes(bytes.to_vec().into()), "", &Default::default());
        super::validate(batches, spec)
    }

    fn anomaly<'a>(r: &'a Report, column: &str, kind: &str) -> &'a pb::Anomaly {
        r.columns
            .iter()
            .find(|c| c.column == column)
            .and_then(|c| c.anomalies.iter().find(|a| a.kind == kind))
            .unwrap_or_else(|| panic!("no {kind} on {column:?} in {r:#?}"))
    }

    #[test]
    fn clean_data_passes_with_extra_columns_as_warnings() {
        let r = validate(b"tenure,charges,contract,churned,note\n1,,monthly,1,x\n5,3.5,yearly,0,y\n", &spec());
        assert!(!r.blocked(), "{r:#?}");
        assert_eq!(r.rows, 2);
        assert_eq!(r.warnings()[0].column, "note");
        let names: Vec<&str> = r.profile.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tenure", "charges", "contract", "churned"]);
        let charges = &r.profile.columns[1];
        assert_eq!((charges.count, charges.nulls, charges.mean), (1, 1, 3.5));
        assert_eq!(r.profile.columns[3].distinct, 2);
    }

    #[test]
    fn every_kind_of_bad_cell_is_reported_per_column() {
        let csv = "tenure,charges,contract,churned\n\
                   -1,abc,weekly,1\n\
                   ,inf,monthly,maybe\n\
                   200,1,monthly,0\n";
        let r = validate(csv.as_bytes(), &spec());
        assert!(r.blocked());
        let range = anomaly(&r, "tenure", "out_of_range");
        assert_eq!((range.count, range.example_rows.clone()), (2, vec![1, 3]));
        assert_eq!(anomaly(&r, "tenure", "null_values").example_rows, vec![2]);
        assert_eq!(anomaly(&r, "charges", "type_mismatch").message, "\"abc\" is not a number");
        assert_eq!(anomaly(&r, "charges", "not_finite").count, 1);
        assert!(anomaly(&r, "contract", "unknown_category").message.contains("weekly"));
        assert_eq!(anomaly(&r, "churned", "unknown_label").count, 1);
        assert!(r.summary().contains("tenure: -1 is outside [0, 100]"), "{}", r.summary());
    }

    #[test]
    fn structural_problems_block() {
        let missing = validate(b"tenure,charges,churned\n1,2,1\n", &spec());
        assert!(anomaly(&missing, "contract", "missing_column").blocking);
        let ragged = validate(b"tenure,charges,contract,churned\n1,2\n", &spec());
        assert!(ragged.summary().contains("malformed CSV"), "{}", ragged.summary());
        let empty = validate(b"tenure,charges,contract,churned\n", &spec());
        assert_eq!(anomaly(&empty, "", "empty_dataset").kind, "empty_dataset");
        let nothing = validate(b"", &spec());
        assert!(nothing.summary().contains("empty"), "{}", nothing.summary());
        let binary = validate(b"tenure,charges,contract,churned\n1,2,\xff\xfe,1\n", &spec());
        assert!(binary.summary().contains("UTF-8"), "{}", binary.summary());
    }
}
