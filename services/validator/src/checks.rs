//! The checks a dataset must pass against its pipeline's declared schema: columns present, values
//! parse as their type and are finite, nulls only where allowed, numbers within bounds, categories
//! within the domain, labels one of the two classes. Each finding names its column, counts the rows
//! and gives a few example row numbers.

mod anomalies;
mod columns;
mod drift;
mod labels;
mod personal;
mod power;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use mlops_data::{Batches, DataError, DataType, RecordBatch, text, view};
use mlops_proto as pb;
use mlops_shared::pii::Detector;
use mlops_shared::spec::{Environment, FEEDBACK_COLUMNS, FeatureSpec, Origin, PipelineSpec, Severity};

pub use self::anomalies::AnomalyKind;
use self::anomalies::Findings;
use self::columns::ColumnCheck;
use self::labels::Labels;

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

/// Validates a dataset, read as a stream of batches, against `spec`.
/// `previous` is the profile of the pipeline's previous accepted training version, for the drift
/// comparators (`max_js_divergence`, `max_share_shift`). In the serving environment the label may be absent.
pub fn validate(
    batches: Result<Batches, DataError>,
    spec: &PipelineSpec,
    previous: Option<&pb::DatasetProfile>,
    environment: Environment,
    origin: Origin,
) -> Report {
    let mut found = Findings::default();
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            found.add("", AnomalyKind::ParseError, None, true, || e.to_string());
            return report(found, 0, pb::DatasetProfile::default());
        }
    };
    // Decoding runs a batch or two ahead on another core while this one checks.
    // (CSV is decoded on worker threads already.)
    let batches = if batches.format == mlops_data::Format::Csv { batches } else { batches.read_ahead(2) };
    let layout = check_schema(&mut found, spec, &batches, environment, origin);
    // Checked when the spec was applied.
    let detector = spec.validation.personal_data.detector().unwrap_or_default();
    let scans = personal::scans(spec, &batches, &detector);
    let mut pass = Pass::new(spec, layout, previous, SchemaRecord::new(&batches), scans);
    for batch in batches {
        match batch {
            Ok(batch) => pass.check_batch(&mut found, &detector, &batch),
            Err(e) => {
                found.add("", AnomalyKind::ParseError, None, true, || e.to_string());
                break;
            }
        }
    }
    let rows = pass.rows as u64;
    check_dataset(&mut found, spec, &pass);
    // The columns' findings and profiles, then drift, which compares the profiles with the previous ones.
    let mut profiles = Vec::with_capacity(pass.columns.len() + 1);
    let mut histograms = Vec::with_capacity(pass.columns.len());
    for c in pass.columns {
        let f = c.f;
        let (findings, profile, histogram) = c.finish();
        found.merge(findings);
        profiles.extend(profile);
        histograms.push((f, histogram));
    }
    drift::check(&mut found, histograms, previous, &profiles);
    for (name, measured) in pass.power.map(|p| p.finish(&mut found)).unwrap_or_default() {
        if let Some(profile) = profiles.iter_mut().find(|p| p.name == name) {
            power::record(profile, measured);
        }
    }
    profiles.extend(pass.labels.map(Labels::finish));
    let withheld = personal::judge(&mut found, pass.personal, &detector, spec.validation.personal_data.min_share());
    for column in &withheld {
        found.withhold_values(column);
    }
    // A stray value of a column under `min_share` is withheld too, wherever it would be quoted.
    let personal = |v: &str| detector.classify(v).is_some();
    found.withhold_personal_values(personal);
    for c in profiles.iter_mut().flat_map(|p| p.top_categories.iter_mut()).filter(|c| personal(&c.value)) {
        c.value = anomalies::WITHHELD.into();
    }
    // Counts stay; every statistic that is a value (categories, bounds, quantiles, mean) goes.
    for p in profiles.iter_mut().filter(|p| withheld.contains(&p.name)) {
        let counts = pb::ColumnProfile { count: p.count, nulls: p.nulls, distinct: p.distinct, ..Default::default() };
        *p = pb::ColumnProfile { name: std::mem::take(&mut p.name), kind: std::mem::take(&mut p.kind), ..counts };
    }
    let schema = pass.record.finish(spec);
    found.apply_tolerances(spec, rows);
    report(found, rows, pb::DatasetProfile { rows, columns: profiles, schema })
}

