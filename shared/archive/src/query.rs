//! Reading the archive: one prediction by id (the partitions of the hour its id names, their
//! bloom filters, then the files that may hold it, then the stream's newest messages not yet
//! archived), and a pipeline's predictions over a time range as one Parquet file.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use bytes::Bytes;
use futures::StreamExt as _;
use mlops_proto as pb;
use mlops_shared::bus::{BATCHES_BUCKET, EVENTS_STREAM, PREDICTIONS_STREAM, decode_typed};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::batches::Job;
use crate::columns::UTC;
use crate::{Archive, ArchiveError, FileEntry, OWN_COLUMNS, hour_of, id_time};

/// How many files' bloom filters are fetched at once.
const FETCHES: usize = 8;

/// A prediction found by id.
#[derive(Debug, Serialize)]
pub struct Found {
    pub pipeline: String,
    /// The archive file holding it, or `None` when it was read from the stream or from a batch
    /// output, not yet archived.
    pub file: Option<String>,
    /// The batch output (its sha256) it was read from, when not (yet) archived.
    pub output: Option<String>,
    /// Its answers, model and time.
    pub prediction: Map<String, Value>,
    /// Its inputs as received.
    pub inputs: Map<String, Value>,
    /// The newest label that came for it (`true_label`, `labelled_at`), once archived.
    pub label: Option<Map<String, Value>>,
}

/// The newest label of each prediction id: the label and when it was published (Unix ms).
type Labels = std::collections::HashMap<String, (String, i64)>;

/// Adds the labels of `file` (of `name`) to `labels`, the newest kept; only `only`'s when given.
fn read_labels(name: &str, bytes: Bytes, only: Option<&str>, labels: &mut Labels) -> Result<(), ArchiveError> {
    let unreadable = |e: &dyn std::fmt::Display| ArchiveError::Unreadable { name: name.into(), message: e.to_string() };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| unreadable(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        let strings = |c: &str| {
            batch
                .column_by_name(c)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| unreadable(&format!("no {c} column")))
        };
        let (ids, values) = (strings("prediction_id")?, strings("true_label")?);
        let times = batch
            .column_by_name("labelled_at")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(|| unreadable(&"no labelled_at column"))?;
        for i in 0..batch.num_rows() {
            let id = ids.value(i);
            if only.is_some_and(|o| o != id) {
                continue;
            }
            let (label, at) = (values.value(i), times.value(i));
            match labels.get_mut(id) {
                Some(newest) if newest.1 > at => {}
                Some(newest) => *newest = (label.to_owned(), at),
                None => {
                    labels.insert(id.to_owned(), (label.to_owned(), at));
                }
            }
        }
    }
    Ok(())
}

/// What an export wrote.
#[derive(Debug, Default, Serialize)]
pub struct Export {
    pub rows: u64,
    pub files: u64,
}

/// The hours a prediction whose id names its time is archived in (and its labels): a deployer's
/// id names the time it was made, its log a moment later.
fn id_hours(id: &str) -> Option<Vec<String>> {
    let t = id_time(id)?;
    let mut hours = vec![hour_of(t), hour_of(t + 60_000)];
    hours.dedup();
    Some(hours)
}

/// Refuses what cannot be a prediction id.
fn check_id(id: &str) -> Result<(), ArchiveError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ArchiveError::BadRequest(format!(
            "{id:?} is not a prediction id (1 to 256 characters, no spaces or control characters)"
        )));
    }
    Ok(())
}

/// `row` split into its answers and its inputs (`input.<name>` back to `<name>`).
fn split(row: Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    let (mut prediction, mut inputs) = (Map::new(), Map::new());
    for (name, value) in row {
        if OWN_COLUMNS.contains(&name.as_str()) {
            prediction.insert(name, value);
        } else {
            inputs.insert(name.strip_prefix("input.").map_or(name.clone(), str::to_owned), value);
        }
    }
    (prediction, inputs)
}

