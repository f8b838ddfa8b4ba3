//! Batch scoring: every row of a dataset scored by a model, streamed batch by batch, and written
//! as Parquet: the input's columns as they were (or those asked for), then the model's answers as
//! the deployer gives
//! them online (`prediction_id`, `probability` or `prediction`, `label` for a classifier) and the
//! version that gave them.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use mlops_shared::model::{Model, ModelError, Prediction};
use mlops_shared::spec::Task;
use mlops_shared::table::Frame;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::frame::FrameChunks;
use crate::read::{Batches, DataError};

/// Why a batch was not scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the input lacks the model's feature(s) {}", names(.0))]
    MissingFeatures(Vec<String>),
    #[error("the input already has the output column(s) {}", names(.0))]
    OutputClash(Vec<String>),
    #[error("the input has no column(s) {} to keep", names(.0))]
    NoSuchColumns(Vec<String>),
    #[error("{0}")]
    Data(#[from] DataError),
    #[error("row {row}: {source}")]
    Model { row: u64, source: ModelError },
    #[error("writing the output: {0}")]
    Write(String),
}

fn names(columns: &[String]) -> String {
    columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}

/// The model that scores, as the output names it, and the job's name: row `i`'s prediction id is
/// `<batch_id>-<i>` (from 0), so scoring the same rows again gives the same file.
pub struct Scorer<'m> {
    pub model: &'m dyn Model,
    pub version: u64,
    pub artifact_sha256: &'m str,
    pub batch_id: &'m str,
    /// The input's columns the output keeps, in this order; `None` keeps them all.
    pub keep: Option<&'m [String]>,
}

/// What a batch scoring did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scored {
    pub rows: u64,
    pub batches: u64,
}

/// Every name an answer column may have, whatever the task.
pub const ANSWER_COLUMNS: [&str; 5] = ["prediction_id", "probability", "label", "prediction", "model_version"];

/// The output columns after the input's: OIP's names for a classifier or a regression model.
fn output_fields(task: Task) -> Vec<Field> {
    let mut fields = vec![Field::new("prediction_id", DataType::Utf8, false)];
    match task {
        Task::BinaryClassification => {
            fields.push(Field::new("probability", DataType::Float64, false));
            fields.push(Field::new("label", DataType::Utf8, false));
        }
        Task::Regression => fields.push(Field::new("prediction", DataType::Float64, false)),
    }
    fields.push(Field::new("model_version", DataType::UInt64, false));
    fields
}

