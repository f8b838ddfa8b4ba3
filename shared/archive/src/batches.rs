//! Batch jobs' outputs at rest: the rows a `batch.completed` names, written as archive files of
//! the hour the job was announced, in the same columns as served predictions (inputs as scored,
//! the answers, `model_version`, `artifact_sha256`, `predicted_at`; `stream_sequence` is null, as
//! the rows never went through the prediction log), so that they are found by id, exported and
//! expired with them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use mlops_proto as pb;
use mlops_shared::bus::decode_typed;
use mlops_shared::ids::Sha256;
use mlops_shared::objects::{ObjectError, Objects};

use crate::columns::{UTC, bloom_of, to_parquet};
use crate::manifest::BatchRows;
use crate::{ArchiveError, Encoded, FileEntry, OWN_COLUMNS, hour_of};

/// The store of batch outputs failed.
pub(crate) fn batch_store(e: &dyn std::fmt::Display) -> ArchiveError {
    ArchiveError::Store(format!("the batch outputs: {e}"))
}

/// A batch job done, as its `batch.completed` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub pipeline: String,
    pub batch_id: String,
    pub output_sha256: String,
    pub version: u64,
    pub artifact_sha256: String,
    pub rows: u64,
    /// When it was announced (Unix ms): its rows' `predicted_at` and partition hour.
    pub at_ms: i64,
    /// The announcement's sequence in the events stream.
    pub sequence: u64,
}

impl Job {
    /// Downloads this job's output to a temporary file, its sha256 checked, with the name errors
    /// give it (`batch B output S`): an output missing, altered or misnamed is
    /// [`ArchiveError::Unreadable`], a store that does not answer [`ArchiveError::Store`].
    pub(crate) async fn download_output(&self, objects: &Objects) -> Result<(std::fs::File, String), ArchiveError> {
        let name = format!("batch {} output {}", self.batch_id, self.output_sha256);
        let unreadable =
            |e: &dyn std::fmt::Display| ArchiveError::Unreadable { name: name.clone(), message: e.to_string() };
        let sha = Sha256::parse(self.output_sha256.clone()).map_err(|e| unreadable(&e))?;
        match objects.download_verified(&sha, &std::env::temp_dir()).await {
            Ok(file) => Ok((file, name)),
            Err(e @ ObjectError::Store { .. }) => Err(batch_store(&e)),
            Err(e) => Err(unreadable(&e)),
        }
    }

    /// The job a `batch.completed` message of the events stream announces.
    pub fn of_message(msg: &async_nats::jetstream::Message) -> Result<Self, String> {
        use mlops_shared::events::headers;
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
        let json = header(headers::CONTENT_TYPE).is_some_and(|ct| ct.starts_with(headers::JSON));
        let ce_type = header(headers::TYPE);
        let e = decode_typed::<pb::BatchCompleted>(&msg.payload, json, ce_type.as_deref())?;
        let info = msg.info().map_err(|e| e.to_string())?;
        Ok(Self {
            pipeline: e.pipeline,
            batch_id: e.batch_id,
            output_sha256: e.output_sha256,
            version: e.version,
            artifact_sha256: e.artifact_sha256,
            rows: e.rows,
            at_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
            sequence: info.stream_sequence,
        })
    }
}

/// How an output's columns become an archive file's.
struct Layout {
    /// Each input column: its index in the output, its archive name and type.
    inputs: Vec<(usize, String, DataType)>,
    ids: usize,
    /// `probability` or `prediction`.
    score: usize,
    label: Option<usize>,
    versions: usize,
    schema: Arc<Schema>,
}

fn dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

