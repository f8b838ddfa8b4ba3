//! Writing Parquet: the hand-over of a training window to a team's own training program
//! (`MLOPS_TRAIN_DATA`), which reads it with pandas, polars or pyarrow; and the monitor's feedback
//! versions, labelled production predictions that become training data.

use std::sync::Arc;

use arrow_array::{
    Array as _, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use mlops_shared::spec::{FEEDBACK_COLUMNS, PipelineSpec, Task};
use mlops_shared::table::{Column, Frame};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::cell::{text, view};
use crate::read::{Batches, DataError};

/// Rows per record batch (and row group) written.
const BATCH_ROWS: usize = 64 * 1024;

/// Writes `frame` (read under `spec`) to `to` as Parquet: each feature by its spec name — numeric
/// as float64, categorical as string, missing as null — then the target: 0/1 as int64 for a
/// classifier (1 the positive class), float64 for regression.
pub fn write_parquet(spec: &PipelineSpec, frame: &Frame, to: impl std::io::Write + Send) -> Result<(), DataError> {
    let classifier = spec.target.task == Task::BinaryClassification;
    let mut fields = feature_fields(spec, frame);
    if frame.target.is_some() {
        let kind = if classifier { DataType::Int64 } else { DataType::Float64 };
        fields.push(Field::new(spec.target.name.as_str(), kind, false));
    }
    let columns = |rows: std::ops::Range<usize>| {
        let mut arrays: Vec<ArrayRef> = frame.columns.iter().map(|c| column_array(c, rows.clone())).collect();
        if let Some(target) = &frame.target {
            let t = &target[rows];
            arrays.push(if classifier {
                Arc::new(Int64Array::from_iter_values(t.iter().map(|&v| v as i64)))
            } else {
                Arc::new(Float64Array::from_iter_values(t.iter().copied()))
            });
        }
        arrays
    };
    write_table(fields, frame.rows, Vec::new(), columns, to)
}

/// The rows of a feedback version: production inputs, the labels that came for them, and the
/// predictions they belong to, row by row.
pub struct FeedbackRows<'a> {
    /// The inputs as the spec's features (no target).
    pub inputs: &'a Frame,
    /// The labels as they arrived (a class name, or a number for regression).
    pub labels: &'a [String],
    pub prediction_ids: &'a [String],
    pub model_versions: &'a [u64],
    /// When each prediction was made (Unix ms).
    pub predicted_ms: &'a [i64],
}

/// Writes a feedback version to `to` as Parquet, readable like any upload: the spec's features,
/// the target as labels came (text for a classifier, float64 for regression), then
/// [`FEEDBACK_COLUMNS`]: `prediction_id` (string), `model_version` (uint64) and `predicted_at`
/// (a UTC timestamp in ms). `metadata` goes into the file's key-value metadata. The same rows
/// make the same bytes.
pub fn write_feedback(
    spec: &PipelineSpec,
    rows: &FeedbackRows<'_>,
    metadata: Vec<(String, String)>,
    to: impl std::io::Write + Send,
) -> Result<(), DataError> {
    let classifier = spec.target.task == Task::BinaryClassification;
    let mut fields = feature_fields(spec, rows.inputs);
    let target_kind = if classifier { DataType::Utf8 } else { DataType::Float64 };
    fields.push(Field::new(spec.target.name.as_str(), target_kind, false));
    let [id, version, at] = FEEDBACK_COLUMNS;
    fields.push(Field::new(id, DataType::Utf8, false));
    fields.push(Field::new(version, DataType::UInt64, false));
    fields.push(Field::new(at, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false));
    let columns = |r: std::ops::Range<usize>| {
        let mut arrays: Vec<ArrayRef> = rows.inputs.columns.iter().map(|c| column_array(c, r.clone())).collect();
        let labels = &rows.labels[r.clone()];
        arrays.push(if classifier {
            Arc::new(StringArray::from_iter_values(labels))
        } else {
            let value = |l: &String| mlops_shared::table::parse_number(l).ok().flatten();
            Arc::new(Float64Array::from_iter(labels.iter().map(value)))
        });
        arrays.push(Arc::new(StringArray::from_iter_values(&rows.prediction_ids[r.clone()])));
        arrays.push(Arc::new(UInt64Array::from_iter_values(rows.model_versions[r.clone()].iter().copied())));
        arrays.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.predicted_ms[r].iter().copied()).with_timezone("UTC"),
        ));
        arrays
    };
    write_table(fields, rows.inputs.rows, metadata, columns, to)
}