/// Scores every row of `batches` with `scorer` and writes them, with the answers, as one Parquet
/// file to `to`. The input must hold every feature of the model's manifest (all the missing ones
/// are named before anything is scored); its cells are read as training reads them. Each batch
/// is scored on up to `threads` threads; `progress` is called after each with the rows so far.
pub fn score_to_parquet(
    scorer: &Scorer<'_>,
    batches: Batches,
    threads: usize,
    to: impl std::io::Write + Send,
    mut progress: impl FnMut(u64),
) -> Result<Scored, ScoreError> {
    let manifest = scorer.model.manifest();
    let input = batches.schema.clone();
    let missing: Vec<String> =
        manifest.features.iter().filter(|f| input.index_of(&f.name).is_err()).map(|f| f.name.clone()).collect();
    if !missing.is_empty() {
        return Err(ScoreError::MissingFeatures(missing));
    }
    let kept: Vec<usize> = match scorer.keep {
        None => (0..input.fields().len()).collect(),
        Some(names) => {
            let absent: Vec<String> = names.iter().filter(|n| input.index_of(n).is_err()).cloned().collect();
            if !absent.is_empty() {
                return Err(ScoreError::NoSuchColumns(absent));
            }
            names.iter().filter_map(|n| input.index_of(n).ok()).collect()
        }
    };
    let outputs = output_fields(manifest.target.task);
    let clash: Vec<String> = outputs
        .iter()
        .filter(|f| kept.iter().any(|&i| input.field(i).name() == f.name()))
        .map(|f| f.name().clone())
        .collect();
    if !clash.is_empty() {
        return Err(ScoreError::OutputClash(clash));
    }
    let fields = kept.iter().map(|&i| input.fields()[i].clone()).chain(outputs.into_iter().map(Arc::new));
    let schema: SchemaRef = Arc::new(Schema::new(fields.collect::<Vec<_>>()));
    let metadata = vec![
        KeyValue::new("mlops.pipeline".to_owned(), manifest.pipeline.clone()),
        KeyValue::new("mlops.model_version".to_owned(), scorer.version.to_string()),
        KeyValue::new("mlops.artifact_sha256".to_owned(), scorer.artifact_sha256.to_owned()),
        KeyValue::new("mlops.batch_id".to_owned(), scorer.batch_id.to_owned()),
    ];
    // Snappy, as pandas writes; dictionaries only for the columns that repeat (scores and ids
    // never do, and hashing every value for a dictionary that is then dropped costs the most).
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled("label".into(), true)
        .set_column_dictionary_enabled("model_version".into(), true)
        .set_key_value_metadata(Some(metadata))
        .build();
    let write = |e: parquet::errors::ParquetError| ScoreError::Write(e.to_string());
    let mut writer = ArrowWriter::try_new(to, schema.clone(), Some(props)).map_err(write)?;
    let mut chunks = FrameChunks::of(batches, &manifest.features, None)?;
    // Written on a thread of its own, so that encoding one batch overlaps scoring the next.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
        let writing = s.spawn(move || {
            for out in rx {
                writer.write(&out).map_err(write)?;
            }
            writer.close().map(drop).map_err(write)
        });
        let mut done = Scored::default();
        let scored = (|| {
            while let Some(chunk) = chunks.next_with_batch() {
                let (batch, frame) = chunk?;
                let predictions = predict(scorer.model, &frame, threads)
                    .map_err(|(row, source)| ScoreError::Model { row: done.rows + row as u64 + 1, source })?;
                let mut columns: Vec<ArrayRef> = kept.iter().map(|&i| batch.column(i).clone()).collect();
                columns.extend(answers(scorer, done.rows, &predictions));
                let out =
                    RecordBatch::try_new(schema.clone(), columns).map_err(|e| ScoreError::Write(e.to_string()))?;
                if tx.send(out).is_err() {
                    // The writer failed: its error is the one to report.
                    break;
                }
                done.rows += frame.rows as u64;
                done.batches += 1;
                progress(done.rows);
            }
            Ok(())
        })();
        drop(tx);
        let written = writing.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        scored.and(written).map(|()| done)
    })
}

/// Rows below which a batch is scored on one thread.
const PARALLEL_ROWS: usize = 4096;

/// The model's answer for each row of `frame`, the rows split over `threads` threads; an error
/// names the first row (in `frame`) of the part that failed.
fn predict(model: &dyn Model, frame: &Frame, threads: usize) -> Result<Vec<Prediction>, (usize, ModelError)> {
    let score =
        |rows: std::ops::Range<usize>| model.predict_frame_rows(frame, rows.clone()).map_err(|e| (rows.start, e));
    let threads = threads.clamp(1, frame.rows.div_ceil(PARALLEL_ROWS).max(1));
    if threads == 1 {
        return score(0..frame.rows);
    }
    let per = frame.rows.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> =
            (0..threads).map(|t| s.spawn(move || score(t * per..((t + 1) * per).min(frame.rows)))).collect();
        let mut out = Vec::with_capacity(frame.rows);
        for part in parts {
            out.extend(part.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?);
        }
        Ok(out)
    })
}