impl Layout {
    /// The layout of `output`, whose columns named in `numeric` (the pipeline's numeric
    /// features, which a CSV input holds as text) are archived as numbers like its number columns.
    fn of(output: &Schema, numeric: &[String]) -> Result<Self, String> {
        let index = |name: &str| output.index_of(name).ok();
        let need = |name: &str| index(name).ok_or_else(|| format!("the output has no `{name}` column"));
        let (ids, versions) = (need("prediction_id")?, need("model_version")?);
        let label = index("label");
        let score = match label {
            Some(_) => need("probability")?,
            None => need("prediction")?,
        };
        let answers = [Some(ids), Some(score), label, Some(versions)];
        // In name order, as served predictions' files have them.
        let inputs: BTreeMap<String, (usize, DataType)> = output
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !answers.contains(&Some(*i)))
            .map(|(i, f)| {
                let name = f.name();
                let name = if OWN_COLUMNS.contains(&name.as_str()) { format!("input.{name}") } else { name.clone() };
                let number = f.data_type().is_numeric() || numeric.contains(f.name());
                (name, (i, if number { DataType::Float64 } else { DataType::Utf8 }))
            })
            .collect();
        let inputs: Vec<(usize, String, DataType)> = inputs.into_iter().map(|(n, (i, t))| (i, n, t)).collect();
        let mut fields: Vec<Field> = inputs.iter().map(|(_, n, t)| Field::new(n, t.clone(), true)).collect();
        fields.push(Field::new("prediction_id", DataType::Utf8, false));
        fields.push(Field::new(if label.is_some() { "probability" } else { "prediction" }, DataType::Float64, false));
        if label.is_some() {
            fields.push(Field::new("label", dictionary(), false));
        }
        fields.push(Field::new("model_version", DataType::UInt64, false));
        fields.push(Field::new("artifact_sha256", dictionary(), false));
        fields.push(Field::new("predicted_at", DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())), false));
        fields.push(Field::new("stream_sequence", DataType::UInt64, true));
        Ok(Self { inputs, ids, score, label, versions, schema: Arc::new(Schema::new(fields)) })
    }

    /// `batch` of the output in the archive's columns.
    fn convert(&self, batch: &RecordBatch, job: &Job) -> Result<RecordBatch, ArrowError> {
        let rows = batch.num_rows();
        let cast = |i: usize, to: &DataType| arrow_cast::cast(batch.column(i), to);
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (i, _, to) in &self.inputs {
            columns.push(cast(*i, to)?);
        }
        columns.push(cast(self.ids, &DataType::Utf8)?);
        columns.push(cast(self.score, &DataType::Float64)?);
        if let Some(label) = self.label {
            columns.push(cast(label, &dictionary())?);
        }
        columns.push(cast(self.versions, &DataType::UInt64)?);
        let artifact = StringArray::from(vec![job.artifact_sha256.as_str()]);
        let keys = Int32Array::from(vec![0; rows]);
        columns.push(Arc::new(DictionaryArray::<Int32Type>::try_new(keys, Arc::new(artifact))?) as ArrayRef);
        columns.push(Arc::new(TimestampMillisecondArray::from_value(job.at_ms, rows).with_timezone(UTC)));
        columns.push(arrow_array::new_null_array(&DataType::UInt64, rows));
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    /// The archive file of `job`'s rows `first_row` onwards, held in `batches`.
    fn encode(&self, job: &Job, first_row: u64, batches: &[RecordBatch]) -> Result<Encoded, ArchiveError> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let ids: Vec<&StringArray> =
            batches.iter().filter_map(|b| b.column(self.inputs.len()).as_any().downcast_ref()).collect();
        let bloom = bloom_of(&ids)?;
        let parquet = to_parquet(batches, &job.pipeline, job.sequence, job.sequence)?;
        let last_row = first_row + rows - 1;
        let hour = hour_of(job.at_ms);
        let entry = FileEntry {
            name: format!("{}/{hour}/batch-{}.{first_row}-{last_row}.parquet", job.pipeline, job.batch_id),
            pipeline: job.pipeline.clone(),
            hour,
            rows,
            bytes: parquet.len() as u64,
            sha256: mlops_shared::sha256_hex(&parquet),
            bloom_sha256: mlops_shared::sha256_hex(&bloom),
            min_time_ms: job.at_ms,
            max_time_ms: job.at_ms,
            versions: vec![job.version],
            inputs: self
                .inputs
                .iter()
                .map(|(_, n, t)| (n.clone(), if *t == DataType::Utf8 { "utf8" } else { "f64" }.to_owned()))
                .collect(),
            classifier: self.label.is_some(),
            first_sequence: job.sequence,
            last_sequence: job.sequence,
            batch: Some(BatchRows { id: job.batch_id.clone(), first_row, last_row }),
            object: String::new(),
        };
        Ok(Encoded { parquet, bloom, entry })
    }
}