/// The fields of `frame`'s features, by their spec names.
fn feature_fields(spec: &PipelineSpec, frame: &Frame) -> Vec<Field> {
    spec.features
        .iter()
        .zip(&frame.columns)
        .map(|(f, c)| {
            let kind = if matches!(c, Column::Numeric(_)) { DataType::Float64 } else { DataType::Utf8 };
            Field::new(f.name.as_str(), kind, true)
        })
        .collect()
}

/// Writes `rows` rows of `fields` to `to`, a record batch (and row group) at a time, the arrays
/// of each range of rows made by `columns`.
fn write_table(
    fields: Vec<Field>,
    rows: usize,
    metadata: Vec<(String, String)>,
    columns: impl Fn(std::ops::Range<usize>) -> Vec<ArrayRef>,
    to: impl std::io::Write + Send,
) -> Result<(), DataError> {
    let err = |e: parquet::errors::ParquetError| DataError::Parquet(e.to_string());
    let schema = Arc::new(Schema::new(fields));
    // Numbers are written plain: a dictionary rarely pays off for measurements, and building one
    // for every page doubled the time of a 1M-row hand-over. Categories keep theirs.
    let metadata = metadata.into_iter().map(|(key, value)| KeyValue::new(key, value)).collect();
    let mut props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_key_value_metadata(Some(metadata));
    for field in schema.fields().iter().filter(|f| f.data_type() != &DataType::Utf8) {
        props = props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
    }
    let mut writer = ArrowWriter::try_new(to, schema.clone(), Some(props.build())).map_err(err)?;
    for start in (0..rows).step_by(BATCH_ROWS) {
        let arrays = columns(start..(start + BATCH_ROWS).min(rows));
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| DataError::Parquet(e.to_string()))?;
        writer.write(&batch).map_err(err)?;
    }
    writer.close().map_err(err)?;
    Ok(())
}

/// Writes `batches` to `to` as Parquet, each of `columns` present replaced by the pseudonyms
/// of its values as text (`pseudonym` of the trimmed value; an empty cell stays empty), every
/// other column as it was read. Returns the rows written.
pub fn pseudonymise_to_parquet(
    batches: Batches,
    columns: &[&str],
    pseudonym: impl Fn(&str) -> String,
    to: impl std::io::Write + Send,
) -> Result<u64, DataError> {
    let err = |e: parquet::errors::ParquetError| DataError::Parquet(e.to_string());
    let targets: Vec<usize> = columns.iter().filter_map(|c| batches.schema.index_of(c).ok()).collect();
    let fields: Vec<Field> = batches
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(
            |(i, f)| if targets.contains(&i) { Field::new(f.name(), DataType::Utf8, true) } else { f.as_ref().clone() },
        )
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut writer = ArrowWriter::try_new(to, schema.clone(), None).map_err(err)?;
    let mut rows = 0;
    for batch in batches {
        let batch = batch?;
        let mut arrays = batch.columns().to_vec();
        for &i in &targets {
            let column = view(&arrays[i]);
            let hashed: StringArray = (0..batch.num_rows())
                .map(|r| {
                    let value = text(column.get(r));
                    (!value.is_empty()).then(|| pseudonym(&value))
                })
                .collect();
            arrays[i] = Arc::new(hashed);
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| DataError::Parquet(e.to_string()))?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(err)?;
    }
    writer.close().map_err(err)?;
    Ok(rows)
}

/// What [`erase_to_parquet`] wrote: the rows kept and the rows left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub kept: u64,
    pub removed: u64,
}