/// The output columns for `predictions` of the rows from `first_row`, in [`output_fields`] order.
fn answers(scorer: &Scorer<'_>, first_row: u64, predictions: &[Prediction]) -> Vec<ArrayRef> {
    let target = &scorer.model.manifest().target;
    let rows = first_row..first_row + predictions.len() as u64;
    let ids = StringArray::from_iter_values(rows.map(|row| format!("{}-{row}", scorer.batch_id)));
    let scores = Float64Array::from_iter_values(predictions.iter().map(|p| p.score));
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(scores)];
    if target.task == Task::BinaryClassification {
        let label = |p: &Prediction| if p.positive { target.positive.as_str() } else { target.negative.as_str() };
        columns.push(Arc::new(StringArray::from_iter_values(predictions.iter().map(label))));
    }
    columns.push(Arc::new(UInt64Array::from_value(scorer.version, predictions.len())));
    columns
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray as _;
    use arrow_array::types::Float64Type;
    use mlops_shared::model::Artifact;
    use mlops_shared::spec::PipelineSpec;

    use super::*;
    use crate::read::{Limits, Source, open};

    const SPEC: &str = "name: churn\nfeatures:\n  - {name: tenure, type: numeric}\n  - {name: charges, type: numeric, nullable: true}\n  - {name: contract, type: categorical, categories: [monthly, yearly]}\ntarget: {name: churned}\n";

    fn batches(csv: String) -> Batches {
        open(Source::Bytes(csv.into()), "in.csv", &Limits::default()).unwrap()
    }

    fn model() -> Artifact {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        let rows = "tenure,charges,contract,churned\n1,10,monthly,1\n50,,yearly,0\n20,30,monthly,1\n";
        let frame = crate::read_frame(batches(rows.into()), &spec, true).unwrap();
        Artifact::example(&spec, &frame)
    }

    /// Row `i`'s features as CSV: every tenth charge missing.
    fn row(i: usize) -> String {
        let charges = if i.is_multiple_of(10) { String::new() } else { (i % 31).to_string() };
        format!("{},{charges},{}", i % 97, ["monthly", "yearly"][i % 2])
    }

    #[test]
    fn every_row_is_scored_in_order_as_the_model_answers_it_on_any_number_of_threads() {
        let model = model();
        let csv: String = std::iter::once("customer,tenure,charges,contract\n".to_owned())
            .chain((0..10_000).map(|i| format!("c{i},{}\n", row(i))))
            .collect();
        let scorer = Scorer { model: &model, version: 7, artifact_sha256: "ab", batch_id: "b1", keep: None };
        let mut outputs = Vec::new();
        let mut files = Vec::new();
        for threads in [1, 3] {
            let mut bytes = Vec::new();
            let mut seen = Vec::new();
            let done = score_to_parquet(&scorer, batches(csv.clone()), threads, &mut bytes, |n| seen.push(n)).unwrap();
            assert_eq!((done.rows, seen.last().copied()), (10_000, Some(10_000)));
            files.push(bytes.clone());
            let out: Vec<RecordBatch> = open(Source::Bytes(bytes.into()), "out.parquet", &Limits::default())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let schema = out[0].schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let expected =
                ["customer", "tenure", "charges", "contract", "prediction_id", "probability", "label", "model_version"];
            assert_eq!(names, expected);
            let column = |name: &str| -> Vec<f64> {
                out.iter()
                    .flat_map(|b| b.column_by_name(name).unwrap().as_primitive::<Float64Type>().values().to_vec())
                    .collect()
            };
            outputs.push(column("probability"));
        }
        // The same file on one thread or three (ids from the batch's name), each answer the
        // model's own for its row.
        assert_eq!(outputs[0], outputs[1]);
        assert!(files[0] == files[1], "the same bytes");
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        for i in [0, 1, 4_999, 9_999] {
            let one =
                crate::read_frame(batches(format!("tenure,charges,contract\n{}\n", row(i))), &spec, false).unwrap();
            assert_eq!(outputs[0][i], model.predict(&one.row(0)).score, "row {i}");
        }
    }

    #[test]
    fn an_input_without_the_features_or_with_the_outputs_is_refused_before_scoring() {
        let model = model();
        let mut scorer = Scorer { model: &model, version: 1, artifact_sha256: "ab", batch_id: "b2", keep: None };
        let refused =
            |csv: &str| score_to_parquet(&scorer, batches(csv.into()), 2, Vec::new(), |_| ()).unwrap_err().to_string();
        assert_eq!(refused("tenure,plan\n1,a\n"), "the input lacks the model's feature(s) `charges`, `contract`");
        assert_eq!(
            refused("tenure,charges,contract,label\n1,2,monthly,x\n"),
            "the input already has the output column(s) `label`"
        );
        assert_eq!(
            refused("tenure,charges,contract\n1,2,monthly\nlots,2,monthly\n"),
            "row 2, column `tenure`: \"lots\" is not a number"
        );
        // Only the columns asked for are kept; one that is not there is named; a kept column
        // clashes, one left out does not.
        let keep = ["id".to_owned()];
        let mut bytes = Vec::new();
        scorer.keep = Some(&keep);
        score_to_parquet(
            &scorer,
            batches("id,tenure,charges,contract,label\n7,1,2,monthly,x\n".into()),
            1,
            &mut bytes,
            |_| (),
        )
        .unwrap();
        let out = open(Source::Bytes(bytes.into()), "o.parquet", &Limits::default()).unwrap();
        let names: Vec<String> = out.schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "prediction_id", "probability", "label", "model_version"]);
        let refused =
            |csv: &str| score_to_parquet(&scorer, batches(csv.into()), 2, Vec::new(), |_| ()).unwrap_err().to_string();
        assert_eq!(refused("tenure,charges,contract\n1,2,monthly\n"), "the input has no column(s) `id` to keep");
    }
}
