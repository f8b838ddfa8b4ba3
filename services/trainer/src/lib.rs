//! The trainer: the continuous-training policy, which turns validated data and monitor alerts into
//! jobs on the `MLOPS_JOBS` work queue, and the training workers, any number of which share one
//! durable pull consumer. A job trains the pipeline's model on its datasets with a seeded holdout
//! split and puts a self-describing artifact in the `models` bucket, then publishes `model.trained`.

pub mod error;
pub mod gbt;
pub mod linear;
pub mod policy;
pub mod train;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_proto as pb;
use mlops_shared::bus::{Bus, ConsumerSpec, DATASETS_BUCKET, JOBS_KV, JOBS_STREAM, MODELS_BUCKET, off_runtime};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::Envelope;
use mlops_shared::ids::Sha256;
use mlops_shared::objects::Objects;
use mlops_shared::runs::{Run, RunState, Runs, kv_key};
use mlops_shared::service::Service;
use mlops_shared::spec::SpecStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::TrainerError;

/// Trainer configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-trainer", version, about = "Trainer: continuous-training policy and training workers")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub tls: mlops_shared::tls::TlsArgs,
    /// HTTP (/healthz, /metrics) listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:9102")]
    pub listen: SocketAddr,
    /// A name for this worker in lineage records (default: host name and process id).
    #[arg(long, env = "MLOPS_TRAINER_ID")]
    pub trainer_id: Option<String>,
    /// How long a job may go without a heartbeat before another worker gets it.
    #[arg(long, env = "MLOPS_JOB_ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Runs the policy and one worker until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut service = Service::start("trainer", &config.nats, &config.tls, &shutdown).await?;
    let bus = service.bus.clone();
    let trainer_id = config.trainer_id.clone().unwrap_or_else(default_trainer_id);
    let worker = Arc::new(Worker {
        bus: bus.clone(),
        datasets: bus.objects(DATASETS_BUCKET).await?,
        models: bus.objects(MODELS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        jobs: bus.kv(JOBS_KV).await?,
        runs: Runs::open(&bus).await?,
        trainer_id,
    });
    let policy = Arc::new(policy::Policy::new(bus).await?);
    // One durable consumer per trigger event, each handing its events to the policy.
    let data = ConsumerSpec {
        max_deliver: POLICY_MAX_DELIVER,
        ..ConsumerSpec::events::<pb::DataValidated>("trainer-policy-data")
    };
    service.consume(data, policy.clone(), |p, e| async move { Ok(p.on_validated(e).await?) });
    let rejected = ConsumerSpec {
        max_deliver: POLICY_MAX_DELIVER,
        ..ConsumerSpec::events::<pb::DataRejected>("trainer-policy-rejected")
    };
    service.consume(rejected, policy.clone(), |p, e| async move { Ok(p.on_rejected(e).await?) });
    let drift = ConsumerSpec {
        max_deliver: POLICY_MAX_DELIVER,
        ..ConsumerSpec::events::<pb::DriftDetected>("trainer-policy-drift")
    };
    service.consume(drift, policy.clone(), |p, e| async move { Ok(p.on_drift(e).await?) });
    let degraded = ConsumerSpec {
        max_deliver: POLICY_MAX_DELIVER,
        ..ConsumerSpec::events::<pb::PerformanceDegraded>("trainer-policy-degraded")
    };
    service.consume(degraded, policy.clone(), |p, e| async move { Ok(p.on_degraded(e).await?) });
    let requested = ConsumerSpec::events::<pb::TrainRequested>("trainer-policy-requested");
    service.consume(requested, policy.clone(), |p, e| async move { Ok(p.on_requested(e).await?) });
    let token = service.shutdown();
    service.spawn(async move {
        policy.run_schedules(token).await;
        Ok(())
    });
    let jobs = ConsumerSpec {
        ack_wait: Duration::from_secs(config.ack_wait_secs.max(3)),
        max_deliver: JOB_MAX_DELIVER,
        // One job at a time per worker, so queued jobs spread over the workers.
        one_at_a_time: true,
        ..ConsumerSpec::on::<pb::TrainJob>(JOBS_STREAM, "trainers")
    };
    info!(trainer = %worker.trainer_id, "trainer starting its consumers");
    service.consume(jobs, worker, |w, e| async move { Ok(w.on_job(e).await?) });
    service.serve(listener, None).await
}