/// The row of `file` whose prediction id is `id`, as JSON.
fn row_in(name: &str, bytes: Bytes, id: &str) -> Result<Option<Map<String, Value>>, ArchiveError> {
    let unreadable = |e: &dyn std::fmt::Display| ArchiveError::Unreadable { name: name.into(), message: e.to_string() };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| unreadable(&e))?
        .build()
        .map_err(|e| unreadable(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        let ids = batch
            .column_by_name("prediction_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| unreadable(&"no prediction_id column"))?;
        let Some(i) = (0..ids.len()).find(|&i| ids.value(i) == id) else { continue };
        return json_row(&batch, i).map_err(|e| unreadable(&e));
    }
    Ok(None)
}

/// Row `i` of `batch` as JSON, nulls left out.
fn json_row(batch: &RecordBatch, i: usize) -> Result<Option<Map<String, Value>>, String> {
    let mut out = Vec::new();
    let mut writer =
        arrow_json::WriterBuilder::new().with_explicit_nulls(false).build::<_, arrow_json::writer::JsonArray>(&mut out);
    writer.write(&batch.slice(i, 1)).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    let rows: Vec<Map<String, Value>> = serde_json::from_slice(&out).map_err(|e| e.to_string())?;
    Ok(rows.into_iter().next())
}

impl Archive {
    /// The prediction `id`, looked for among `pipelines` (all by default).
    pub async fn find(&self, id: &str, pipelines: Option<Vec<String>>) -> Result<Option<Found>, ArchiveError> {
        check_id(id)?;
        // A batch job's row `<batch id>-<row>`: straight to the file holding that row, or to the
        // job's output while it is not archived.
        if let Some((batch, row)) = id.rsplit_once('-').and_then(|(b, r)| Some((b, r.parse::<u64>().ok()?))) {
            match self.batch_files(batch).await? {
                Some(files) => {
                    let entry = files.into_iter().find(|f| {
                        f.batch.as_ref().is_some_and(|b| (b.first_row..=b.last_row).contains(&row))
                            && pipelines.as_ref().is_none_or(|p| p.contains(&f.pipeline))
                    });
                    if let Some(entry) = entry {
                        return self.found_in(entry, id).await;
                    }
                }
                None => {
                    if let Some(mut found) = self.find_in_output(batch, row, pipelines.as_deref()).await? {
                        found.label = self.label_of(&found.pipeline, id, "").await?;
                        return Ok(Some(found));
                    }
                }
            }
        }
        let pipelines = match pipelines {
            Some(p) => p,
            None => self.pipelines().await?,
        };
        let mut entries = Vec::new();
        for pipeline in &pipelines {
            let hours = match id_hours(id) {
                Some(hours) => hours,
                None => self.hours(pipeline).await?,
            };
            for hour in hours {
                entries.extend(self.partition(pipeline, &hour).await?);
            }
        }
        // A served prediction's id is never a batch job's row.
        if id_time(id).is_some() {
            entries.retain(|e| e.batch.is_none());
        }
        let checked = futures::stream::iter(entries)
            .map(|entry| async move { self.bloom(&entry).await.map(|b| (b.check(id), entry)) })
            .buffer_unordered(FETCHES)
            .collect::<Vec<_>>()
            .await;
        for result in checked {
            let (maybe, entry) = result?;
            if maybe && let Some(found) = self.found_in(entry, id).await? {
                return Ok(Some(found));
            }
        }
        let Some(mut found) = self.find_live(id, &pipelines).await? else { return Ok(None) };
        let hour = found
            .prediction
            .get("predicted_at")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| hour_of(t.timestamp_millis())));
        found.label = self.label_of(&found.pipeline, id, &hour.unwrap_or_default()).await?;
        Ok(Some(found))
    }

    /// The prediction `id` in the file of `entry`, with its label, if the file holds it.
    async fn found_in(&self, entry: FileEntry, id: &str) -> Result<Option<Found>, ArchiveError> {
        let bytes = self.file(&entry).await?;
        let (name, wanted) = (entry.name.clone(), id.to_owned());
        let row = tokio::task::spawn_blocking(move || row_in(&name, bytes, &wanted))
            .await
            .map_err(|e| ArchiveError::Store(e.to_string()))??;
        let Some(row) = row else { return Ok(None) };
        let (prediction, inputs) = split(row);
        let label = self.label_of(&entry.pipeline, id, &entry.hour).await?;
        let (pipeline, file) = (entry.pipeline, Some(entry.name));
        Ok(Some(Found { pipeline, file, output: None, prediction, inputs, label }))
    }

    /// The newest archived label of prediction `id` of `pipeline`, made in `hour`.
    async fn label_of(&self, pipeline: &str, id: &str, hour: &str) -> Result<Option<Map<String, Value>>, ArchiveError> {
        let labels = self.labels();
        // Labels are kept with the hour their id names; other ids' with the hour they came.
        let hours = match id_hours(id) {
            Some(hours) => hours,
            None => labels.hours(pipeline).await?.into_iter().filter(|h| h.as_str() >= hour).collect(),
        };
        let mut found = Labels::new();
        for hour in hours {
            for entry in labels.partition(pipeline, &hour).await? {
                if !labels.bloom(&entry).await?.check(id) {
                    continue;
                }
                let bytes = labels.file(&entry).await?;
                read_labels(&entry.name, bytes, Some(id), &mut found)?;
            }
        }
        Ok(found.remove(id).map(|(label, at)| {
            let mut m = Map::new();
            m.insert("true_label".into(), label.into());
            m.insert("labelled_at".into(), mlops_shared::format_ms(at).into());
            m
        }))
    }

    /// Row `row` of batch job `batch`'s output, read from the output itself: for a job announced
    /// but not archived yet, or whose pipeline keeps batches out of the archive.
    async fn find_in_output(
        &self,
        batch: &str,
        row: u64,
        pipelines: Option<&[String]>,
    ) -> Result<Option<Found>, ArchiveError> {
        let Some(job) = self.job_announced(batch, pipelines).await? else { return Ok(None) };
        let objects = self.bus.objects(BATCHES_BUCKET).await.map_err(|e| ArchiveError::Store(e.to_string()))?;
        let (output, name) = job.download_output(&objects).await?;
        let unreadable =
            |e: &dyn std::fmt::Display| ArchiveError::Unreadable { name: name.clone(), message: e.to_string() };
        let reader = ParquetRecordBatchReaderBuilder::try_new(output)
            .map(|b| b.with_offset(row as usize).with_limit(1))
            .and_then(|b| b.build())
            .map_err(|e| unreadable(&e))?;
        let mut rows = Vec::new();
        for batch in reader {
            rows.push(batch.map_err(|e| unreadable(&e))?);
        }
        let Some(one) = rows.into_iter().find(|b| b.num_rows() > 0) else { return Ok(None) };
        let Some(values) = json_row(&one, 0).map_err(|e| unreadable(&e))? else { return Ok(None) };
        let (mut prediction, inputs) = split(values);
        prediction.insert("artifact_sha256".into(), job.artifact_sha256.into());
        prediction.insert("predicted_at".into(), mlops_shared::format_ms(job.at_ms).into());
        Ok(Some(Found {
            pipeline: job.pipeline,
            file: None,
            output: Some(job.output_sha256),
            prediction,
            inputs,
            label: None,
        }))
    }

    /// The newest `batch.completed` of batch job `batch` (of one of `pipelines`, when given).
    async fn job_announced(&self, batch: &str, pipelines: Option<&[String]>) -> Result<Option<Job>, ArchiveError> {
        let store = |e: &dyn std::fmt::Display| ArchiveError::Store(format!("reading the batch jobs done: {e}"));
        let stream = self.bus.js.get_stream(EVENTS_STREAM).await.map_err(|e| store(&e))?;
        let config = OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            filter_subject: "mlops.events.batch.completed.>".into(),
            ..Default::default()
        };
        let mut consumer = stream.create_consumer(config).await.map_err(|e| store(&e))?;
        if consumer.info().await.map_err(|e| store(&e))?.num_pending == 0 {
            return Ok(None);
        }
        let mut messages = consumer.messages().await.map_err(|e| store(&e))?;
        let mut newest = None;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| store(&e))?;
            let pending = msg.info().map_err(|e| store(&e))?.pending;
            if let Ok(job) = Job::of_message(&msg)
                && job.batch_id == batch
                && pipelines.is_none_or(|p| p.contains(&job.pipeline))
            {
                newest = Some(job);
            }
            if pending == 0 {
                break;
            }
        }
        Ok(newest)
    }

    /// The prediction `id` among the stream's messages not yet archived.
    async fn find_live(&self, id: &str, pipelines: &[String]) -> Result<Option<Found>, ArchiveError> {
        let watermark = self.watermark().await?;
        let store = |e: &dyn std::fmt::Display| ArchiveError::Store(format!("reading the prediction log: {e}"));
        let mut stream = self.bus.js.get_stream(PREDICTIONS_STREAM).await.map_err(|e| store(&e))?;
        if stream.info().await.map_err(|e| store(&e))?.state.last_sequence <= watermark {
            return Ok(None);
        }
        let config = OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: watermark + 1 },
            filter_subject: "mlops.predictions.>".into(),
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| store(&e))?;
        let mut messages = consumer.messages().await.map_err(|e| store(&e))?;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| store(&e))?;
            let info = msg.info().map_err(|e| store(&e))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            let ce_type =
                msg.headers.as_ref().and_then(|h| h.get(mlops_shared::events::headers::TYPE)).map(|v| v.to_string());
            if let Ok(batch) = decode_typed::<pb::PredictionLogBatch>(&msg.payload, false, ce_type.as_deref())
                && let Some(p) = batch.predictions.into_iter().find(|p| p.prediction_id == id)
                && (pipelines.is_empty() || pipelines.contains(&p.pipeline))
            {
                return Ok(Some(live(p, sequence)));
            }
            if pending == 0 {
                break;
            }
        }
        Ok(None)
    }
}

