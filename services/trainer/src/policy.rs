//! The continuous-training policy: which events become training jobs, on which data. Each
//! accepted training version is appended to its pipeline's history (the `jobs` bucket); validated
//! data makes a job, a drift alert too, each on the spec's training window over that history (the
//! newest version by default). Job ids are derived from their cause, and are the jobs'
//! `Nats-Msg-Id`, so a redelivered trigger never queues a second job.

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, HandlerError, JOBS_KV};
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::spec::{Environment, SpecStore, TrainingWindow};
use tracing::info;

use crate::kv_key;

/// The policy, shared by the trainer's consumers.
#[derive(Clone)]
pub struct Policy {
    bus: Bus,
    jobs: async_nats::jetstream::kv::Store,
    specs: SpecStore,
}

impl Policy {
    /// Opens the job-state bucket.
    pub async fn new(bus: Bus) -> anyhow::Result<Self> {
        let jobs = bus.kv(JOBS_KV).await?;
        let specs = SpecStore::open(&bus).await?;
        Ok(Self { bus, jobs, specs })
    }

    /// The bus this policy publishes on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// New validated data: append it to the pipeline's history, and queue a job on the training
    /// window. Serving-time data is never trained on.
    pub async fn on_validated(&self, e: Envelope<pb::DataValidated>) -> Result<(), HandlerError> {
        let v = &e.payload;
        if Environment::parse(&v.environment) != Ok(Environment::Training) {
            tracing::info!(pipeline = %v.pipeline, environment = %v.environment, "not training data; no job");
            return Ok(());
        }
        let history = self.append(&v.pipeline, &v.dataset_id).await?;
        let job_id = format!("{}-data-{}", v.pipeline, v.dataset_id);
        self.queue_on_window(&v.pipeline, job_id, pb::TrainReason::NewData, &history, &e.id, &e.follow(), String::new)
            .await
    }

    /// A drift alert: retrain on the training window.
    pub async fn on_drift(&self, e: Envelope<pb::DriftDetected>) -> Result<(), HandlerError> {
        let d = &e.payload;
        let history = self.history(&d.pipeline).await?.0;
        let job_id = format!("{}-drift-{}", d.pipeline, d.alert_id);
        self.queue_on_window(&d.pipeline, job_id, pb::TrainReason::Drift, &history, &e.id, &e.follow(), || {
            format!("drift on `{}` but no validated dataset to retrain on", d.pipeline)
        })
        .await
    }

    /// A manual request: train on the window now.
    pub async fn on_requested(&self, e: Envelope<pb::TrainRequested>) -> Result<(), HandlerError> {
        let r = &e.payload;
        let history = self.history(&r.pipeline).await?.0;
        let request = if r.request_id.is_empty() { e.id.as_str() } else { r.request_id.as_str() };
        info!(pipeline = %r.pipeline, by = %r.requested_by, request, "training requested");
        let job_id = format!("{}-manual-{}", r.pipeline, kv_key(request));
        self.queue_on_window(&r.pipeline, job_id, pb::TrainReason::Manual, &history, &e.id, &e.follow(), || {
            format!("train.requested: pipeline `{}` has no accepted training data yet", r.pipeline)
        })
        .await
    }

    /// Queues job `job_id` of `pipeline` on the training window over `history`. An empty history
    /// leaves nothing to train on: a permanent error, `no_data` saying why.
    #[allow(clippy::too_many_arguments)] // each is one fact about the job
    async fn queue_on_window(
        &self,
        pipeline: &str,
        job_id: String,
        reason: pb::TrainReason,
        history: &History,
        trigger_event_id: &str,
        ctx: &EventContext,
        no_data: impl FnOnce() -> String,
    ) -> Result<(), HandlerError> {
        if history.is_empty() {
            return Err(HandlerError::permanent(no_data()));
        }
        let job = pb::TrainJob {
            job_id,
            pipeline: pipeline.to_owned(),
            dataset_ids: self.window(pipeline, history).await?,
            reason: reason as i32,
            trigger_event_id: trigger_event_id.to_owned(),
        };
        self.queue(job, ctx).await
    }

    /// The pipeline's accepted training versions, oldest first, and the bucket revision read.
    async fn history(&self, pipeline: &str) -> Result<(History, Option<u64>), HandlerError> {
        let entry = self
            .jobs
            .entry(history_key(pipeline))
            .await
            .context("reading the dataset history")
            .map_err(HandlerError::Transient)?;
        match entry {
            Some(e) if !e.value.is_empty() => {
                let history: History = serde_json::from_slice(&e.value)
                    .map_err(|err| HandlerError::permanent(format!("dataset history of `{pipeline}`: {err}")))?;
                Ok((history, Some(e.revision)))
            }
            Some(e) => Ok((Vec::new(), Some(e.revision))),
            None => Ok((Vec::new(), None)),
        }
    }

    /// Appends `dataset` (once) to the history, safely against other trainers doing the same: the
    /// write names the revision it read, and a conflict reads again.
    async fn append(&self, pipeline: &str, dataset: &str) -> Result<History, HandlerError> {
        for _ in 0..20 {
            let (mut history, revision) = self.history(pipeline).await?;
            if history.iter().any(|(id, _)| id == dataset) {
                return Ok(history);
            }
            history.push((dataset.to_owned(), mlops_shared::now_unix_ms()));
            if history.len() > MAX_HISTORY {
                history.drain(..history.len() - MAX_HISTORY);
            }
            let bytes = serde_json::to_vec(&history).map_err(|e| HandlerError::Transient(e.into()))?;
            let written = match revision {
                Some(r) => self.jobs.update(history_key(pipeline), bytes.into(), r).await.is_ok(),
                None => self.jobs.create(history_key(pipeline), bytes.into()).await.is_ok(),
            };
            if written {
                return Ok(history);
            }
        }
        Err(HandlerError::Transient(anyhow::anyhow!("the dataset history of `{pipeline}` kept changing")))
    }

    /// The datasets a job trains on: the spec's window over `history`.
    async fn window(&self, pipeline: &str, history: &History) -> Result<Vec<String>, HandlerError> {
        let spec = self
            .specs
            .get(pipeline)
            .await?
            .ok_or_else(|| HandlerError::permanent(format!("pipeline `{pipeline}` not found")))?;
        Ok(TrainingWindow::select(spec.training.window.as_ref(), history, mlops_shared::now_unix_ms()))
    }

    async fn queue(&self, job: pb::TrainJob, ctx: &EventContext) -> Result<(), HandlerError> {
        let published = self.bus.publish(&job.job_id, ctx, &job).await?;
        info!(job = %job.job_id, reason = job.reason, duplicate = published.duplicate, "training job queued");
        metrics::counter!("mlops_jobs_queued_total", "pipeline" => job.pipeline.clone()).increment(1);
        Ok(())
    }
}

/// Accepted versions kept per pipeline: more than any window by versions needs, and small enough
/// (about 170 kB) for one key-value entry.
const MAX_HISTORY: usize = 2_000;

/// (dataset id, accepted at, Unix ms), oldest first.
type History = Vec<(String, i64)>;

fn history_key(pipeline: &str) -> String {
    format!("history.{}", kv_key(pipeline))
}
