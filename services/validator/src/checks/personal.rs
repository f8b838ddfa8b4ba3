//! Personal data in every column of the data, declared or not ([`mlops_shared::pii`]). Each
//! column's values are classed as the batches stream by; once all are read, a column where one
//! kind makes up at least `validation.personal_data.min_share` of the non-empty values holds
//! personal data. Its spec then decides: no policy (or no entry at all) rejects the version, and
//! so does `pii: forbid`; `pii: allow` admits it with a warning stating the purpose. Reports name
//! the column, the kinds and their shares and a few row numbers, never a value.
//!
//! Numbers stored as floating point are not classed: no kind of personal data is a fraction, and
//! a card number no longer has all its digits as a double.

use mlops_data::{Batches, ColumnView, RecordBatch, view};
use mlops_proto as pb;
use mlops_shared::pii::Detector;
use mlops_shared::spec::{FeatureSpec, PiiPolicy, PipelineSpec};

use super::anomalies::{AnomalyKind, EXAMPLES, Findings};

/// One column's classed values so far. Narrower integers than 64 bits are not classed: they are
/// too short for a card number.
pub(super) struct Scan<'s> {
    name: String,
    index: usize,
    /// The spec's entry for the column; `None` for one the spec does not declare (or the target).
    declared: Option<&'s FeatureSpec>,
    /// Non-empty values seen.
    values: u64,
    /// Values of each kind.
    found: Vec<u64>,
    /// The first rows (1-based) holding personal data.
    rows: Vec<u64>,
}

/// A scan for every column of `schema`.
pub(super) fn scans<'s>(spec: &'s PipelineSpec, batches: &Batches, detector: &Detector) -> Vec<Scan<'s>> {
    batches
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, f)| Scan {
            name: f.name().clone(),
            index,
            declared: spec.checked_column(f.name()),
            values: 0,
            found: vec![0; detector.kinds()],
            rows: Vec::new(),
        })
        .collect()
}

impl Scan<'_> {
    /// Classes the column's values in one batch; `offset` is the number of rows before it.
    pub(super) fn run(&mut self, detector: &Detector, batch: &RecordBatch, offset: usize) {
        match view(batch.column(self.index)) {
            ColumnView::Utf8(a) => self.add_all(detector, a.iter(), offset),
            ColumnView::LargeUtf8(a) => self.add_all(detector, a.iter(), offset),
            ColumnView::Utf8View(a) => self.add_all(detector, a.iter(), offset),
            ColumnView::I64(a) => self.add_integers(detector, a.iter().map(|v| v.map(i128::from)), offset),
            ColumnView::U64(a) => self.add_integers(detector, a.iter().map(|v| v.map(i128::from)), offset),
            _ => {}
        }
    }

    fn add_all<'a>(&mut self, detector: &Detector, values: impl Iterator<Item = Option<&'a str>>, offset: usize) {
        for (r, v) in values.enumerate() {
            let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else { continue };
            self.values += 1;
            if let Some(kind) = detector.classify(v) {
                self.count(kind, offset + r);
            }
        }
    }

    fn add_integers(&mut self, detector: &Detector, values: impl Iterator<Item = Option<i128>>, offset: usize) {
        for (r, v) in values.enumerate() {
            let Some(v) = v else { continue };
            self.values += 1;
            if let Some(kind) = detector.classify_integer(v) {
                self.count(kind, offset + r);
            }
        }
    }

    fn count(&mut self, kind: usize, row: usize) {
        self.found[kind] += 1;
        if self.rows.len() < EXAMPLES {
            self.rows.push(row as u64 + 1);
        }
    }

    /// The kinds the column holds, by the share of its values, as people read them
    /// (`email in 98.5% of 2000 values`); empty when it holds none.
    fn held(&self, detector: &Detector, min_share: f64) -> Vec<String> {
        let values = self.values.max(1) as f64;
        self.found
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0 && **n as f64 / values >= min_share)
            .map(|(kind, n)| {
                format!("{} in {:.1}% of {} values", detector.name(kind), *n as f64 * 100.0 / values, self.values)
            })
            .collect()
    }
}

/// Judges each column by its scan and its policy, adding `personal_data` findings, and returns
/// the columns whose values must stay out of reports and profiles: those holding personal data
/// and those declaring a policy.
pub(super) fn judge(found: &mut Findings, scans: Vec<Scan<'_>>, detector: &Detector, min_share: f64) -> Vec<String> {
    let mut withheld = Vec::new();
    for scan in scans {
        let held = scan.held(detector, min_share);
        let policy = scan.declared.and_then(|f| f.pii);
        if held.is_empty() {
            if policy.is_some() {
                withheld.push(scan.name);
            }
            continue;
        }
        let held = held.join(", ");
        let (blocking, message) = match (scan.declared, policy) {
            (None, _) => (
                true,
                format!(
                    "holds personal data ({held}) and is not in the spec: leave it out of the data, or declare it \
                     with `pii: forbid` or `pii: allow` and a `purpose`"
                ),
            ),
            (Some(_), None) => (
                true,
                format!(
                    "holds personal data ({held}) with no `pii` policy: declare `pii: forbid`, or `pii: allow` and a `purpose`"
                ),
            ),
            (Some(_), Some(PiiPolicy::Forbid)) => {
                (true, format!("holds personal data ({held}), which its `pii: forbid` refuses"))
            }
            (Some(_), Some(PiiPolicy::Pseudonymise)) => (
                true,
                format!(
                    "holds personal data ({held}) although its `pii: pseudonymise` has ingest replace the values \
                     before they are stored: this version was stored before the spec said so; send the data again"
                ),
            ),
            (Some(f), Some(PiiPolicy::Allow)) => (
                false,
                format!("holds personal data ({held}), allowed for: {}", f.purpose.as_deref().unwrap_or_default()),
            ),
        };
        let count = scan.found.iter().sum();
        let anomaly = pb::Anomaly {
            kind: AnomalyKind::PersonalData.as_str().into(),
            message,
            count,
            example_rows: scan.rows,
            blocking,
        };
        found.report(&scan.name, AnomalyKind::PersonalData, anomaly);
        withheld.push(scan.name);
    }
    withheld
}