/// A prediction read from the stream, shaped like one read from a file.
fn live(p: pb::PredictionLogged, sequence: u64) -> Found {
    let mut prediction = Map::new();
    prediction.insert("prediction_id".into(), p.prediction_id.into());
    if p.label.is_empty() {
        prediction.insert("prediction".into(), p.score.into());
    } else {
        prediction.insert("probability".into(), p.score.into());
        prediction.insert("label".into(), p.label.into());
    }
    prediction.insert("model_version".into(), p.version.into());
    prediction.insert("artifact_sha256".into(), p.artifact_sha256.into());
    prediction.insert("predicted_at".into(), mlops_shared::format_ms(p.time_unix_ms).into());
    prediction.insert("stream_sequence".into(), sequence.into());
    let mut inputs: Map<String, Value> = p.numeric.into_iter().map(|(k, v)| (k, v.into())).collect();
    inputs.extend(p.categorical.into_iter().map(|(k, v)| (k, v.into())));
    Found { pipeline: p.pipeline, file: None, output: None, prediction, inputs, label: None }
}

/// The schema an export writes: every input any of `files` has (text where any file has text),
/// then the answers, as the files order them.
fn export_schema(files: &[FileEntry]) -> Arc<Schema> {
    let mut inputs: BTreeMap<&str, bool> = BTreeMap::new();
    for f in files {
        for (name, kind) in &f.inputs {
            *inputs.entry(name).or_default() |= kind == "utf8";
        }
    }
    let mut fields: Vec<Field> = inputs
        .into_iter()
        .map(|(name, text)| Field::new(name, if text { DataType::Utf8 } else { DataType::Float64 }, true))
        .collect();
    fields.push(Field::new("prediction_id", DataType::Utf8, false));
    let classifier = files.iter().any(|f| f.classifier);
    if files.iter().any(|f| !f.classifier) {
        fields.push(Field::new("prediction", DataType::Float64, true));
    }
    if classifier {
        fields.push(Field::new("probability", DataType::Float64, true));
        fields.push(Field::new("label", DataType::Utf8, true));
    }
    fields.push(Field::new("model_version", DataType::UInt64, false));
    fields.push(Field::new("artifact_sha256", DataType::Utf8, false));
    fields.push(Field::new("predicted_at", DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())), false));
    // Null for a batch job's rows, which never went through the prediction log.
    fields.push(Field::new("stream_sequence", DataType::UInt64, true));
    fields.push(Field::new("true_label", DataType::Utf8, true));
    fields.push(Field::new("labelled_at", DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())), true));
    Arc::new(Schema::new(fields))
}