fn report(found: Findings, rows: u64, profile: pb::DatasetProfile) -> Report {
    Report { rows, columns: found.into_columns(), profile }
}

/// Where the spec's columns are in the data.
struct Layout<'s> {
    /// The features, then the columns that are only checked, each with its index if present.
    features: Vec<(&'s FeatureSpec, Option<usize>)>,
    target: Option<usize>,
}

/// The schema checks: columns the spec does not declare (a warning; a feedback version's own
/// columns naming its predictions are expected), declared columns absent from the data (a
/// feedback version has only the features of the predictions it holds), and the target, which
/// training data must have.
fn check_schema<'s>(
    found: &mut Findings,
    spec: &'s PipelineSpec,
    batches: &Batches,
    environment: Environment,
    origin: Origin,
) -> Layout<'s> {
    let schema = &batches.schema;
    let expected = |name: &str| origin == Origin::Feedback && FEEDBACK_COLUMNS.contains(&name);
    for f in schema.fields() {
        if spec.checked_column(f.name()).is_none() && *f.name() != spec.target.name && !expected(f.name()) {
            found.add(f.name(), AnomalyKind::ExtraColumn, None, false, || {
                "column is not in the spec and is ignored".into()
            });
        }
    }
    let features: Vec<(&FeatureSpec, Option<usize>)> =
        spec.features.iter().chain(&spec.columns).map(|f| (f, schema.index_of(&f.name).ok())).collect();
    for (k, (f, i)) in features.iter().enumerate() {
        // A feedback version holds what the model was sent: no column that is only checked.
        let checked_only = k >= spec.features.len();
        if i.is_none() && !(checked_only && origin == Origin::Feedback) {
            found.add(&f.name, AnomalyKind::MissingColumn, None, true, || {
                "declared in the spec but absent from the data".into()
            });
        }
    }
    let target = schema.index_of(&spec.target.name).ok();
    if target.is_none() && environment == Environment::Training {
        found.add(&spec.target.name, AnomalyKind::MissingColumn, None, true, || {
            "the target column is absent from the data".into()
        });
    }
    Layout { features, target }
}

/// The state of one pass over the batches: each family of checks with its counts, hashes and
/// profiles so far.
struct Pass<'s> {
    columns: Vec<ColumnCheck<'s>>,
    /// The label checks, when the data has the target column.
    labels: Option<Labels<'s>>,
    /// For `max_duplicate_share`.
    duplicates: Option<DuplicateRows>,
    record: SchemaRecord,
    /// Personal data in every column.
    personal: Vec<personal::Scan<'s>>,
    /// Each feature's predictive power, when the data has labels.
    power: Option<power::Power<'s>>,
    /// The rows read so far.
    rows: usize,
}

impl<'s> Pass<'s> {
    fn new(
        spec: &'s PipelineSpec,
        layout: Layout<'s>,
        previous: Option<&'s pb::DatasetProfile>,
        record: SchemaRecord,
        personal: Vec<personal::Scan<'s>>,
    ) -> Self {
        // The features come first in the layout; only they are trained on.
        let features = layout.features.iter().take(spec.features.len()).filter_map(|&(f, i)| Some((f, i?))).collect();
        Self {
            personal,
            power: layout.target.map(|i| power::Power::new(features, &spec.target, i)),
            columns: layout.features.iter().map(|&(f, index)| ColumnCheck::new(f, index, previous)).collect(),
            labels: layout.target.map(|i| Labels::new(&spec.target, i)),
            duplicates: spec.validation.max_duplicate_share.map(|_| DuplicateRows::new(&layout)),
            record,
            rows: 0,
        }
    }

    /// Runs the per-batch checks: the columns and their personal data (on two threads), duplicate
    /// rows, the labels.
    fn check_batch(&mut self, found: &mut Findings, detector: &Detector, batch: &RecordBatch) {
        self.record.note_types(batch);
        if !columns::run_all(&mut self.columns, &mut self.personal, detector, batch, self.rows) {
            found.add("", AnomalyKind::InternalError, None, true, || "a column check failed unexpectedly".into());
        }
        if let Some(duplicates) = &mut self.duplicates {
            duplicates.add_batch(batch);
        }
        if let Some(labels) = &mut self.labels {
            labels.check_batch(found, batch, self.rows);
        }
        if let Some(power) = &mut self.power {
            power.add_batch(batch, self.rows);
        }
        self.rows += batch.num_rows();
    }
}

