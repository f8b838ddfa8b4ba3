//! The offline store's files: each accepted batch of a view, as Parquet, immutable. A file holds
//! the view's key columns (text), its event time and the write time (`_written_at`) as UTC
//! millisecond timestamps, and its features (float64 or text), so that pandas, polars or DuckDB
//! read it as it is.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use mlops_shared::spec::{FeatureKind, FeatureViewSpec};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::rows::{Written, read_batch};
use crate::{FeatureError, KEY_SEPARATOR, ViewRows};

/// The column holding when each row was written.
pub const WRITTEN_COLUMN: &str = "_written_at";

/// Rows per row group.
const GROUP_ROWS: usize = 64 * 1024;

/// The name of a batch's file in the `features` bucket: the view, then the batch's write time
/// (zero-padded, so names sort in write order) and the dataset it came from (so that writing it
/// again names the same file).
pub fn object_name(view: &str, written_ms: i64, dataset: &str) -> String {
    format!("{}{dataset}.parquet", written_prefix(view, written_ms))
}

/// How the names of a view's files written at `written_ms` begin.
pub fn written_prefix(view: &str, written_ms: i64) -> String {
    format!("{view}/{written_ms:013}-")
}

/// The view a file name belongs to, and its write time.
pub fn parse_object_name(name: &str) -> Option<(&str, i64)> {
    let (view, file) = name.split_once('/')?;
    let written = file.split_once('-')?.0.parse().ok()?;
    Some((view, written))
}

/// How a feature of `kind` is stored: float64 or text.
pub(crate) fn arrow_type(kind: FeatureKind) -> DataType {
    match kind {
        FeatureKind::Numeric => DataType::Float64,
        FeatureKind::Categorical => DataType::Utf8,
    }
}

fn schema(view: &FeatureViewSpec) -> Arc<Schema> {
    let time = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields: Vec<Field> = view.entities.iter().map(|k| Field::new(k, DataType::Utf8, false)).collect();
    fields.push(Field::new(&view.event_time, time(), false));
    fields.push(Field::new(WRITTEN_COLUMN, time(), false));
    fields.extend(view.features.iter().map(|f| Field::new(&f.name, arrow_type(f.kind), true)));
    Arc::new(Schema::new(fields))
}

/// Writes `rows` of `view` as one offline file.
pub fn write(view: &FeatureViewSpec, rows: &ViewRows, to: impl std::io::Write + Send) -> Result<(), FeatureError> {
    let schema = schema(view);
    let err = |e: parquet::errors::ParquetError| FeatureError::Offline(e.to_string());
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(GROUP_ROWS))
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer = ArrowWriter::try_new(to, schema.clone(), Some(props)).map_err(err)?;
    for start in (0..rows.len()).step_by(GROUP_ROWS) {
        let range = start..(start + GROUP_ROWS).min(rows.len());
        let batch = RecordBatch::try_new(schema.clone(), arrays(view, rows, range))
            .map_err(|e| FeatureError::Offline(e.to_string()))?;
        writer.write(&batch).map_err(err)?;
    }
    writer.close().map_err(err)?;
    Ok(())
}

fn arrays(view: &FeatureViewSpec, rows: &ViewRows, range: std::ops::Range<usize>) -> Vec<ArrayRef> {
    let mut arrays: Vec<ArrayRef> = (0..view.entities.len())
        .map(|part| {
            let values = rows.keys[range.clone()].iter().map(|k| k.split(KEY_SEPARATOR).nth(part).unwrap_or(""));
            Arc::new(StringArray::from_iter_values(values)) as ArrayRef
        })
        .collect();
    for times in [&rows.event_ms, &rows.written_ms] {
        let t = TimestampMillisecondArray::from_iter_values(times[range.clone()].iter().copied()).with_timezone("UTC");
        arrays.push(Arc::new(t));
    }
    arrays.extend(rows.columns.iter().map(|c| mlops_data::column_array(c, range.clone())));
    arrays
}

