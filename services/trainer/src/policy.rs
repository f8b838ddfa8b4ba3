//! The continuous-training policy: which events become training jobs. Validated data makes a job
//! on that dataset; a drift alert makes a job on the pipeline's newest validated dataset. Job ids
//! are derived from their cause, and are the jobs' `Nats-Msg-Id`, so a redelivered trigger never
//! queues a second job.

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, HandlerError, JOBS_KV};
use mlops_shared::events::{Envelope, EventContext};
use tracing::info;

use crate::kv_key;

/// The policy, shared by the trainer's consumers.
#[derive(Clone)]
pub struct Policy {
    bus: Bus,
    jobs: async_nats::jetstream::kv::Store,
}

impl Policy {
    /// Opens the job-state bucket.
    pub async fn new(bus: Bus) -> anyhow::Result<Self> {
        let jobs = bus.kv(JOBS_KV).await?;
        Ok(Self { bus, jobs })
    }

    /// The bus this policy publishes on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// New validated data: remember it as the pipeline's newest, and queue a job on it. Serving-time
    /// data is never trained on.
    pub async fn on_validated(&self, e: Envelope<pb::DataValidated>) -> Result<(), HandlerError> {
        let v = &e.payload;
        if mlops_shared::spec::Environment::parse(&v.environment) != Ok(mlops_shared::spec::Environment::Training) {
            tracing::info!(pipeline = %v.pipeline, environment = %v.environment, "not training data; no job");
            return Ok(());
        }
        self.jobs
            .put(latest_key(&v.pipeline), v.dataset_id.clone().into_bytes().into())
            .await
            .context("recording newest dataset")
            .map_err(HandlerError::Transient)?;
        let job = pb::TrainJob {
            job_id: format!("{}-data-{}", v.pipeline, v.dataset_id),
            pipeline: v.pipeline.clone(),
            dataset_ids: vec![v.dataset_id.clone()],
            reason: pb::TrainReason::NewData as i32,
            trigger_event_id: e.id.clone(),
        };
        self.queue(job, &e.follow()).await
    }

    /// A drift alert: retrain on the newest validated data.
    pub async fn on_drift(&self, e: Envelope<pb::DriftDetected>) -> Result<(), HandlerError> {
        let d = &e.payload;
        let latest = self
            .jobs
            .get(latest_key(&d.pipeline))
            .await
            .context("reading newest dataset")
            .map_err(HandlerError::Transient)?;
        let Some(latest) = latest else {
            return Err(HandlerError::permanent(format!(
                "drift on `{}` but no validated dataset to retrain on",
                d.pipeline
            )));
        };
        let job = pb::TrainJob {
            job_id: format!("{}-drift-{}", d.pipeline, d.alert_id),
            pipeline: d.pipeline.clone(),
            dataset_ids: vec![String::from_utf8_lossy(&latest).into_owned()],
            reason: pb::TrainReason::Drift as i32,
            trigger_event_id: e.id.clone(),
        };
        self.queue(job, &e.follow()).await
    }

    async fn queue(&self, job: pb::TrainJob, ctx: &EventContext) -> Result<(), HandlerError> {
        let published = self.bus.publish(&job.job_id, ctx, &job).await?;
        info!(job = %job.job_id, reason = job.reason, duplicate = published.duplicate, "training job queued");
        metrics::counter!("mlops_jobs_queued_total", "pipeline" => job.pipeline.clone()).increment(1);
        Ok(())
    }
}

fn latest_key(pipeline: &str) -> String {
    format!("latest.{}", kv_key(pipeline))
}