/// Writes `batches` to `to` as Parquet without the rows whose `column` `matches` (each cell as
/// [`text`] reads it, trimmed; an empty cell never matches), every column as it was read. A file
/// without the column keeps every row.
pub fn erase_to_parquet(
    batches: Batches,
    column: &str,
    matches: impl Fn(&str) -> bool,
    to: impl std::io::Write + Send,
) -> Result<Erased, DataError> {
    let err = |e: parquet::errors::ParquetError| DataError::Parquet(e.to_string());
    let target = batches.schema.index_of(column).ok();
    let mut writer = ArrowWriter::try_new(to, batches.schema.clone(), None).map_err(err)?;
    let mut erased = Erased { kept: 0, removed: 0 };
    for batch in batches {
        let batch = batch?;
        let read = batch.num_rows() as u64;
        let batch = match target {
            Some(i) => arrow_select::filter::filter_record_batch(&batch, &keep_unmatched(batch.column(i), &matches))
                .map_err(|e| DataError::Parquet(e.to_string()))?,
            None => batch,
        };
        erased.kept += batch.num_rows() as u64;
        erased.removed += read - batch.num_rows() as u64;
        writer.write(&batch).map_err(err)?;
    }
    writer.close().map_err(err)?;
    Ok(erased)
}

/// True for the rows of `column` to keep: those whose cell, as [`text`] reads it (trimmed; an
/// integral number without a fraction), does not `match`. An empty or missing cell never does.
pub fn keep_unmatched(column: &ArrayRef, matches: &dyn Fn(&str) -> bool) -> arrow_array::BooleanArray {
    let cells = view(column);
    (0..column.len())
        .map(|r| {
            let value = text(cells.get(r));
            Some(value.is_empty() || !matches(&value))
        })
        .collect()
}

