//! Batch jobs. `batch.requested` scores a stored dataset version with a pipeline's production
//! model (or a named version) on whichever evaluator replica takes it (a durable consumer they
//! share: a work queue, one job at a time each), writes the output to the `batches` object store
//! and announces `batch.completed`. The output is the same bytes however often a job runs
//! (prediction ids come from the batch id), so a job redelivered after its worker died writes the
//! same object; a job done is recorded in the `jobs` bucket and not done again.

use std::time::Instant;

use mlops_proto as pb;
use mlops_shared::events::Envelope;

use crate::error::EvaluatorError;
use crate::{Evaluator, Selector, lookup};

impl Evaluator {
    /// Scores the dataset a `batch.requested` names and announces the output.
    pub(crate) async fn on_batch(&self, e: Envelope<pb::BatchRequested>) -> Result<(), EvaluatorError> {
        let ctx = e.follow();
        let r = &e.payload;
        let done_key = format!("batch.{}", r.batch_id);
        if self.jobs.get(done_key.as_str()).await.map_err(|e| EvaluatorError::Registry(format!("jobs: {e}")))?.is_some()
        {
            tracing::info!(pipeline = %r.pipeline, batch = %r.batch_id, "batch job already done");
            return Ok(());
        }
        let started = Instant::now();
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
        let model = self.load(&version.artifact_sha256).await?;
        let data = self.datasets(std::slice::from_ref(&r.dataset_id)).await?.pop().map(|(_, b)| b).unwrap_or_default();
        let (batch_id, sha, number) = (r.batch_id.clone(), version.artifact_sha256.clone(), version.version);
        let dataset = mlops_shared::ids::short(&r.dataset_id).to_owned();
        let (bytes, done) = mlops_shared::bus::off_runtime(move || {
            let bad = |e: &dyn std::fmt::Display| EvaluatorError::BadData(format!("dataset {dataset}: {e}"));
            let source = mlops_data::Source::Bytes(data.into());
            let batches = mlops_data::open(source, "", &mlops_data::Limits::default()).map_err(|e| bad(&e))?;
            let scorer = mlops_data::Scorer {
                model: model.as_ref(),
                version: number,
                artifact_sha256: &sha,
                batch_id: &batch_id,
                keep: None,
            };
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let mut out = Vec::new();
            let done =
                mlops_data::score_to_parquet(&scorer, batches, threads, &mut out, |_| ()).map_err(|e| bad(&e))?;
            Ok::<_, EvaluatorError>((out, done))
        })
        .await?;
        let output = self.batches.put(&bytes).await?;
        let event = pb::BatchCompleted {
            pipeline: r.pipeline.clone(),
            batch_id: r.batch_id.clone(),
            dataset_id: r.dataset_id.clone(),
            version: version.version,
            artifact_sha256: version.artifact_sha256.clone(),
            rows: done.rows,
            output_sha256: output.to_string(),
            output_bytes: bytes.len() as u64,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.bus.publish(&format!("batch-completed-{}", r.batch_id), &ctx, &event).await?;
        self.jobs
            .put(done_key.as_str(), output.to_string().into())
            .await
            .map_err(|e| EvaluatorError::Registry(format!("jobs: {e}")))?;
        metrics::counter!("mlops_batch_rows_total", "pipeline" => r.pipeline.clone()).increment(done.rows);
        tracing::info!(pipeline = %r.pipeline, batch = %r.batch_id, rows = done.rows, output = %output, "batch job done");
        Ok(())
    }
}
