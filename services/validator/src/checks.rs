//! The checks a dataset must pass against its pipeline's declared schema: columns present, values
//! parse as their type and are finite, nulls only where allowed, numbers within bounds, categories
//! within the domain, labels one of the two classes. Each finding names its column, counts the rows
//! and gives a few example row numbers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher as _, Hash, Hasher};

use mlops_data::DataType;
use mlops_data::{Array as _, Batches, Cell, ColumnView, DataError, text, view};
use mlops_proto as pb;
use mlops_shared::spec::{Environment, FeatureKind, FeatureSpec, PipelineSpec, Severity, Task};
use mlops_shared::table::{parse_number, trim_cell};

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
        // Looked up before inserting: a column with a million bad cells allocates its name once.
        if !self.by_column.contains_key(column) {
            self.by_column.insert(column.to_owned(), BTreeMap::new());
        }
        let kinds = self.by_column.get_mut(column).expect("inserted above");
        let entry = kinds.entry(kind).or_insert_with(|| pb::Anomaly {
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

    /// Downgrades to warnings what a feature's `severity: warn` or `mostly` tolerates.
    fn apply_tolerances(&mut self, spec: &PipelineSpec, rows: u64) {
        const VALUE_CHECKS: [&str; 7] = [
            "null_values",
            "type_mismatch",
            "not_finite",
            "out_of_range",
            "unknown_category",
            "pattern_mismatch",
            "not_unique",
        ];
        for f in spec.features.iter().chain(&spec.columns) {
            let Some(kinds) = self.by_column.get_mut(&f.name) else { continue };
            for (kind, a) in kinds.iter_mut() {
                if f.severity == Severity::Warn && *kind != "missing_column" {
                    a.blocking = false;
                } else if let Some(mostly) = f.mostly
                    && VALUE_CHECKS.contains(kind)
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
/// `previous` is the profile of the pipeline's previous accepted training version, for the drift
/// comparators (`max_drift`). In the serving environment the label may be absent.
pub fn validate(
    batches: Result<Batches, DataError>,
    spec: &PipelineSpec,
    previous: Option<&pb::DatasetProfile>,
    environment: Environment,
) -> Report {
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
    // (CSV is decoded on worker threads already.)
    let batches = if batches.format == mlops_data::Format::Csv { batches } else { batches.read_ahead(2) };
    for f in schema.fields() {
        if spec.checked_column(f.name()).is_none() && *f.name() != spec.target.name {
            found.add(f.name(), "extra_column", None, false, || "column is not in the spec and is ignored".into());
        }
    }
    // Features, then the columns that are only checked.
    let features: Vec<(&FeatureSpec, Option<usize>)> =
        spec.features.iter().chain(&spec.columns).map(|f| (f, schema.index_of(&f.name).ok())).collect();
    for (f, i) in &features {
        if i.is_none() {
            found.add(&f.name, "missing_column", None, true, || "declared in the spec but absent from the data".into());
        }
    }
    let t = &spec.target;
    let t_name = t.name.as_str();
    let target = schema.index_of(&t.name).ok();
    let mut checks: Vec<ColumnCheck<'_>> = features
        .iter()
        .map(|&(f, index)| ColumnCheck {
            f,
            index,
            found: Findings::default(),
            profile: match f.kind {
                FeatureKind::Numeric => Profile::Numeric(Box::default()),
                FeatureKind::Categorical => Profile::Categorical(CategoricalProfile::with_domain(&f.categories)),
            },
            values: Vec::new(),
            pattern: f.regex.as_deref().map(mlops_shared::spec::full_match),
            // Uniqueness and numeric drift need state beyond the profile.
            distinct: (f.unique && index.is_some()).then(HashSet::default),
            drift: previous.and_then(|p| p.columns.iter().find(|c| c.name == f.name)).and_then(|prev| {
                (f.max_drift.is_some() && f.kind == FeatureKind::Numeric && prev.histogram_edges.len() >= 2)
                    .then(|| (prev.histogram_edges.as_slice(), vec![0u64; prev.histogram_edges.len() - 1]))
            }),
        })
        .collect();
    let mut target_profile = CategoricalProfile::with_domain([&t.positive, &t.negative]);
    let mut target_values = NumericProfile::default();
    let label_number = |s: &str| parse_number(s).ok().flatten();
    let label_numbers = (label_number(&t.positive), label_number(&t.negative));
    if target.is_none() && environment == Environment::Training {
        found.add(&t.name, "missing_column", None, true, || "the target column is absent from the data".into());
    }
    // The file's columns and the Arrow type each was read as (mixed batches read as text).
    let mut types: Vec<Option<DataType>> = vec![None; schema.fields().len()];
    let mut row_hashes: Option<HashSet<u64>> = spec.validation.max_duplicate_share.map(|_| HashSet::new());
    let mut duplicates = 0u64;
    let mut offset = 0usize;
    for batch in batches {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                found.add("", "parse_error", None, true, || e.to_string());
                break;
            }
        };
        for (seen, column) in types.iter_mut().zip(batch.columns()) {
            let t = column.data_type();
            match seen {
                None => *seen = Some(t.clone()),
                Some(s) if s != t => *s = DataType::Utf8,
                Some(_) => {}
            }
        }
        // The columns split over two threads; the target and duplicate rows stay on this one.
        std::thread::scope(|scope| {
            let half = checks.len() / 2;
            let (left, right) = checks.split_at_mut(half);
            let batch_ref = &batch;
            let worker = scope.spawn(move || left.iter_mut().for_each(|c| c.run(batch_ref, offset)));
            right.iter_mut().for_each(|c| c.run(&batch, offset));
            if worker.join().is_err() {
                found.add("", "internal_error", None, true, || "a column check failed unexpectedly".into());
            }
        });
        if let Some(hashes) = &mut row_hashes {
            let columns: Vec<_> =
                features.iter().filter_map(|(_, i)| *i).chain(target).map(|i| view(batch.column(i))).collect();
            for r in 0..batch.num_rows() {
                let mut h = std::hash::DefaultHasher::new();
                for c in &columns {
                    text(c.get(r)).hash(&mut h);
                }
                if !hashes.insert(h.finish()) {
                    duplicates += 1;
                }
            }
        }
        if let (Some(i), Task::Regression) = (target, t.task) {
            let column = view(batch.column(i));
            let mut values = Vec::with_capacity(batch.num_rows());
            for r in 0..batch.num_rows() {
                let value = match column.get(r) {
                    Cell::Num(v) if v.is_finite() => Some(v),
                    Cell::Str(s) => parse_number(s).ok().flatten(),
                    _ => None,
                };
                match value {
                    Some(v) => values.push(v),
                    None => {
                        target_values.add_null();
                        let cell = text(column.get(r));
                        found.add(&t.name, "unknown_label", Some(offset + r), true, || {
                            format!("labels must be finite numbers (the task is regression), found {cell:?}")
                        });
                    }
                }
            }
            target_values.add_all(&values);
        } else if let Some(i) = target {
            let column = view(batch.column(i));
            for r in 0..batch.num_rows() {
                let cell = column.get(r);
                // Parquet labels are often integers: matched as numbers, without formatting each.
                let text = match cell {
                    Cell::Num(v) if label_numbers.0 == Some(v) => Cow::Borrowed(t.positive.as_str()),
                    Cell::Num(v) if label_numbers.1 == Some(v) => Cow::Borrowed(t.negative.as_str()),
                    other => text(other),
                };
                let known = if text.is_empty() {
                    target_profile.add_null();
                    false
                } else {
                    target_profile.add(&text)
                };
                if !known {
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
    let rows = offset as u64;
    let v = &spec.validation;
    let dataset_blocks = v.severity == Severity::Block;
    if let Some(lo) = v.min_rows.filter(|lo| rows < *lo) {
        found.add("", "row_count", None, dataset_blocks, || format!("{rows} rows, fewer than min_rows {lo}"));
    }
    if let Some(hi) = v.max_rows.filter(|hi| rows > *hi) {
        found.add("", "row_count", None, dataset_blocks, || format!("{rows} rows, more than max_rows {hi}"));
    }
    if let Some(max) = v.max_duplicate_share
        && rows > 0
        && duplicates as f64 / rows as f64 > max
    {
        let share = duplicates as f64 / rows as f64;
        found.add("", "duplicate_rows", None, dataset_blocks, || {
            format!("{duplicates} rows ({:.2}%) repeat an earlier row, over max_duplicate_share {max}", share * 100.0)
        });
    }
    if let Some(min) = v.min_label_share
        && target.is_some()
        && rows > 0
    {
        let positives = target_profile.count_of(&t.positive);
        let rarer = positives.min(rows - positives.min(rows)) as f64 / rows as f64;
        if rarer < min {
            found.add(&t.name, "label_balance", None, dataset_blocks, || {
                format!("the rarer class is {:.2}% of rows, under min_label_share {min}", rarer * 100.0)
            });
        }
    }
    let mut columns = Vec::with_capacity(checks.len() + 1);
    let mut drift_bins = Vec::with_capacity(checks.len());
    for c in checks {
        found.by_column.extend(c.found.by_column);
        if c.index.is_some() {
            columns.push(match c.profile {
                Profile::Numeric(p) => p.finish(&c.f.name),
                Profile::Categorical(p) => p.finish(&c.f.name),
            });
        }
        drift_bins.push(c.drift);
    }
    // Drift against the previous accepted version.
    for ((f, _), bins) in features.iter().zip(drift_bins) {
        let (Some(max), Some(prev)) = (f.max_drift, previous.and_then(|p| p.columns.iter().find(|c| c.name == f.name)))
        else {
            continue;
        };
        let (method, score) = match (bins, columns.iter().find(|c| c.name == f.name)) {
            (Some((_, counts)), _) => {
                ("jensen_shannon", jensen_shannon(&shares(&prev.histogram_counts), &shares(&counts)))
            }
            (None, Some(now)) if f.kind == FeatureKind::Categorical => ("l_infinity", l_infinity(prev, now)),
            _ => continue,
        };
        if score > max {
            found.add(&f.name, "drift", None, f.severity == Severity::Block, || {
                format!("{method} distance {score:.4} from the previous accepted version, over max_drift {max}")
            });
        }
    }
    if target.is_some() {
        columns.push(match t.task {
            Task::BinaryClassification => target_profile.finish(&t.name),
            Task::Regression => target_values.finish(&t.name),
        });
    }
    let schema_fields = schema
        .fields()
        .iter()
        .zip(types)
        .map(|(f, read)| pb::SchemaField {
            name: f.name().clone(),
            r#type: read.unwrap_or_else(|| f.data_type().clone()).to_string(),
            role: if spec.feature(f.name()).is_some() {
                "feature"
            } else if spec.checked_column(f.name()).is_some() {
                "checked"
            } else if *f.name() == t_name {
                "target"
            } else {
                "extra"
            }
            .into(),
        })
        .collect();
    found.apply_tolerances(spec, rows);
    found.into_report(rows, pb::DatasetProfile { rows, columns, schema: schema_fields })
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}

/// Jensen-Shannon divergence with base-2 logarithms, in [0, 1].
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter().zip(m).filter(|(x, _)| **x > 0.0).map(|(x, y)| x * (x / y).log2()).sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).clamp(0.0, 1.0)
}

/// Largest difference in share of any category between two categorical profiles.
fn l_infinity(prev: &pb::ColumnProfile, now: &pb::ColumnProfile) -> f64 {
    let share = |c: &pb::ColumnProfile, v: &str| {
        c.top_categories.iter().find(|t| t.value == v).map_or(0.0, |t| t.count as f64 / c.count.max(1) as f64)
    };
    prev.top_categories
        .iter()
        .chain(&now.top_categories)
        .map(|t| (share(prev, &t.value) - share(now, &t.value)).abs())
        .fold(0.0, f64::max)
}

/// One feature's checks and statistics, run column by column (and so on any thread).
struct ColumnCheck<'s> {
    f: &'s FeatureSpec,
    index: Option<usize>,
    found: Findings,
    profile: Profile,
    /// Hashes of the values seen, for `unique`: 8 bytes a row rather than the text (two distinct
    /// values collide with odds of 2^-64 a pair).
    distinct: Option<HashSet<u64, foldhash::fast::FixedState>>,
    /// The previous version's histogram edges and this version's counts in them.
    drift: Option<(&'s [f64], Vec<u64>)>,
    /// The current batch's valid numbers (a reused buffer).
    values: Vec<f64>,
    /// The spec's `regex`, compiled (checked when the spec was applied).
    pattern: Option<Result<regex::Regex, regex::Error>>,
}

impl ColumnCheck<'_> {
    fn run(&mut self, batch: &mlops_data::RecordBatch, offset: usize) {
        let Some(i) = self.index else { return };
        let f = self.f;
        let column = view(batch.column(i));
        self.values.clear();
        if let (ColumnView::F64(a), Profile::Numeric(p), None) = (&column, &mut self.profile, &self.distinct)
            && a.null_count() == 0
        {
            // The common case, a whole batch of plain numbers: checked in one vectorisable pass,
            // and cell by cell only when something is off.
            let (lo, hi) = (f.min.unwrap_or(f64::NEG_INFINITY), f.max.unwrap_or(f64::INFINITY));
            let values = a.values();
            if values.iter().fold(true, |ok, v| ok & (*v >= lo) & (*v <= hi) & v.is_finite()) {
                p.add_all(values);
                self.count_drift(values);
                return;
            }
        }
        for r in 0..batch.num_rows() {
            let cell = column.get(r);
            if let Some(seen) = &mut self.distinct
                && !matches!(cell, Cell::Null)
                && !seen.insert(foldhash::fast::FixedState::default().hash_one(text(cell)))
            {
                self.found
                    .add(&f.name, "not_unique", Some(offset + r), true, || "values repeat in a unique column".into());
            }
            match (check_cell(&mut self.found, f, cell, offset + r), &mut self.profile) {
                (Valid::Null, Profile::Numeric(p)) => p.add_null(),
                (Valid::Null, Profile::Categorical(p)) => p.add_null(),
                (Valid::Num(v), Profile::Numeric(_)) => self.values.push(v),
                (Valid::Cat(c), Profile::Categorical(p)) => {
                    // An empty domain is an open one (a checked column that is not a feature).
                    let known = p.add(&c);
                    if !known && !f.categories.is_empty() {
                        self.found.add(&f.name, "unknown_category", Some(offset + r), true, || {
                            format!("{c:?} is not one of {}", f.categories.join(", "))
                        });
                    }
                    match &self.pattern {
                        Some(Ok(re)) if !re.is_match(&c) => {
                            self.found.add(&f.name, "pattern_mismatch", Some(offset + r), true, || {
                                format!("{c:?} does not match {:?}", f.regex.as_deref().unwrap_or_default())
                            });
                        }
                        Some(Err(e)) => self.found.add(&f.name, "spec_error", None, true, || format!("`regex`: {e}")),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        // The batch's valid numbers, counted together.
        if let Profile::Numeric(p) = &mut self.profile {
            let values = std::mem::take(&mut self.values);
            p.add_all(&values);
            self.count_drift(&values);
            self.values = values;
        }
    }

    /// Counts numbers into the previous version's histogram bins, for the drift comparator.
    fn count_drift(&mut self, values: &[f64]) {
        if let Some((edges, counts)) = &mut self.drift {
            let inner = &edges[1..edges.len() - 1];
            for v in values {
                counts[inner.partition_point(|e| e <= v)] += 1;
            }
        }
    }
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
            // Whether it is in the domain is answered as the profile counts it.
            Valid::Cat(text(value))
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

    /// Validates as the service does: numeric columns decoded as numbers where they parse. The
    /// same data read all as text must give the same report.
    fn validate(bytes: &[u8], spec: &PipelineSpec) -> Report {
        let typed = validate_against(bytes, spec, None);
        let batches = mlops_data::open(mlops_data::Source::Bytes(bytes.to_vec().into()), "", &Default::default());
        let text = super::validate(batches, spec, None, Environment::Training);
        let findings = |r: &Report| (r.rows, r.columns.clone(), r.profile.columns.clone());
        assert_eq!(findings(&typed), findings(&text), "typed and text reads disagree");
        typed
    }

    fn validate_against(bytes: &[u8], spec: &PipelineSpec, previous: Option<&pb::DatasetProfile>) -> Report {
        let source = mlops_data::Source::Bytes(bytes.to_vec().into());
        let batches = mlops_data::open_typed(source, "", &Default::default(), &spec.numeric_features());
        super::validate(batches, spec, previous, Environment::Training)
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
    fn a_regression_target_must_be_numbers_and_is_profiled_as_one() {
        let spec = PipelineSpec::from_yaml(
            &SPEC.replace("target: {name: churned}", "target: {name: churned, task: regression}"),
        )
        .unwrap();
        let good = validate(b"tenure,charges,contract,churned\n1,,monthly,12.5\n5,3.5,yearly,-3\n", &spec);
        assert!(!good.blocked(), "{good:#?}");
        let label = &good.profile.columns[3];
        assert_eq!((label.name.as_str(), label.count, label.mean, label.min), ("churned", 2, 4.75, -3.0));
        let bad = validate(b"tenure,charges,contract,churned\n1,,monthly,cheap\n5,3.5,yearly,\n2,1,monthly,7\n", &spec);
        assert!(bad.blocked());
        let a = anomaly(&bad, "churned", "unknown_label");
        assert_eq!((a.count, a.example_rows.clone()), (2, vec![1, 2]));
        assert!(a.message.contains("finite numbers") && a.message.contains("cheap"), "{}", a.message);
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

    fn rows(n: usize, f: impl Fn(usize) -> String) -> Vec<u8> {
        let mut s = String::from("tenure,charges,contract,churned\n");
        for i in 0..n {
            s.push_str(&f(i));
            s.push('\n');
        }
        s.into_bytes()
    }

    #[test]
    fn tolerances_and_severity_turn_blocks_into_warnings() {
        let one_bad = rows(100, |i| format!("{},1,monthly,{}", if i == 7 { 500 } else { 5 }, i % 2));
        assert!(validate(&one_bad, &spec()).blocked());
        let tolerant = PipelineSpec::from_yaml(&SPEC.replace("max: 100}", "max: 100, mostly: 0.95}")).unwrap();
        let r = validate(&one_bad, &tolerant);
        assert!(!r.blocked(), "{r:#?}");
        assert!(anomaly(&r, "tenure", "out_of_range").message.contains("99.00% of rows pass, within mostly 0.95"));
        let strict = PipelineSpec::from_yaml(&SPEC.replace("max: 100}", "max: 100, mostly: 0.999}")).unwrap();
        assert!(validate(&one_bad, &strict).blocked());
        let warn = PipelineSpec::from_yaml(&SPEC.replace("max: 100}", "max: 100, severity: warn}")).unwrap();
        assert!(!validate(&one_bad, &warn).blocked());
    }

    #[test]
    fn dataset_checks_rows_duplicates_uniqueness_and_label_balance() {
        let extra = "validation: {min_rows: 50, max_duplicate_share: 0.1, min_label_share: 0.2}\n";
        let s = PipelineSpec::from_yaml(&format!("{SPEC}{extra}")).unwrap();
        let few = rows(10, |i| format!("{i},1,monthly,{}", i % 2));
        assert_eq!(anomaly(&validate(&few, &s), "", "row_count").message, "10 rows, fewer than min_rows 50");
        let dups = rows(100, |i| format!("{},1,monthly,{}", i % 50, i % 2));
        assert!(anomaly(&validate(&dups, &s), "", "duplicate_rows").message.contains("50 rows (50.00%)"));
        let skewed = rows(100, |i| format!("{i},1,monthly,{}", u8::from(i < 5)));
        assert!(anomaly(&validate(&skewed, &s), "churned", "label_balance").message.contains("5.00%"));
        let clean = rows(100, |i| format!("{i},1,monthly,{}", i % 2));
        assert!(!validate(&clean, &s).blocked());
        let unique = PipelineSpec::from_yaml(&SPEC.replace("max: 100}", "max: 100, unique: true}")).unwrap();
        let r = validate(&dups, &unique);
        assert_eq!(anomaly(&r, "tenure", "not_unique").count, 50);
    }

    #[test]
    fn drift_against_the_previous_version() {
        let drifty = SPEC
            .replace("max: 100}", "max: 100, max_drift: 0.1}")
            .replace("categories: [monthly, yearly]}", "categories: [monthly, yearly], max_drift: 0.2}");
        let s = PipelineSpec::from_yaml(&drifty).unwrap();
        let base = rows(1000, |i| format!("{},1,{},{}", i % 50, if i % 2 == 0 { "monthly" } else { "yearly" }, i % 2));
        let previous = validate(&base, &s).profile;
        let again =
            rows(1000, |i| format!("{},2,{},{}", (i * 7) % 50, if i % 2 == 1 { "monthly" } else { "yearly" }, i % 2));
        let r = validate_against(&again, &s, Some(&previous));
        assert!(!r.blocked(), "{r:#?}");
        let shifted =
            rows(1000, |i| format!("{},1,{},{}", 60 + i % 40, if i % 10 == 0 { "monthly" } else { "yearly" }, i % 2));
        let r = validate_against(&shifted, &s, Some(&previous));
        assert!(anomaly(&r, "tenure", "drift").message.contains("jensen_shannon"), "{r:#?}");
        assert!(anomaly(&r, "contract", "drift").message.contains("l_infinity distance 0.4000"), "{r:#?}");
    }

    #[test]
    fn serving_data_may_lack_the_label_and_the_schema_is_recorded() {
        let csv = b"tenure,charges,contract,note\n1,,monthly,x\n5,3.5,yearly,y\n";
        let training = validate_in(csv, &spec(), Environment::Training);
        assert_eq!(
            anomaly(&training, "churned", "missing_column").message,
            "the target column is absent from the data"
        );
        let serving = validate_in(csv, &spec(), Environment::Serving);
        assert!(!serving.blocked(), "{serving:#?}");
        let schema: Vec<(&str, &str, &str)> =
            serving.profile.schema.iter().map(|f| (f.name.as_str(), f.r#type.as_str(), f.role.as_str())).collect();
        assert_eq!(
            schema,
            [
                ("tenure", "Float64", "feature"),
                ("charges", "Float64", "feature"),
                ("contract", "Utf8", "feature"),
                ("note", "Utf8", "extra")
            ]
        );
        // A label that is there is still checked, in any environment.
        let labelled =
            validate_in(b"tenure,charges,contract,churned\n1,2,monthly,maybe\n", &spec(), Environment::Serving);
        assert_eq!(anomaly(&labelled, "churned", "unknown_label").count, 1);
        // A numeric column with a cell that is not a number reads as text, and says so.
        let odd = validate_in(b"tenure,charges,contract,churned\n1,abc,monthly,1\n", &spec(), Environment::Training);
        assert_eq!(odd.profile.schema[1].r#type, "Utf8");
        assert_eq!(odd.profile.schema[3].role, "target");
    }

    fn validate_in(bytes: &[u8], spec: &PipelineSpec, environment: Environment) -> Report {
        let source = mlops_data::Source::Bytes(bytes.to_vec().into());
        super::validate(
            mlops_data::open_typed(source, "", &Default::default(), &spec.numeric_features()),
            spec,
            None,
            environment,
        )
    }

    #[test]
    fn checked_columns_with_a_pattern_an_open_domain_and_uniqueness() {
        let extra = "columns:\n  - {name: id, type: categorical, regex: \"C[0-9]{3}\", unique: true}\n";
        let s = PipelineSpec::from_yaml(&format!("{SPEC}{extra}")).unwrap();
        let csv = "id,tenure,charges,contract,churned\nC001,1,,monthly,1\nX02,2,,monthly,0\nC001,3,,yearly,1\nC004,4,,yearly,0\n";
        let r = validate(csv.as_bytes(), &s);
        let pattern = anomaly(&r, "id", "pattern_mismatch");
        assert_eq!((pattern.count, pattern.example_rows.clone()), (1, vec![2]));
        assert_eq!(pattern.message, "\"X02\" does not match \"C[0-9]{3}\"");
        assert_eq!(anomaly(&r, "id", "not_unique").example_rows, vec![3]);
        assert!(r.columns.iter().all(|c| c.anomalies.iter().all(|a| a.kind != "unknown_category")), "{r:#?}");
        assert!(r.columns.iter().all(|c| c.column != "id" || c.anomalies.iter().all(|a| a.kind != "extra_column")));
        let id = r.profile.columns.iter().find(|c| c.name == "id").expect("profiled");
        assert_eq!(id.distinct, 3);
        assert_eq!(r.profile.schema[0].role, "checked");
        let missing = validate(b"tenure,charges,contract,churned\n1,,monthly,1\n", &s);
        assert!(anomaly(&missing, "id", "missing_column").blocking);
    }

    #[test]
    fn jensen_shannon_matches_scipy() {
        // scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2
        assert!((jensen_shannon(&[0.5, 0.5], &[0.9, 0.1]) - 0.146_793_102_436_052_15).abs() < 1e-12);
        let js = jensen_shannon(&[0.25, 0.25, 0.5, 0.0], &[0.0, 0.5, 0.25, 0.25]);
        assert!((js - 0.311_278_124_459_132_8).abs() < 1e-12);
        assert_eq!(jensen_shannon(&[0.3, 0.7], &[0.3, 0.7]), 0.0);
    }
}