/// `batch` in `schema`: columns it lacks as nulls, others cast; only the rows at `from` or later
/// and before `to`, of `version` when given.
fn conform(
    batch: &RecordBatch,
    schema: &Arc<Schema>,
    (from, to, version): (i64, i64, Option<u64>),
    labels: &Labels,
) -> Result<RecordBatch, String> {
    let times = batch
        .column_by_name("predicted_at")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or("no predicted_at column")?;
    let versions = batch
        .column_by_name("model_version")
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .ok_or("no model_version column")?;
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            let t = times.value(i);
            Some(t >= from && t < to && version.is_none_or(|v| versions.value(i) == v))
        })
        .collect();
    let ids = batch
        .column_by_name("prediction_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or("no prediction_id column")?;
    let labelled: Vec<Option<&(String, i64)>> = ids.iter().map(|id| id.and_then(|id| labels.get(id))).collect();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column: ArrayRef = match (field.name().as_str(), batch.column_by_name(field.name())) {
            ("true_label", None) => Arc::new(labelled.iter().map(|l| l.map(|l| l.0.as_str())).collect::<StringArray>()),
            ("labelled_at", None) => Arc::new(
                labelled.iter().map(|l| l.map(|l| l.1)).collect::<TimestampMillisecondArray>().with_timezone(UTC),
            ),
            (_, column) => match column {
                Some(c) if c.data_type() == field.data_type() => c.clone(),
                Some(c) => arrow_cast::cast(c, field.data_type()).map_err(|e| e.to_string())?,
                None => arrow_array::new_null_array(field.data_type(), batch.num_rows()),
            },
        };
        columns.push(arrow_select::filter::filter(&column, &keep).map_err(|e| e.to_string())?);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

impl Archive {
    /// The files of `pipeline` that may hold predictions at `from` or later and before `to`, of
    /// `version` when given.
    pub async fn files_between(
        &self,
        pipeline: &str,
        from: i64,
        to: i64,
        version: Option<u64>,
    ) -> Result<Vec<FileEntry>, ArchiveError> {
        let (first, last) = (hour_of(from), hour_of(to - 1));
        let mut files = Vec::new();
        for hour in self.hours(pipeline).await? {
            if hour < first || hour > last {
                continue;
            }
            files.extend(self.partition(pipeline, &hour).await?.into_iter().filter(|f| {
                f.max_time_ms >= from && f.min_time_ms < to && version.is_none_or(|v| f.versions.contains(&v))
            }));
        }
        Ok(files)
    }

    /// Writes `pipeline`'s predictions at `from` or later and before `to` (Unix ms), of `version`
    /// when given, to `out` as Parquet, one archive file at a time.
    pub async fn export<W: Write + Send + 'static>(
        &self,
        pipeline: &str,
        (from, to): (i64, i64),
        version: Option<u64>,
        out: W,
    ) -> Result<Export, ArchiveError> {
        if from >= to {
            return Err(ArchiveError::BadRequest(format!("the range is empty: {from} is not before {to}")));
        }
        let files = self.files_between(pipeline, from, to, version).await?;
        let schema = export_schema(&files);
        // Labels are kept with the hour of the prediction their id names (within a minute).
        let mut labels = Labels::new();
        if !files.is_empty() {
            for entry in self.labels().files_between(pipeline, from - 60_000, to + 60_000, None).await? {
                let bytes = self.labels().file(&entry).await?;
                read_labels(&entry.name, bytes, None, &mut labels)?;
            }
        }
        let labels = Arc::new(labels);
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let write = |e: parquet::errors::ParquetError| ArchiveError::Write(e.to_string());
        let mut writer = Some(ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(write)?);
        let mut done = Export::default();
        for entry in files {
            let bytes = self.file(&entry).await?;
            let (schema, name, labels) = (schema.clone(), entry.name.clone(), labels.clone());
            let mut w = writer.take().ok_or_else(|| ArchiveError::Write("the writer was lost".into()))?;
            let (w, rows) = tokio::task::spawn_blocking(move || -> Result<_, ArchiveError> {
                let unreadable = |e: String| ArchiveError::Unreadable { name: name.clone(), message: e };
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|e| unreadable(e.to_string()))?;
                let mut rows = 0;
                for batch in reader {
                    let batch =
                        conform(&batch.map_err(|e| unreadable(e.to_string()))?, &schema, (from, to, version), &labels)
                            .map_err(unreadable)?;
                    rows += batch.num_rows() as u64;
                    w.write(&batch).map_err(write)?;
                }
                Ok((w, rows))
            })
            .await
            .map_err(|e| ArchiveError::Write(e.to_string()))??;
            writer = Some(w);
            done.rows += rows;
            done.files += 1;
        }
        if let Some(w) = writer {
            w.close().map_err(write)?;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Partition;

    fn logged(id: &str, t: i64, version: u64, label: &str) -> pb::PredictionLogged {
        pb::PredictionLogged {
            pipeline: "churn".into(),
            prediction_id: id.into(),
            version,
            artifact_sha256: "ab".repeat(32),
            numeric: [("tenure".to_owned(), 3.5), ("label".to_owned(), 1.0)].into(),
            categorical: [("plan".to_owned(), format!("p{version}"))].into(),
            score: 0.25,
            label: label.into(),
            time_unix_ms: t,
        }
    }

    fn encoded(rows: &[pb::PredictionLogged]) -> crate::Encoded {
        let mut part = Partition::new("churn", "2026120313");
        for (i, p) in rows.iter().enumerate() {
            part.push(10 + i as u64, &p.into());
        }
        part.encode(10, 20).unwrap()
    }

    #[test]
    fn a_file_holds_inputs_answers_and_finds_its_ids() {
        let mut late = logged("b", 2_000, 2, "yes");
        late.numeric.insert("calls".into(), 7.0);
        late.categorical.insert("tenure".into(), "long".into());
        let e = encoded(&[logged("a", 1_000, 1, "no"), late]);
        assert_eq!(e.entry.name, "churn/2026120313/10-20.parquet");
        assert_eq!((e.entry.rows, e.entry.min_time_ms, e.entry.max_time_ms), (2, 1_000, 2_000));
        assert_eq!(e.entry.versions, [1, 2]);
        assert!(e.entry.classifier);
        // A feature named like an answer is renamed; one given as text once is text throughout.
        let kinds: Vec<(&str, &str)> = e.entry.inputs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(kinds, [("calls", "f64"), ("input.label", "f64"), ("plan", "utf8"), ("tenure", "f64")]);
        assert_eq!(e.entry.sha256, mlops_shared::sha256_hex(&e.parquet));
        let bloom = parquet::bloom_filter::Sbbf::from_bytes(&e.bloom).unwrap();
        assert!(bloom.check("a") && bloom.check("b"));
        let row = row_in("f", Bytes::from(e.parquet.clone()), "b").unwrap().unwrap();
        let (prediction, inputs) = split(row);
        assert_eq!(prediction["label"], "yes");
        assert_eq!(prediction["model_version"], 2);
        assert_eq!(prediction["stream_sequence"], 11);
        assert_eq!(inputs["calls"], 7.0);
        assert_eq!(inputs["label"], 1.0, "renamed back");
        assert_eq!(inputs["plan"], "p2");
        let first = split(row_in("f", Bytes::from(e.parquet.clone()), "a").unwrap().unwrap()).1;
        assert!(!first.contains_key("calls"), "absent where not given: {first:?}");
        assert_eq!(row_in("f", Bytes::from(e.parquet), "c").unwrap(), None);
    }

    #[test]
    fn a_file_with_a_feature_both_number_and_text_keeps_both_as_text() {
        let mut text = logged("b", 2_000, 1, "no");
        text.numeric.remove("tenure");
        text.categorical.insert("tenure".into(), "long".into());
        let e = encoded(&[logged("a", 1_000, 1, "no"), text]);
        assert_eq!(e.entry.inputs["tenure"], "utf8");
        let inputs = split(row_in("f", Bytes::from(e.parquet), "a").unwrap().unwrap()).1;
        assert_eq!(inputs["tenure"], "3.5");
    }

    #[test]
    fn exports_widen_files_to_one_schema_and_keep_the_range_and_version() {
        let regression = {
            let mut part = Partition::new("churn", "2026120313");
            let mut p = logged("r", 1_500, 3, "");
            p.numeric.insert("extra".into(), 1.0);
            part.push(30, &(&p).into());
            part.encode(30, 30).unwrap()
        };
        let classes = encoded(&[logged("a", 1_000, 1, "no"), logged("b", 2_000, 2, "yes")]);
        let schema = export_schema(&[classes.entry.clone(), regression.entry.clone()]);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "extra",
                "input.label",
                "plan",
                "tenure",
                "prediction_id",
                "prediction",
                "probability",
                "label",
                "model_version",
                "artifact_sha256",
                "predicted_at",
                "stream_sequence",
                "true_label",
                "labelled_at"
            ]
        );
        let read = |bytes: Vec<u8>| {
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
        };
        let labels: Labels = [("b".to_owned(), ("churned".to_owned(), 9_000))].into();
        let batch = conform(&read(classes.parquet.clone()), &schema, (0, 1_999, None), &labels).unwrap();
        assert_eq!(batch.num_rows(), 1, "the range's end is left out");
        assert_eq!(batch.column_by_name("true_label").unwrap().null_count(), 1, "a has no label");
        let batch = conform(&read(classes.parquet), &schema, (0, 5_000, Some(2)), &labels).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column_by_name("extra").unwrap().null_count(), 1);
        let true_label = batch.column_by_name("true_label").unwrap();
        assert_eq!(true_label.as_any().downcast_ref::<StringArray>().unwrap().value(0), "churned");
        let batch = conform(&read(regression.parquet), &schema, (0, 5_000, None), &labels).unwrap();
        assert_eq!(batch.column_by_name("label").unwrap().null_count(), 1);
    }

    #[test]
    fn the_newest_label_of_an_id_is_kept() {
        let mut part = crate::LabelPartition::new("churn", "2026120313");
        part.push(5, "a", "no", 1_000);
        part.push(6, "a", "yes", 3_000);
        part.push(7, "a", "maybe", 2_000);
        part.push(7, "b", "no", 2_000);
        let e = part.encode(5, 7).unwrap();
        assert_eq!(e.entry.name, "_labels/churn/2026120313/5-7.parquet");
        let mut labels = Labels::new();
        read_labels("f", Bytes::from(e.parquet.clone()), Some("a"), &mut labels).unwrap();
        assert_eq!(labels, [("a".to_owned(), ("yes".to_owned(), 3_000))].into());
        read_labels("f", Bytes::from(e.parquet), None, &mut labels).unwrap();
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn ids_that_cannot_be_ids_are_refused() {
        for bad in ["", "a b", "x\n", &"x".repeat(257)] {
            assert!(matches!(check_id(bad), Err(ArchiveError::BadRequest(m)) if m.contains("is not a prediction id")));
        }
        assert!(check_id("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").is_ok());
    }
}