/// Deliveries of a trigger event before it is dead-lettered. Waiting for a debounce window or a
/// cooldown takes a delivery or two; the rest are for retries.
const POLICY_MAX_DELIVER: i64 = 30;

fn default_trainer_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

struct Worker {
    bus: Bus,
    datasets: Objects,
    models: Objects,
    specs: SpecStore,
    jobs: async_nats::jetstream::kv::Store,
    runs: Runs,
    trainer_id: String,
}

impl Worker {
    /// Runs a job, keeping its run record current: running (with progress), then succeeded or
    /// failed. A transient failure leaves it running, with the error, until the last attempt.
    async fn on_job(&self, e: Envelope<pb::TrainJob>) -> Result<(), TrainerError> {
        let job = &e.payload;
        let done_key = format!("done.{}", kv_key(&job.job_id));
        if let Some(sha) = self.jobs.get(done_key.as_str()).await.map_err(TrainerError::jobs("reading job state"))? {
            info!(job = %job.job_id, artifact = %String::from_utf8_lossy(&sha), "job already done, skipping");
            return Ok(());
        }
        // A job queued by an older policy (or published by hand) has no record yet.
        let mut run = self.runs.get(&job.job_id).await?.unwrap_or_else(|| Run::queued(job, 0));
        run.state = RunState::Running;
        run.trainer.clone_from(&self.trainer_id);
        run.attempt = e.delivered;
        run.started_ms = mlops_shared::now_unix_ms();
        run.stage = "starting".into();
        run.progress = 0.0;
        self.runs.put(&run).await?;
        let (tx, rx) = tokio::sync::watch::channel(train::Progress { stage: "starting".into(), fraction: 0.0 });
        let reporter = tokio::spawn(report_progress(self.bus.clone(), self.runs.clone(), run.clone(), rx));
        let outcome = self.train(&e, tx).await;
        let mut run = reporter.await.unwrap_or(run);
        match &outcome {
            Ok((sha, metrics)) => {
                run.state = RunState::Succeeded;
                run.artifact_sha256 = sha.to_string();
                run.metrics.clone_from(metrics);
                run.progress = 1.0;
                run.stage = "done".into();
                run.error.clear();
            }
            Err(TrainerError::Deferred(_)) => {}
            Err(err) if !err.is_permanent() && e.delivered < JOB_MAX_DELIVER as u64 => {
                run.stage = "will retry".into();
                run.error = causes(err);
            }
            Err(err) => {
                run.state = RunState::Failed;
                run.stage = "failed".into();
                // Out of attempts, a transient failure keeps the mark its record always had.
                run.error = if err.is_permanent() { err.to_string() } else { format!("transient: {}", causes(err)) };
            }
        }
        if run.state.is_final() {
            run.finished_ms = mlops_shared::now_unix_ms();
        }
        // The record is for people; the job's outcome does not hang on it.
        if let Err(err) = self.runs.put(&run).await {
            warn!(job = %run.job_id, error = %err, "cannot update the run record");
        }
        publish_progress(&self.bus, &run).await;
        outcome.map(drop)
    }