/// Rows `rows` of `column` as an Arrow array: numbers as float64, categories as text, missing as
/// null.
pub fn column_array(column: &Column, rows: std::ops::Range<usize>) -> ArrayRef {
    match column {
        Column::Numeric(v) => Arc::new(Float64Array::from(v[rows].to_vec())),
        Column::Categorical(v) => Arc::new(StringArray::from_iter(v[rows].iter().map(Option::as_deref))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, read_frame};

    #[test]
    fn pseudonymised_columns_are_replaced_and_the_others_kept() {
        let csv = b"email,plan\n a@b.org ,basic\n,pro\nc@d.org,basic\n".to_vec();
        let batches = crate::open(Source::Bytes(csv.into()), "x.csv", &Default::default()).unwrap();
        let mut out = Vec::new();
        let rows = pseudonymise_to_parquet(batches, &["email", "absent"], |v| format!("h({v})"), &mut out).unwrap();
        assert_eq!(rows, 3);
        let mut back = crate::open(Source::Bytes(out.into()), "x.parquet", &Default::default()).unwrap();
        let batch = back.next().unwrap().unwrap();
        let column = |name: &str| -> Vec<String> {
            let c = view(batch.column(batch.schema().index_of(name).unwrap()));
            (0..batch.num_rows()).map(|r| text(c.get(r)).into_owned()).collect()
        };
        assert_eq!(column("email"), ["h(a@b.org)", "", "h(c@d.org)"]);
        assert_eq!(column("plan"), ["basic", "pro", "basic"]);
    }

    #[test]
    fn rows_whose_cell_matches_are_left_out_by_text_or_number() {
        let text: arrow_array::ArrayRef =
            std::sync::Arc::new(StringArray::from(vec![Some(" a@b.org "), None, Some("c@d.org")]));
        let keep = keep_unmatched(&text, &|v| v == "a@b.org");
        assert_eq!(keep.iter().collect::<Vec<_>>(), [Some(false), Some(true), Some(true)]);
        let numbers: arrow_array::ArrayRef = std::sync::Arc::new(Float64Array::from(vec![Some(7.0), Some(7.5), None]));
        let keep = keep_unmatched(&numbers, &|v| v == "7");
        assert_eq!(keep.iter().collect::<Vec<_>>(), [Some(false), Some(true), Some(true)]);
    }

    #[test]
    fn erasure_leaves_out_the_matching_rows_and_keeps_the_rest_as_read() {
        let csv = b"email,age\n a@b.org ,41\n,30\nc@d.org,25\na@b.org,50\n".to_vec();
        let batches = crate::open(Source::Bytes(csv.into()), "x.csv", &Default::default()).unwrap();
        let mut out = Vec::new();
        let erased = erase_to_parquet(batches, "email", |v| v == "a@b.org", &mut out).unwrap();
        assert_eq!(erased, Erased { kept: 2, removed: 2 });
        let mut back = crate::open(Source::Bytes(out.into()), "x.parquet", &Default::default()).unwrap();
        let batch = back.next().unwrap().unwrap();
        let column = |name: &str| -> Vec<String> {
            let c = view(batch.column(batch.schema().index_of(name).unwrap()));
            (0..batch.num_rows()).map(|r| text(c.get(r)).into_owned()).collect()
        };
        assert_eq!(column("email"), ["", "c@d.org"]);
        assert_eq!(column("age"), ["30", "25"]);
        // Numbers match by their text; a file without the column keeps every row.
        let csv = b"id,x\n7,1\n8,2\n".to_vec();
        let batches = crate::open(Source::Bytes(csv.clone().into()), "x.csv", &Default::default()).unwrap();
        let erased = erase_to_parquet(batches, "id", |v| v == "7", Vec::new()).unwrap();
        assert_eq!(erased, Erased { kept: 1, removed: 1 });
        let batches = crate::open(Source::Bytes(csv.into()), "x.csv", &Default::default()).unwrap();
        let erased = erase_to_parquet(batches, "absent", |_| true, Vec::new()).unwrap();
        assert_eq!(erased, Erased { kept: 2, removed: 0 });
    }

    #[test]
    fn a_frame_written_as_parquet_reads_back_the_same() {
        let spec = PipelineSpec::from_yaml(
            "name: t\nfeatures:\n  - {name: x, type: numeric}\n  - {name: c, type: categorical, categories: [a, b]}\ntarget: {name: y}\n",
        )
        .unwrap();
        let csv = b"x,c,y\n1.5,a,1\n,b,0\n-2,,1\n".to_vec();
        let read = |bytes: Vec<u8>, name: &str| {
            let batches = crate::open_typed(Source::Bytes(bytes.into()), name, &Default::default(), &["x"]).unwrap();
            read_frame(batches, &spec, true).unwrap()
        };
        let frame = read(csv, "d.csv");
        let mut out = Vec::new();
        write_parquet(&spec, &frame, &mut out).unwrap();
        assert_eq!(read(out, "d.parquet"), frame);
    }

    #[test]
    fn feedback_rows_read_back_as_training_data_and_the_same_rows_make_the_same_bytes() {
        for (classes, labels) in [("positive: yes, negative: no", ["yes", "no", "yes"]), ("", ["1", "0", "1"])] {
            let spec = PipelineSpec::from_yaml(&format!(
                "name: t\nfeatures:\n  - {{name: x, type: numeric}}\n  - {{name: c, type: categorical, categories: [a, b]}}\n\
                 target: {{name: y, {classes}}}\n"
            ))
            .unwrap();
            let inputs = Frame {
                columns: vec![
                    Column::Numeric(vec![Some(1.5), None, Some(-2.0)]),
                    Column::Categorical(vec![Some("a".into()), Some("b".into()), None]),
                ],
                target: None,
                rows: 3,
            };
            let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
            let ids: Vec<String> = (0..3).map(|i| format!("p{i}")).collect();
            let rows = FeedbackRows {
                inputs: &inputs,
                labels: &labels,
                prediction_ids: &ids,
                model_versions: &[1, 1, 2],
                predicted_ms: &[10, 20, 30],
            };
            let write = || {
                let mut out = Vec::new();
                write_feedback(&spec, &rows, vec![("mlops.feedback".into(), "1".into())], &mut out).unwrap();
                out
            };
            let bytes = write();
            assert_eq!(bytes, write());
            let batches =
                crate::open_typed(Source::Bytes(bytes.into()), "f.parquet", &Default::default(), &["x"]).unwrap();
            let names: Vec<String> = batches.schema.fields().iter().map(|f| f.name().clone()).collect();
            assert_eq!(names, ["x", "c", "y", "prediction_id", "model_version", "predicted_at"]);
            let frame = read_frame(batches, &spec, true).unwrap();
            assert_eq!(frame.target, Some(vec![1.0, 0.0, 1.0]), "classes {classes:?}");
            assert_eq!(frame.columns, inputs.columns);
        }
    }
}