/// An offline file's batches, decoded a batch or two ahead on another core.
pub fn batches(
    file: mlops_data::Source,
) -> Result<impl Iterator<Item = Result<RecordBatch, FeatureError>> + Send + 'static, FeatureError> {
    let batches = mlops_data::open(file, "offline.parquet", &mlops_data::Limits::default())?.read_ahead(2);
    Ok(batches.map(|b| b.map_err(FeatureError::from)))
}

/// Reads an offline file of `view` onto `into`. A feature the file predates (the view gained it
/// later) reads as missing.
pub fn read(view: &FeatureViewSpec, file: mlops_data::Source, into: &mut ViewRows) -> Result<(), FeatureError> {
    let mut first_row = 0;
    for batch in batches(file)? {
        let batch = with_missing_features(view, batch?)?;
        read_batch(view, &batch, first_row, Written::Column(WRITTEN_COLUMN), into)?;
        first_row += batch.num_rows();
    }
    Ok(())
}

fn with_missing_features(view: &FeatureViewSpec, batch: RecordBatch) -> Result<RecordBatch, FeatureError> {
    let absent: Vec<_> = view.features.iter().filter(|f| batch.column_by_name(&f.name).is_none()).collect();
    if absent.is_empty() {
        return Ok(batch);
    }
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    for f in absent {
        columns.push(new_null_array(&arrow_type(f.kind), batch.num_rows()));
        fields.push(Field::new(&f.name, arrow_type(f.kind), true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| FeatureError::Offline(e.to_string()))
}

#[cfg(test)]
mod tests {
    use mlops_shared::table::{Column, Value};

    use super::*;

    pub(crate) fn view() -> FeatureViewSpec {
        FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: stats\nentities: [shop, customer]\nevent_time: ts\nttl: 1d\nfeatures:\n\
             - {name: spend, type: numeric, nullable: true}\n\
             - {name: tier, type: categorical, categories: [a, b], nullable: true}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_batch_reads_back_as_written_and_names_sort_in_write_order() {
        let view = view();
        let rows = ViewRows {
            keys: vec![format!("s1{KEY_SEPARATOR}c1"), format!("s1{KEY_SEPARATOR}c2")],
            event_ms: vec![1_000, 2_000],
            written_ms: vec![5_000, 5_000],
            columns: vec![Column::Numeric(vec![Some(1.5), None]), Column::Categorical(vec![None, Some("b".into())])],
        };
        let mut bytes = Vec::new();
        write(&view, &rows, &mut bytes).unwrap();
        let mut back = ViewRows::empty(&view);
        read(&view, mlops_data::Source::Bytes(bytes.into()), &mut back).unwrap();
        assert_eq!(back, rows);
        assert_eq!(back.values(1), [Value::Missing, Value::Cat("b".into())]);
        let (a, b) = (object_name("stats", 999, "ab"), object_name("stats", 1_000, "aa"));
        assert!(a < b, "{a} {b}");
        assert_eq!(parse_object_name(&b), Some(("stats", 1_000)));
    }

    #[test]
    fn a_feature_added_to_the_view_later_reads_as_missing_from_older_files() {
        let old = view();
        let rows = ViewRows {
            keys: vec![format!("s{KEY_SEPARATOR}c")],
            event_ms: vec![1],
            written_ms: vec![2],
            columns: vec![Column::Numeric(vec![Some(3.0)]), Column::Categorical(vec![Some("a".into())])],
        };
        let mut bytes = Vec::new();
        write(&old, &rows, &mut bytes).unwrap();
        let mut new = old.clone();
        new.features.push(mlops_shared::spec::FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: x\nentities: [k]\nevent_time: t\nfeatures: [{name: visits, type: numeric}]\n",
        )
        .unwrap()
        .features[0]
            .clone());
        let mut back = ViewRows::empty(&new);
        read(&new, mlops_data::Source::Bytes(bytes.into()), &mut back).unwrap();
        assert_eq!(back.values(0), [Value::Num(3.0), Value::Cat("a".into()), Value::Missing]);
    }
}