    /// Trains the job's model, stores it and announces it; the artifact's address and metrics.
    async fn train(
        &self,
        e: &Envelope<pb::TrainJob>,
        progress: tokio::sync::watch::Sender<train::Progress>,
    ) -> Result<(Sha256, std::collections::BTreeMap<String, f64>), TrainerError> {
        let ctx = e.follow();
        let job = &e.payload;
        if job.dataset_ids.is_empty() {
            return Err(TrainerError::NoDataset { job_id: job.job_id.clone() });
        }
        let spec =
            self.specs.get(&job.pipeline).await?.ok_or_else(|| TrainerError::UnknownPipeline(job.pipeline.clone()))?;
        // The whole spec revision in force, for the lineage; the artifact holds only its model hash.
        let spec_hash = spec.hash();
        progress.send_replace(train::Progress { stage: "loading datasets".into(), fraction: 0.0 });
        let mut blobs = Vec::with_capacity(job.dataset_ids.len());
        for id in &job.dataset_ids {
            let sha = Sha256::parse(id.clone())?;
            let bytes = self.datasets.get_verified(&sha).await?;
            blobs.push((id.clone(), bytes));
        }
        let started = Instant::now();
        info!(job = %job.job_id, pipeline = %job.pipeline, datasets = blobs.len(), "training");
        let trained = off_runtime(move || {
            let trained = train::train_with_progress(&spec, &blobs, &mut |p| {
                progress.send_replace(p);
            });
            Ok::<_, TrainerError>(trained?)
        })
        .await?;
        let millis = started.elapsed().as_millis() as u64;
        metrics::histogram!("mlops_training_seconds", "pipeline" => job.pipeline.clone())
            .record(started.elapsed().as_secs_f64());
        let bytes = trained.artifact.to_bytes();
        let sha = self.models.put(&bytes).await?;
        let m = &trained.artifact.manifest;
        let event = pb::ModelTrained {
            pipeline: job.pipeline.clone(),
            job_id: job.job_id.clone(),
            artifact_sha256: sha.to_string(),
            artifact_size: bytes.len() as u64,
            dataset_ids: m.dataset_ids.clone(),
            spec_hash,
            seed: m.seed,
            code_version: m.code_version.clone(),
            algorithm: m.algorithm.clone(),
            holdout_metrics: Some(pb::Metrics {
                values: m.metrics.clone().into_iter().collect(),
                rows: m.holdout_rows,
            }),
            reason: job.reason,
            trainer_id: self.trainer_id.clone(),
            training_millis: millis,
        };
        self.bus.publish(&format!("trained-{}", job.job_id), &ctx, &event).await?;
        let done_key = format!("done.{}", kv_key(&job.job_id));
        self.jobs
            .put(done_key.as_str(), sha.to_string().into_bytes().into())
            .await
            .map_err(TrainerError::jobs("recording job as done"))?;
        info!(job = %job.job_id, artifact = %sha.short(), millis, auc = m.metrics.get("roc_auc").copied().unwrap_or(f64::NAN), "model trained");
        Ok((sha, m.metrics.clone()))
    }
}

/// Attempts at a job before it is dead-lettered.
const JOB_MAX_DELIVER: i64 = 5;

/// Publishes the run's progress as training reports it: on core NATS at most five times a second,
/// in its record every two seconds. Returns the run as last reported once training is over (the
/// sender is dropped).
async fn report_progress(
    bus: Bus,
    runs: Runs,
    mut run: Run,
    mut rx: tokio::sync::watch::Receiver<train::Progress>,
) -> Run {
    let mut stored = Instant::now();
    loop {
        {
            let p = rx.borrow_and_update();
            run.stage.clone_from(&p.stage);
            run.progress = p.fraction;
        }
        publish_progress(&bus, &run).await;
        if stored.elapsed() >= Duration::from_secs(2) {
            stored = Instant::now();
            if let Err(err) = runs.put(&run).await {
                warn!(job = %run.job_id, error = %err, "cannot update the run record");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if rx.changed().await.is_err() {
            return run;
        }
    }
}

/// `err` and its causes, outermost first, as a run record shows a failure that is retried.
fn causes(err: &TrainerError) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

async fn publish_progress(bus: &Bus, run: &Run) {
    match serde_json::to_vec(run) {
        Ok(json) => {
            if let Err(err) = bus.client.publish(run.progress_subject(), json.into()).await {
                tracing::debug!(error = %err, "progress not published");
            }
        }
        Err(err) => warn!(error = %err, "progress not encoded"),
    }
}