/// Rows that repeat an earlier row, over the declared columns present and the target.
struct DuplicateRows {
    columns: Vec<usize>,
    /// A hash of each distinct row seen.
    hashes: HashSet<u64>,
    /// Rows equal to an earlier row.
    count: u64,
}

impl DuplicateRows {
    fn new(layout: &Layout<'_>) -> Self {
        let columns = layout.features.iter().filter_map(|(_, i)| *i).chain(layout.target).collect();
        Self { columns, hashes: HashSet::new(), count: 0 }
    }

    fn add_batch(&mut self, batch: &RecordBatch) {
        let columns: Vec<_> = self.columns.iter().map(|&i| view(batch.column(i))).collect();
        for r in 0..batch.num_rows() {
            let mut h = std::hash::DefaultHasher::new();
            for c in &columns {
                text(c.get(r)).hash(&mut h);
            }
            if !self.hashes.insert(h.finish()) {
                self.count += 1;
            }
        }
    }
}

/// The dataset-level checks, once every batch is read: rows at all, the row count, the share of
/// duplicate rows, the share of the rarer class.
fn check_dataset(found: &mut Findings, spec: &PipelineSpec, pass: &Pass<'_>) {
    let rows = pass.rows as u64;
    // Only when nothing else blocks: a file that failed to parse has no rows either.
    if rows == 0 && !found.blocks() {
        found.add("", AnomalyKind::EmptyDataset, None, true, || "the dataset has a header but no rows".into());
    }
    let v = &spec.validation;
    let blocks = v.severity == Severity::Block;
    if let Some(lo) = v.min_rows.filter(|lo| rows < *lo) {
        found.add("", AnomalyKind::RowCount, None, blocks, || format!("{rows} rows, fewer than min_rows {lo}"));
    }
    if let Some(hi) = v.max_rows.filter(|hi| rows > *hi) {
        found.add("", AnomalyKind::RowCount, None, blocks, || format!("{rows} rows, more than max_rows {hi}"));
    }
    let duplicates = pass.duplicates.as_ref().map_or(0, |d| d.count);
    if let Some(max) = v.max_duplicate_share
        && rows > 0
        && duplicates as f64 / rows as f64 > max
    {
        let share = duplicates as f64 / rows as f64;
        found.add("", AnomalyKind::DuplicateRows, None, blocks, || {
            format!("{duplicates} rows ({:.2}%) repeat an earlier row, over max_duplicate_share {max}", share * 100.0)
        });
    }
    if let Some(min) = v.min_label_share
        && let Some(labels) = &pass.labels
        && rows > 0
    {
        let positives = labels.positives();
        let rarer = positives.min(rows - positives.min(rows)) as f64 / rows as f64;
        if rarer < min {
            found.add(&spec.target.name, AnomalyKind::LabelBalance, None, blocks, || {
                format!("the rarer class is {:.2}% of rows, under min_label_share {min}", rarer * 100.0)
            });
        }
    }
}

/// The schema record: each of the file's columns, the Arrow type it was read as and its role.
struct SchemaRecord {
    /// Each column's name and the type the file's schema gives it.
    declared: Vec<(String, DataType)>,
    /// The type each column was read as, once a batch is read (mixed batches read as text).
    read: Vec<Option<DataType>>,
}

impl SchemaRecord {
    fn new(batches: &Batches) -> Self {
        let fields = batches.schema.fields();
        Self {
            declared: fields.iter().map(|f| (f.name().clone(), f.data_type().clone())).collect(),
            read: vec![None; fields.len()],
        }
    }

    fn note_types(&mut self, batch: &RecordBatch) {
        for (seen, column) in self.read.iter_mut().zip(batch.columns()) {
            let t = column.data_type();
            match seen {
                None => *seen = Some(t.clone()),
                Some(s) if s != t => *s = DataType::Utf8,
                Some(_) => {}
            }
        }
    }

