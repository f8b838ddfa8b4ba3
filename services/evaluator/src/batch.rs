//! Batch jobs. `batch.requested` scores a stored dataset version with a pipeline's production
//! model (or a named version) on whichever evaluator replica takes it (a durable consumer they
//! share: a work queue, one job at a time each), writes the output to the `batches` object store
//! and announces `batch.completed`.
//!
//! A job's record in the `jobs` bucket (`batch.<id>`) makes it repeatable: the first attempt
//! records what it will score (the pipeline, dataset and the version it resolved), so a redelivery
//! after its worker died scores the same rows with the same model into the same bytes (prediction
//! ids come from the batch id) and the same object; once done, the record holds the announcement,
//! and a request for a batch id already done announces it again with the same message id (dropped
//! as a duplicate within JetStream's window). A batch id reused for another job is refused.

use std::time::Instant;

use mlops_proto as pb;
use mlops_shared::bus::{BusError, JOBS_KV};
use mlops_shared::events::Envelope;
use serde::{Deserialize, Serialize};

use crate::error::EvaluatorError;
use crate::{Evaluator, Selector, lookup};

/// A batch job's record: what it scores, and once done, its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    pipeline: String,
    dataset_id: String,
    /// As asked (0: production).
    asked_version: u64,
    version: u64,
    artifact_sha256: String,
    done: Option<Done>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Done {
    rows: u64,
    output_sha256: String,
    output_bytes: u64,
    seconds: f64,
}

fn kv(e: impl std::fmt::Display) -> EvaluatorError {
    EvaluatorError::Bus(BusError::Kv { bucket: JOBS_KV, message: e.to_string() })
}

impl Evaluator {
    /// Scores the dataset a `batch.requested` names and announces the output.
    pub(crate) async fn on_batch(&self, e: Envelope<pb::BatchRequested>) -> Result<(), EvaluatorError> {
        let ctx = e.follow();
        let r = &e.payload;
        let record = self.batch_record(r).await?;
        if let Some(done) = &record.done {
            tracing::info!(pipeline = %r.pipeline, batch = %r.batch_id, "batch job already done: announced again");
            return self.announce(r, &record, done, &ctx).await;
        }
        let started = Instant::now();
        let model = self.load(&record.artifact_sha256).await?;
        let data = self.datasets(std::slice::from_ref(&r.dataset_id)).await?.pop().map(|(_, b)| b).unwrap_or_default();
        let (batch_id, sha, number) = (r.batch_id.clone(), record.artifact_sha256.clone(), record.version);
        let dataset = mlops_shared::ids::short(&r.dataset_id).to_owned();
        let (bytes, scored) = mlops_shared::bus::off_runtime(move || {
            let bad = |e: &dyn std::fmt::Display| EvaluatorError::BadData(format!("dataset {dataset}: {e}"));
            let source = mlops_data::Source::Bytes(data.into());
            let batches = mlops_data::open(source, "", &mlops_data::Limits::default()).map_err(|e| bad(&e))?;
            // The dataset's columns, but those named like an answer (a target called `label`).
            let keep: Vec<String> = batches
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| !mlops_data::ANSWER_COLUMNS.contains(&n.as_str()))
                .collect();
            let scorer = mlops_data::Scorer {
                model: model.as_ref(),
                version: number,
                artifact_sha256: &sha,
                batch_id: &batch_id,
                keep: Some(&keep),
            };
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let mut out = Vec::new();
            let scored =
                mlops_data::score_to_parquet(&scorer, batches, threads, &mut out, |_| ()).map_err(|e| bad(&e))?;
            Ok::<_, EvaluatorError>((out, scored))
        })
        .await?;
        let output = self.batches.put(&bytes).await?;
        let done = Done {
            rows: scored.rows,
            output_sha256: output.to_string(),
            output_bytes: bytes.len() as u64,
            seconds: started.elapsed().as_secs_f64(),
        };
        let record = Record { done: Some(done.clone()), ..record };
        let key = format!("batch.{}", r.batch_id);
        self.jobs.put(key.as_str(), serde_json::to_vec(&record).map_err(kv)?.into()).await.map_err(kv)?;
        metrics::counter!("mlops_batch_rows_total", "pipeline" => r.pipeline.clone()).increment(done.rows);
        tracing::info!(pipeline = %r.pipeline, batch = %r.batch_id, rows = done.rows, output = %output, "batch job done");
        self.announce(r, &record, &done, &ctx).await
    }

    /// The job's record: the one a first attempt made (refused if it names another job), or a new
    /// one with the version resolved now.
    async fn batch_record(&self, r: &pb::BatchRequested) -> Result<Record, EvaluatorError> {
        let key = format!("batch.{}", r.batch_id);
        if let Some(bytes) = self.jobs.get(key.as_str()).await.map_err(kv)? {
            let record: Record = serde_json::from_slice(&bytes).map_err(kv)?;
            if (record.pipeline.as_str(), record.dataset_id.as_str(), record.asked_version)
                != (r.pipeline.as_str(), r.dataset_id.as_str(), r.version)
            {
                return Err(EvaluatorError::BadEvent(format!(
                    "batch id `{}` already names another job (pipeline `{}`, dataset {}, version {})",
                    r.batch_id,
                    record.pipeline,
                    mlops_shared::ids::short(&record.dataset_id),
                    record.asked_version
                )));
            }
            return Ok(record);
        }
        let selector = match r.version {
            0 => Selector::Alias("production".into()),
            v => Selector::Version(v),
        };
        let version = lookup(&self.registry, &r.pipeline, selector).await?.ok_or_else(|| {
            EvaluatorError::Unanswerable(match r.version {
                0 => format!("pipeline `{}` has no version in production", r.pipeline),
                v => format!("pipeline `{}` has no version {v}", r.pipeline),
            })
        })?;
        let record = Record {
            pipeline: r.pipeline.clone(),
            dataset_id: r.dataset_id.clone(),
            asked_version: r.version,
            version: version.version,
            artifact_sha256: version.artifact_sha256,
            done: None,
        };
        // Created only if absent: of two attempts racing, both go on with the first one's record.
        let bytes = serde_json::to_vec(&record).map_err(kv)?;
        match self.jobs.create(key.as_str(), bytes.into()).await {
            Ok(_) => Ok(record),
            Err(_) => {
                let bytes = self.jobs.get(key.as_str()).await.map_err(kv)?.ok_or_else(|| kv("record vanished"))?;
                serde_json::from_slice(&bytes).map_err(kv)
            }
        }
    }

    /// Publishes `batch.completed` for a job done (its message id is the batch's).
    async fn announce(
        &self,
        r: &pb::BatchRequested,
        record: &Record,
        done: &Done,
        ctx: &mlops_shared::events::EventContext,
    ) -> Result<(), EvaluatorError> {
        let event = pb::BatchCompleted {
            pipeline: r.pipeline.clone(),
            batch_id: r.batch_id.clone(),
            dataset_id: r.dataset_id.clone(),
            version: record.version,
            artifact_sha256: record.artifact_sha256.clone(),
            rows: done.rows,
            output_sha256: done.output_sha256.clone(),
            output_bytes: done.output_bytes,
            seconds: done.seconds,
        };
        self.bus.publish(&format!("batch-completed-{}", r.batch_id), ctx, &event).await?;
        Ok(())
    }
}