/// Writes `job`'s output (`batches`, of `schema`) as archive files of at most `max_rows` rows
/// each, handing each to `emit` as soon as it is made, so that an output of any size is never
/// held whole. Columns named in `numeric` are archived as numbers (a value that is not one, as
/// null). Returns the rows archived.
pub fn archive_output(
    job: &Job,
    (schema, numeric): (&Schema, &[String]),
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    max_rows: usize,
    mut emit: impl FnMut(Encoded) -> Result<(), ArchiveError>,
) -> Result<u64, ArchiveError> {
    let unreadable = |e: &dyn std::fmt::Display| ArchiveError::Unreadable {
        name: format!("batch {} output {}", job.batch_id, job.output_sha256),
        message: e.to_string(),
    };
    let layout = Layout::of(schema, numeric).map_err(|e| unreadable(&e))?;
    let max_rows = max_rows.max(1);
    let (mut held, mut held_rows, mut done) = (Vec::new(), 0usize, 0u64);
    for batch in batches {
        let batch = layout.convert(&batch.map_err(|e| unreadable(&e))?, job).map_err(|e| unreadable(&e))?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (max_rows - held_rows).min(batch.num_rows() - offset);
            held.push(batch.slice(offset, take));
            (offset, held_rows) = (offset + take, held_rows + take);
            if held_rows == max_rows {
                emit(layout.encode(job, done, &std::mem::take(&mut held))?)?;
                (done, held_rows) = (done + max_rows as u64, 0);
            }
        }
    }
    if held_rows > 0 {
        emit(layout.encode(job, done, &held)?)?;
        done += held_rows as u64;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray as _;
    use arrow_array::types::{Float64Type, UInt64Type};
    use arrow_array::{Float64Array, Int64Array, UInt64Array};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn job() -> Job {
        Job {
            pipeline: "churn".into(),
            batch_id: "nightly-1".into(),
            output_sha256: "cd".repeat(32),
            version: 3,
            artifact_sha256: "ab".repeat(32),
            rows: 5,
            at_ms: 1_796_306_399_999,
            sequence: 42,
        }
    }

    /// A classifier's output of `rows` rows from `first`, with an integer input, a text input and
    /// an input named like one of the archive's own columns.
    fn output(first: usize, rows: usize) -> RecordBatch {
        let range = first..first + rows;
        let schema = Schema::new(vec![
            Field::new("tenure", DataType::Int64, true),
            Field::new("plan", DataType::Utf8, true),
            Field::new("plan_code", DataType::Utf8, true),
            Field::new("predicted_at", DataType::Utf8, true),
            Field::new("prediction_id", DataType::Utf8, false),
            Field::new("probability", DataType::Float64, false),
            Field::new("label", DataType::Utf8, false),
            Field::new("model_version", DataType::UInt64, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(range.clone().map(|i| i as i64))),
            Arc::new(StringArray::from_iter_values(range.clone().map(|i| format!("p{}", i % 2)))),
            Arc::new(StringArray::from_iter_values(
                range.clone().map(|i| if i == 3 { "n/a".into() } else { format!("{i}.5") }),
            )),
            Arc::new(StringArray::from_iter_values(range.clone().map(|_| "yesterday"))),
            Arc::new(StringArray::from_iter_values(range.clone().map(|i| format!("nightly-1-{i}")))),
            Arc::new(Float64Array::from_iter_values(range.clone().map(|i| i as f64 / 10.0))),
            Arc::new(StringArray::from_iter_values(range.clone().map(|i| if i % 2 == 0 { "yes" } else { "no" }))),
            Arc::new(UInt64Array::from_value(3, rows)),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[test]
    fn an_output_becomes_files_of_at_most_max_rows_in_the_archive_columns() {
        let batches = [output(0, 3), output(3, 2)];
        let schema = batches[0].schema();
        let mut files = Vec::new();
        let numeric = ["plan_code".to_owned()];
        let rows = archive_output(&job(), (&schema, &numeric), batches.into_iter().map(Ok), 2, |e| {
            files.push(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, 5);
        let names: Vec<&str> = files.iter().map(|f| f.entry.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "churn/2026120313/batch-nightly-1.0-1.parquet",
                "churn/2026120313/batch-nightly-1.2-3.parquet",
                "churn/2026120313/batch-nightly-1.4-4.parquet"
            ]
        );
        let second = &files[1];
        assert_eq!(second.entry.batch, Some(BatchRows { id: "nightly-1".into(), first_row: 2, last_row: 3 }));
        assert_eq!((second.entry.rows, second.entry.classifier, second.entry.versions.as_slice()), (2, true, &[3][..]));
        assert_eq!(second.entry.inputs["tenure"], "f64");
        assert_eq!(second.entry.inputs["input.predicted_at"], "utf8");
        assert_eq!(second.entry.sha256, mlops_shared::sha256_hex(&second.parquet));
        let bloom = parquet::bloom_filter::Sbbf::from_bytes(&second.bloom).unwrap();
        assert!(bloom.check(&"nightly-1-2") && bloom.check(&"nightly-1-3"));

        let read = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(second.parquet.clone()))
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let names: Vec<String> = read.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(
            names,
            [
                "input.predicted_at",
                "plan",
                "plan_code",
                "tenure",
                "prediction_id",
                "probability",
                "label",
                "model_version",
                "artifact_sha256",
                "predicted_at",
                "stream_sequence"
            ]
        );
        assert_eq!(read.column_by_name("tenure").unwrap().as_primitive::<Float64Type>().values(), &[2.0, 3.0]);
        // A numeric feature held as text (from a CSV) is archived as numbers, one that is not as null.
        assert_eq!(second.entry.inputs["plan_code"], "f64");
        let codes = read.column_by_name("plan_code").unwrap().as_primitive::<Float64Type>();
        assert_eq!((codes.value(0), codes.is_null(1)), (2.5, true));
        assert_eq!(read.column_by_name("prediction_id").unwrap().as_string::<i32>().value(1), "nightly-1-3");
        assert_eq!(read.column_by_name("model_version").unwrap().as_primitive::<UInt64Type>().value(0), 3);
        assert_eq!(read.column_by_name("stream_sequence").unwrap().null_count(), 2);
    }

    #[test]
    fn an_output_without_answers_is_refused_naming_the_column() {
        let batch = output(0, 2);
        let schema = Schema::new(
            batch.schema().fields().iter().filter(|f| f.name() != "model_version").cloned().collect::<Vec<_>>(),
        );
        let err = archive_output(&job(), (&schema, &[]), std::iter::empty(), 10, |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("batch nightly-1 output") && err.contains("no `model_version` column"), "{err}");
    }
}