    fn finish(self, spec: &PipelineSpec) -> Vec<pb::SchemaField> {
        self.declared
            .into_iter()
            .zip(self.read)
            .map(|((name, declared), read)| pb::SchemaField {
                r#type: read.unwrap_or(declared).to_string(),
                role: ColumnRole::of(spec, &name).as_str().into(),
                name,
            })
            .collect()
    }
}

/// What a column of the dataset is to the pipeline, as the profile's schema names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRole {
    /// A model input.
    Feature,
    /// A column the spec checks but the model does not read (an id, a timestamp).
    Checked,
    /// The label.
    Target,
    /// A column the spec does not declare.
    Extra,
}

impl ColumnRole {
    /// The role of column `name` under `spec`.
    pub fn of(spec: &PipelineSpec, name: &str) -> Self {
        if spec.feature(name).is_some() {
            Self::Feature
        } else if spec.checked_column(name).is_some() {
            Self::Checked
        } else if name == spec.target.name {
            Self::Target
        } else {
            Self::Extra
        }
    }

    /// The name the profile's schema carries.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Feature => "feature",
            Self::Checked => "checked",
            Self::Target => "target",
            Self::Extra => "extra",
        }
    }
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
        let text = super::validate(batches, spec, None, Environment::Training, Origin::Upload);
        let findings = |r: &Report| (r.rows, r.columns.clone(), r.profile.columns.clone());
        assert_eq!(findings(&typed), findings(&text), "typed and text reads disagree");
        typed
    }

    fn validate_against(bytes: &[u8], spec: &PipelineSpec, previous: Option<&pb::DatasetProfile>) -> Report {
        let source = mlops_data::Source::Bytes(bytes.to_vec().into());
        let batches = mlops_data::open_typed(source, "", &Default::default(), &spec.numeric_features());
        super::validate(batches, spec, previous, Environment::Training, Origin::Upload)
    }

    fn anomaly<'a>(r: &'a Report, column: &str, kind: AnomalyKind) -> &'a pb::Anomaly {
        r.columns
            .iter()
            .find(|c| c.column == column)
            .and_then(|c| c.anomalies.iter().find(|a| a.kind == kind.as_str()))
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

    /// `rows` rows of the spec's columns and, after them, `extra` columns made by `value(column, row)`.
    fn with_columns(rows: usize, extra: &[&str], value: impl Fn(&str, usize) -> String) -> Vec<u8> {
        let mut csv = format!("tenure,charges,contract,churned,{}\n", extra.join(","));
        for i in 0..rows {
            let cells: Vec<String> = extra.iter().map(|c| value(c, i)).collect();
            csv += &format!("{},{},monthly,{},{}\n", i % 90, i as f64 * 1.5, i % 2, cells.join(","));
        }
        csv.into_bytes()
    }

    #[test]
    fn personal_data_is_found_in_every_column_and_judged_by_its_policy_without_quoting_a_value() {
        let spec = PipelineSpec::from_yaml(&format!(
            "{SPEC}columns:\n\
             - {{name: phone, type: categorical}}\n\
             - {{name: card, type: categorical, categories: [none], pii: forbid}}\n\
             - {{name: iban, type: categorical, pii: allow, purpose: refunds}}\n\
             - {{name: ref, type: categorical}}\n"
        ))
        .unwrap();
        let csv = with_columns(20, &["email", "phone", "card", "iban", "ref"], |column, i| match column {
            "email" => format!("user{i}@example.org"),
            "phone" => format!("+44 20 7946 {:04}", 1000 + i),
            "card" => "4111 1111 1111 1111".into(),
            "iban" => "DE89370400440532013000".into(),
            // Sixteen digits, but not a card number's first digit.
            _ => format!("{}", 1_000_000_000_000_000u64 + i as u64),
        });
        let r = validate(&csv, &spec);
        assert!(r.blocked());
        let email = anomaly(&r, "email", AnomalyKind::PersonalData);
        assert!(email.blocking && email.message.contains("(email in 100.0% of 20 values) and is not in the spec"));
        assert_eq!((email.count, email.example_rows.clone()), (20, vec![1, 2, 3, 4, 5]));
        let phone = anomaly(&r, "phone", AnomalyKind::PersonalData);
        assert!(phone.blocking && phone.message.contains("(phone in 100.0% of 20 values) with no `pii` policy"));
        let card = anomaly(&r, "card", AnomalyKind::PersonalData);
        assert!(card.blocking && card.message.contains("which its `pii: forbid` refuses"), "{}", card.message);
        let iban = anomaly(&r, "iban", AnomalyKind::PersonalData);
        assert!(!iban.blocking && iban.message.ends_with("allowed for: refunds"), "{}", iban.message);
        assert!(r.columns.iter().all(|c| c.column != "ref"), "{r:#?}");
        // The card's unknown categories and the profiles of every personal column keep no value.
        let unknown = anomaly(&r, "card", AnomalyKind::UnknownCategory);
        assert_eq!(unknown.message, "unknown_category in 20 rows (values withheld: the column holds personal data)");
        let everything = format!("{:?} {:?} {}", r.columns, r.profile, r.summary());
        for value in ["example.org", "7946", "4111", "DE89"] {
            assert!(!everything.contains(value), "{value} in {everything}");
        }
    }

    #[test]
    fn a_column_holds_personal_data_from_its_min_share_and_a_spec_names_national_ids() {
        let csv = with_columns(20, &["note", "code"], |column, i| match (column, i) {
            ("note", 0) => "ada@example.org".into(),
            ("note", _) => format!("fine {i}"),
            _ => format!("{:03}-{:02}-{:04}", 100 + i, 10 + i, 1000 + i),
        });
        let declared = "columns: [{name: note, type: categorical}, {name: code, type: categorical}]\n";
        let r = validate(&csv, &PipelineSpec::from_yaml(&format!("{SPEC}{declared}")).unwrap());
        // One e-mail address in twenty values is under the default share, and codes in three
        // groups of nine digits are not phone numbers.
        assert!(r.columns.iter().all(|c| c.column != "note" && c.column != "code"), "{r:#?}");
        let strict = "validation: {personal_data: {min_share: 0.05, national_ids: {us_ssn: '\\d{3}-\\d{2}-\\d{4}'}}}\n";
        let r = validate(&csv, &PipelineSpec::from_yaml(&format!("{SPEC}{declared}{strict}")).unwrap());
        assert!(anomaly(&r, "note", AnomalyKind::PersonalData).message.contains("email in 5.0% of 20 values"));
        let code = anomaly(&r, "code", AnomalyKind::PersonalData);
        assert!(code.message.contains("(national_id:us_ssn in 100.0% of 20 values)"), "{}", code.message);
        // No tolerance of the column lets personal data through.
        let tolerant = declared
            .replace("{name: code, type: categorical}", "{name: code, type: categorical, severity: warn, mostly: 0.5}");
        let r = validate(&csv, &PipelineSpec::from_yaml(&format!("{SPEC}{tolerant}{strict}")).unwrap());
        assert!(anomaly(&r, "code", AnomalyKind::PersonalData).blocking);
    }

    #[test]
    fn every_kind_of_bad_cell_is_reported_per_column() {
        let csv = "tenure,charges,contract,churned\n\
                   -1,abc,weekly,1\n\
                   ,inf,monthly,maybe\n\
                   200,1,monthly,0\n";
        let r = validate(csv.as_bytes(), &spec());
        assert!(r.blocked());
        let range = anomaly(&r, "tenure", AnomalyKind::OutOfRange);
        assert_eq!((range.count, range.example_rows.clone()), (2, vec![1, 3]));
        assert_eq!(anomaly(&r, "tenure", AnomalyKind::NullValues).example_rows, vec![2]);
        assert_eq!(anomaly(&r, "charges", AnomalyKind::TypeMismatch).message, "\"abc\" is not a number");
        assert_eq!(anomaly(&r, "charges", AnomalyKind::NotFinite).count, 1);
        assert!(anomaly(&r, "contract", AnomalyKind::UnknownCategory).message.contains("weekly"));
        assert_eq!(anomaly(&r, "churned", AnomalyKind::UnknownLabel).count, 1);
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
        let a = anomaly(&bad, "churned", AnomalyKind::UnknownLabel);
        assert_eq!((a.count, a.example_rows.clone()), (2, vec![1, 2]));
        assert!(a.message.contains("finite numbers") && a.message.contains("cheap"), "{}", a.message);
    }

    #[test]
    fn numeric_classes_match_by_value_and_count_as_one_class() {
        let spec = PipelineSpec::from_yaml(
            &SPEC.replace("target: {name: churned}", "target: {name: churned, positive: \"1.0\", negative: \"0.0\"}"),
        )
        .unwrap();
        let csv = "tenure,charges,contract,churned\n1,,monthly,1.0\n2,,monthly,1\n3,,yearly,0.00\n4,,yearly,0\n";
        let good = validate(csv.as_bytes(), &spec);
        assert!(!good.blocked(), "{good:#?}");
        let label = &good.profile.columns[3];
        assert_eq!((label.count, label.distinct), (4, 2), "{label:#?}");
        // A number that is not a class is refused, naming the classes.
        let bad = validate(b"tenure,charges,contract,churned\n1,,monthly,2.0\n2,,monthly,1\n", &spec);
        let a = anomaly(&bad, "churned", AnomalyKind::UnknownLabel);
        assert_eq!((a.count, a.example_rows.clone()), (1, vec![1]));
        assert!(a.message.contains("\"2.0\"") && a.message.contains("compared as numbers"), "{}", a.message);
    }

    #[test]
    fn structural_problems_block() {
        let missing = validate(b"tenure,charges,churned\n1,2,1\n", &spec());
        assert!(anomaly(&missing, "contract", AnomalyKind::MissingColumn).blocking);
        let ragged = validate(b"tenure,charges,contract,churned\n1,2\n", &spec());
        assert!(ragged.summary().contains("malformed CSV"), "{}", ragged.summary());
        let empty = validate(b"tenure,charges,contract,churned\n", &spec());
        assert_eq!(anomaly(&empty, "", AnomalyKind::EmptyDataset).kind, "empty_dataset");
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

    /// `tenure` decides the label; `charges` is a pattern the label does not follow. Each
    /// feature's power is profiled; a `min_power` the noise does not reach blocks the data (a
    /// warning under `severity: warn`), and the message names the measures, never a value.
    #[test]
    fn each_feature_is_profiled_with_its_power_and_a_weak_one_fails_its_min_power() {
        let data = rows(400, |i| {
            format!("{},{},{},{}", i % 100, (i * 37) % 11, ["monthly", "yearly"][i % 2], u8::from(i % 100 >= 60))
        });
        let r = validate(&data, &spec());
        let power = |r: &Report, name: &str| {
            let p = r.profile.columns.iter().find(|c| c.name == name).unwrap();
            (p.power.unwrap(), p.mutual_information.unwrap())
        };
        assert_eq!(power(&r, "tenure").0, 1.0);
        assert!(power(&r, "tenure").1 > 0.9, "{:?}", power(&r, "tenure"));
        assert!(power(&r, "charges").0 < 0.1 && power(&r, "contract").0 < 0.1, "{:?}", r.profile.columns);
        assert!(r.profile.columns.iter().find(|c| c.name == "churned").unwrap().power.is_none());
        assert!(!r.blocked(), "{}", r.summary());
        let demanding = SPEC.replace(
            "{name: charges, type: numeric, nullable: true}",
            "{name: charges, type: numeric, nullable: true, min_power: 0.2}",
        );
        let r = validate(&data, &PipelineSpec::from_yaml(&demanding).unwrap());
        assert!(r.blocked());
        let a = anomaly(&r, "charges", AnomalyKind::LowPower);
        assert!(a.message.starts_with("`charges` alone explains little of the label: power 0.0"), "{}", a.message);
        assert!(a.message.ends_with("on 400 sampled rows, under `min_power` 0.2"), "{}", a.message);
        let lenient = demanding.replace("min_power: 0.2}", "min_power: 0.2, severity: warn}");
        let r = validate(&data, &PipelineSpec::from_yaml(&lenient).unwrap());
        assert!(!r.blocked() && !anomaly(&r, "charges", AnomalyKind::LowPower).blocking);
        // Serving data has no labels: nothing is measured, nothing blocks.
        let serving = String::from_utf8(data)
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_owned() + "\n")
            .collect::<String>();
        let source = mlops_data::Source::Bytes(serving.into_bytes().into());
        let batches = mlops_data::open(source, "", &Default::default());
        let r = super::validate(
            batches,
            &PipelineSpec::from_yaml(&demanding).unwrap(),
            None,
            Environment::Serving,
            Origin::Upload,
        );
        assert!(!r.blocked() && r.profile.columns.iter().all(|c| c.power.is_none()), "{}", r.summary());
    }

    /// One e-mail address among a hundred contracts is under `min_share`: the column does not
    /// hold personal data, but the address is quoted nowhere (the unknown category, the profile).
    #[test]
    fn a_stray_personal_value_under_min_share_is_never_quoted() {
        let data = rows(100, |i| format!("{i},1,{},{}", if i == 3 { "ann@example.com" } else { "monthly" }, i % 2));
        let r = validate(&data, &spec());
        let a = anomaly(&r, "contract", AnomalyKind::UnknownCategory);
        assert!(a.message.contains("(withheld: personal data)"), "{}", a.message);
        let everything = format!("{:?} {:?}", r.columns, r.profile);
        assert!(!everything.contains("ann@"), "{everything}");
        assert!(r.columns.iter().all(|c| c.anomalies.iter().all(|a| a.kind != "personal_data")), "{:?}", r.columns);
    }

    #[test]
    fn tolerances_and_severity_turn_blocks_into_warnings() {
        let one_bad = rows(100, |i| format!("{},1,monthly,{}", if i == 7 { 500 } else { 5 }, i % 2));
        assert!(validate(&one_bad, &spec()).blocked());
        let tolerant = PipelineSpec::from_yaml(&SPEC.replace("max: 100}", "max: 100, mostly: 0.95}")).unwrap();
        let r = validate(&one_bad, &tolerant);
        assert!(!r.blocked(), "{r:#?}");
        assert!(
            anomaly(&r, "tenure", AnomalyKind::OutOfRange).message.contains("99.00% of rows pass, within mostly 0.95")
        );
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
        assert_eq!(anomaly(&validate(&few, &s), "", AnomalyKind::RowCount).message, "10 rows, fewer than min_rows 50");
        let dups = rows(100, |i| format!("{},1,monthly,{}", i % 50, i % 2));
        assert!(anomaly(&validate(&dups, &s), "", AnomalyKind::DuplicateRows).message.contains("50 rows (50.00%)"));
        let skewed = rows(100, |i| format!("{i},1,monthly,{}", u8::from(i < 5)));
        assert!(anomaly(&validate(&skewed, &s), "churned", AnomalyKind::LabelBalance).message.contains("5.00%"));
        let clean = rows(100, |i| format!("{i},1,monthly,{}", i % 2));
        assert!(!validate(&clean, &s).blocked());
        let unique = PipelineSpec::from_yaml(&SPEC.replace("max: 100}", "max: 100, unique: true}")).unwrap();
        let r = validate(&dups, &unique);
        assert_eq!(anomaly(&r, "tenure", AnomalyKind::NotUnique).count, 50);
    }

    #[test]
    fn drift_against_the_previous_version() {
        let drifty = SPEC
            .replace("max: 100}", "max: 100, max_js_divergence: 0.1}")
            .replace("categories: [monthly, yearly]}", "categories: [monthly, yearly], max_share_shift: 0.2}");
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
        let tenure = &anomaly(&r, "tenure", AnomalyKind::Drift).message;
        assert!(
            tenure.starts_with("Jensen–Shannon divergence (base 2) ") && tenure.ends_with("over max_js_divergence 0.1")
        );
        let contract = &anomaly(&r, "contract", AnomalyKind::Drift).message;
        assert!(contract.starts_with("largest change of a category's share 0.4000 "), "{contract}");
    }

    #[test]
    fn serving_data_may_lack_the_label_and_the_schema_is_recorded() {
        let csv = b"tenure,charges,contract,note\n1,,monthly,x\n5,3.5,yearly,y\n";
        let training = validate_in(csv, &spec(), Environment::Training);
        assert_eq!(
            anomaly(&training, "churned", AnomalyKind::MissingColumn).message,
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
        assert_eq!(anomaly(&labelled, "churned", AnomalyKind::UnknownLabel).count, 1);
        // A numeric column with a cell that is not a number reads as text, and says so.
        let odd = validate_in(b"tenure,charges,contract,churned\n1,abc,monthly,1\n", &spec(), Environment::Training);
        assert_eq!(odd.profile.schema[1].r#type, "Utf8");
        assert_eq!(odd.profile.schema[3].role, "target");
    }

    fn validate_in(bytes: &[u8], spec: &PipelineSpec, environment: Environment) -> Report {
        validate_from(bytes, spec, environment, Origin::Upload)
    }

    fn validate_from(bytes: &[u8], spec: &PipelineSpec, environment: Environment, origin: Origin) -> Report {
        let source = mlops_data::Source::Bytes(bytes.to_vec().into());
        super::validate(
            mlops_data::open_typed(source, "", &Default::default(), &spec.numeric_features()),
            spec,
            None,
            environment,
            origin,
        )
    }

    #[test]
    fn a_feedback_version_names_its_predictions_without_a_warning_and_an_upload_is_warned() {
        let csv = b"tenure,charges,contract,churned,prediction_id,model_version,predicted_at\n1,2,monthly,1,p1,3,5\n";
        let extra = |r: &Report| {
            r.columns
                .iter()
                .filter(|c| c.anomalies.iter().any(|a| a.kind == AnomalyKind::ExtraColumn.as_str()))
                .map(|c| c.column.clone())
                .collect::<Vec<_>>()
        };
        let feedback = validate_from(csv, &spec(), Environment::Training, Origin::Feedback);
        assert!(!feedback.blocked() && extra(&feedback).is_empty(), "{feedback:#?}");
        let upload = validate_from(csv, &spec(), Environment::Training, Origin::Upload);
        assert_eq!(extra(&upload), ["model_version", "predicted_at", "prediction_id"]);
        // Columns the spec only checks (an id, say) were never sent to the model: not missing.
        let with_id =
            PipelineSpec::from_yaml(&format!("{SPEC}columns:\n  - {{name: id, type: categorical}}\n")).unwrap();
        assert!(!validate_from(csv, &with_id, Environment::Training, Origin::Feedback).blocked());
        assert!(validate_from(csv, &with_id, Environment::Training, Origin::Upload).blocked());
    }

    #[test]
    fn checked_columns_with_a_pattern_an_open_domain_and_uniqueness() {
        let extra = "columns:\n  - {name: id, type: categorical, regex: \"C[0-9]{3}\", unique: true}\n";
        let s = PipelineSpec::from_yaml(&format!("{SPEC}{extra}")).unwrap();
        let csv = "id,tenure,charges,contract,churned\nC001,1,,monthly,1\nX02,2,,monthly,0\nC001,3,,yearly,1\nC004,4,,yearly,0\n";
        let r = validate(csv.as_bytes(), &s);
        let pattern = anomaly(&r, "id", AnomalyKind::PatternMismatch);
        assert_eq!((pattern.count, pattern.example_rows.clone()), (1, vec![2]));
        assert_eq!(pattern.message, "\"X02\" does not match \"C[0-9]{3}\"");
        assert_eq!(anomaly(&r, "id", AnomalyKind::NotUnique).example_rows, vec![3]);
        assert!(
            r.columns.iter().all(|c| c.anomalies.iter().all(|a| a.kind != AnomalyKind::UnknownCategory.as_str())),
            "{r:#?}"
        );
        assert!(
            r.columns
                .iter()
                .all(|c| c.column != "id" || c.anomalies.iter().all(|a| a.kind != AnomalyKind::ExtraColumn.as_str()))
        );
        let id = r.profile.columns.iter().find(|c| c.name == "id").expect("profiled");
        assert_eq!(id.distinct, 3);
        assert_eq!(r.profile.schema[0].role, "checked");
        let missing = validate(b"tenure,charges,contract,churned\n1,,monthly,1\n", &s);
        assert!(anomaly(&missing, "id", AnomalyKind::MissingColumn).blocking);
    }
}
