//! The trainer: the continuous-training policy, which turns validated data and monitor alerts into
//! jobs on the `MLOPS_JOBS` work queue, and the training workers, any number of which share one
//! durable pull consumer. A job trains the pipeline's model on its datasets with a seeded holdout
//! split and puts a self-describing artifact in the `models` bucket, then publishes `model.trained`.

pub mod code;
pub mod error;
pub mod gbt;
pub mod linear;
pub mod policy;
pub mod stream;
pub mod train;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_proto as pb;
use mlops_shared::bus::{
    Bus, CODE_BUCKET, ConsumerSpec, DATASETS_BUCKET, JOBS_KV, JOBS_STREAM, MODELS_BUCKET, off_runtime,
};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::Envelope;
use mlops_shared::ids::Sha256;
use mlops_shared::model::Manifest;
use mlops_shared::objects::Objects;
use mlops_shared::runs::{Run, RunState, Runs, kv_key};
use mlops_shared::service::Service;
use mlops_shared::spec::{PipelineSpec, SpecStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::code::{CodeError, CodeSteps};
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
    /// Where code steps run: a fresh directory per run under `<dir>/runs` (default: the system's
    /// temporary directory, `mlops-trainer`).
    #[arg(long, env = "MLOPS_TRAINER_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Where code steps' Python environments are kept and shared (default `<work dir>/envs`).
    #[arg(long, env = "MLOPS_TRAINER_ENV_DIR")]
    pub env_dir: Option<PathBuf>,
    /// The Python that makes code steps' environments.
    #[arg(long, env = "MLOPS_PYTHON", default_value = "python3")]
    pub python: String,
    /// pip's package index for code steps' environments (default: pip's own configuration).
    #[arg(long, env = "MLOPS_PIP_INDEX_URL")]
    pub pip_index_url: Option<String>,
    /// The step runner that runs code steps (default: `mlops-step` beside this binary).
    #[arg(long, env = "MLOPS_STEP_RUNNER")]
    pub step_runner: Option<PathBuf>,
    /// Output a code step may print before it is stopped, in MiB.
    #[arg(long, env = "MLOPS_MAX_OUTPUT_MB", default_value_t = 256)]
    pub max_output_mb: u64,
}

impl Config {
    /// How this trainer runs code steps (`mlops reproduce` runs them so too, from the same
    /// settings).
    pub fn code_steps(&self) -> anyhow::Result<CodeSteps> {
        let work_dir = self.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("mlops-trainer"));
        let runner = match &self.step_runner {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("mlops-step"),
        };
        Ok(CodeSteps {
            runner,
            envs: code::env::Environments {
                root: self.env_dir.clone().unwrap_or_else(|| work_dir.join("envs")),
                python: self.python.clone(),
                index_url: self.pip_index_url.clone(),
            },
            work_dir,
            max_output: self.max_output_mb << 20,
        })
    }
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Runs the policy and one worker until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Before anything connects: an ONNX Runtime named by a path that is not a file stops the start.
    let engine = mlops_onnx::Engine::from_env()?;
    let code = config.code_steps()?;
    // Training programs run as this user: not dumpable, this process's memory and
    // /proc/<pid>/environ (its NATS credentials) are closed to them.
    if let Err(e) = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        warn!(error = %e, "cannot make the trainer undumpable; training programs could read its environment");
    }
    code.sweep();
    let mut service = Service::start("trainer", &config.nats, &config.tls, &shutdown).await?;
    let bus = service.bus.clone();
    let trainer_id = config.trainer_id.clone().unwrap_or_else(default_trainer_id);
    let worker = Arc::new(Worker {
        bus: bus.clone(),
        datasets: bus.objects(DATASETS_BUCKET).await?,
        models: bus.objects(MODELS_BUCKET).await?,
        bundles: bus.objects(CODE_BUCKET).await?,
        code,
        engine,
        specs: SpecStore::open(&bus).await?,
        features: mlops_features::FeatureStore::open(&bus).await?,
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
    let erased = ConsumerSpec {
        // Deferred for up to ERASURE_WAIT_MS while the successors are validated.
        max_deliver: POLICY_MAX_DELIVER * 4,
        ..ConsumerSpec::events::<pb::DataErased>("trainer-policy-erased")
    };
    service.consume(erased, policy.clone(), |p, e| async move { Ok(p.on_erased(e).await?) });
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
    let applied = ConsumerSpec {
        max_deliver: POLICY_MAX_DELIVER,
        ..ConsumerSpec::events::<pb::PipelineApplied>("trainer-policy-applied")
    };
    service.consume(applied, policy.clone(), |p, e| async move { Ok(p.on_applied(e).await?) });
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
    /// Code bundles, and how code steps run.
    bundles: Objects,
    code: CodeSteps,
    engine: mlops_onnx::Engine,
    specs: SpecStore,
    /// Feature views, for pipelines that look features up.
    features: mlops_features::FeatureStore,
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
            Ok(made) => {
                run.state = RunState::Succeeded;
                run.artifact_sha256 = made.sha.to_string();
                run.metrics.clone_from(&made.metrics);
                run.output.clone_from(&made.program.output);
                run.phases.clone_from(&made.program.phases);
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
                if let TrainerError::Code(c) = err {
                    run.output = c.tail().to_owned();
                }
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
        // The failure stands whether or not it is announced: a lost announcement must not rerun
        // the job.
        if run.state == RunState::Failed
            && let Err(err) = self.announce_failure(&e, &run).await
        {
            warn!(job = %run.job_id, error = %err, "model.training_failed not published");
        }
        outcome.map(drop)
    }

    /// Publishes `model.training_failed` for a run that failed for good.
    async fn announce_failure(&self, e: &Envelope<pb::TrainJob>, run: &Run) -> Result<(), TrainerError> {
        let job = &e.payload;
        let spec = self.specs.get(&job.pipeline).await.ok().flatten();
        let bundle = spec.and_then(|s| s.training.code.and_then(|c| c.bundle)).unwrap_or_default();
        let event = pb::TrainingFailed {
            pipeline: job.pipeline.clone(),
            job_id: job.job_id.clone(),
            reason: job.reason,
            dataset_ids: job.dataset_ids.clone(),
            error: run.error.clone(),
            output_tail: tail_lines(&run.output, 40),
            trainer_id: self.trainer_id.clone(),
            attempt: e.delivered,
            code_bundle: bundle,
        };
        self.bus.publish(&format!("training-failed-{}", job.job_id), &e.follow(), &event).await?;
        Ok(())
    }

    /// Trains the job's model, stores it and announces it.
    async fn train(
        &self,
        e: &Envelope<pb::TrainJob>,
        progress: tokio::sync::watch::Sender<train::Progress>,
    ) -> Result<Made, TrainerError> {
        let ctx = e.follow();
        let job = &e.payload;
        if job.dataset_ids.is_empty() {
            return Err(TrainerError::NoDataset { job_id: job.job_id.clone() });
        }
        let spec =
            self.specs.get(&job.pipeline).await?.ok_or_else(|| TrainerError::UnknownPipeline(job.pipeline.clone()))?;
        // The whole spec revision in force, for the lineage; the artifact holds only its model hash.
        let spec_hash = spec.hash();
        let commit = spec.training.code.as_ref().and_then(|c| c.commit.clone()).unwrap_or_default();
        progress.send_replace(train::Progress { stage: "loading datasets".into(), fraction: 0.0 });
        // Each dataset streamed to a temporary file of its own (deleted when it closes), its sha256
        // checked on the way, not held in memory: boosting reads it in passes, holding only bins.
        let mut blobs = Vec::with_capacity(job.dataset_ids.len());
        for id in &job.dataset_ids {
            let sha = Sha256::parse(id.clone())?;
            let file = self.datasets.download_verified(&sha, &std::env::temp_dir()).await?;
            blobs.push((id.clone(), mlops_data::Source::File(file)));
        }
        let (spec, blobs) = self.look_up(spec, blobs, &progress).await?;
        let started = Instant::now();
        info!(job = %job.job_id, pipeline = %job.pipeline, datasets = blobs.len(), "training");
        let (bytes, manifest, program_run) = if spec.training.code.is_some() {
            self.train_code(job, spec, blobs, &progress).await?
        } else {
            let trained = off_runtime(move || {
                let trained = train::train_sources(&spec, &blobs, &mut |p| {
                    progress.send_replace(p);
                });
                Ok::<_, TrainerError>(trained?)
            })
            .await?;
            (trained.artifact.to_bytes(), trained.artifact.manifest, Program::default())
        };
        let millis = started.elapsed().as_millis() as u64;
        metrics::histogram!("mlops_training_seconds", "pipeline" => job.pipeline.clone())
            .record(started.elapsed().as_secs_f64());
        let sha = self.models.put(&bytes).await?;
        let m = &manifest;
        let program = m.program.clone();
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
            business: m.decision.as_ref().map(Into::into),
            reason: job.reason,
            trainer_id: self.trainer_id.clone(),
            training_millis: millis,
            code_bundle: program.as_ref().map(|p| p.bundle.clone()).unwrap_or_default(),
            code_commit: commit,
            environment: program.as_ref().map(|p| p.environment.clone()).unwrap_or_default(),
            program_metrics: program.map(|p| p.metrics.into_iter().collect()).unwrap_or_default(),
        };
        self.bus.publish(&format!("trained-{}", job.job_id), &ctx, &event).await?;
        let done_key = format!("done.{}", kv_key(&job.job_id));
        self.jobs
            .put(done_key.as_str(), sha.to_string().into_bytes().into())
            .await
            .map_err(TrainerError::jobs("recording job as done"))?;
        info!(job = %job.job_id, artifact = %sha.short(), millis, auc = m.metrics.get("roc_auc").copied().unwrap_or(f64::NAN), "model trained");
        Ok(Made { sha, metrics: m.metrics.clone(), program: program_run })
    }

    /// For a pipeline that looks features up: the spec its model trains under (its features, then
    /// the looked-up ones) and each dataset with those features joined in as of each row's time
    /// (never a value written after it). Other pipelines' pass through.
    async fn look_up(
        &self,
        spec: PipelineSpec,
        blobs: Vec<(String, mlops_data::Source)>,
        progress: &tokio::sync::watch::Sender<train::Progress>,
    ) -> Result<(PipelineSpec, Vec<(String, mlops_data::Source)>), TrainerError> {
        let Some(lookup) = &spec.lookup else { return Ok((spec, blobs)) };
        progress.send_replace(train::Progress { stage: "looking features up".into(), fraction: 0.0 });
        let looked = self.features.looked_up(lookup).await?;
        let model_spec = looked.model_spec(&spec)?;
        let pipeline = spec.name.to_string();
        off_runtime(move || {
            let ids: Vec<String> = blobs.iter().map(|(id, _)| id.clone()).collect();
            let mut joined = Vec::with_capacity(ids.len());
            for (id, (bytes, stats)) in ids.into_iter().zip(looked.join_datasets(blobs)?) {
                for (view, s) in stats {
                    info!(pipeline, dataset = %mlops_shared::ids::short(&id), view, matched = s.matched, unknown = s.unknown, absent = s.absent, "features looked up");
                }
                joined.push((id, mlops_data::Source::Bytes(bytes.into())));
            }
            Ok::<_, TrainerError>((model_spec, joined))
        })
        .await
    }

    /// Runs the pipeline's own training program on the job's data: the artifact's bytes, its
    /// manifest and the end of the program's output.
    async fn train_code(
        &self,
        job: &pb::TrainJob,
        spec: PipelineSpec,
        blobs: Vec<(String, mlops_data::Source)>,
        progress: &tokio::sync::watch::Sender<train::Progress>,
    ) -> Result<(Vec<u8>, Manifest, Program), TrainerError> {
        let named = spec.training.code.as_ref().and_then(|c| c.bundle.clone()).ok_or(CodeError::NoBundle)?;
        let started = Instant::now();
        let bundle = self.bundles.get_verified(&Sha256::parse(named)?).await?;
        let bundle_secs = started.elapsed().as_secs_f64();
        let runtime = self.engine.runtime().map_err(|e| CodeError::Io(format!("ONNX Runtime: {e}")))?;
        progress.send_replace(train::Progress { stage: "reading data".into(), fraction: 0.0 });
        let dataset_ids = blobs.iter().map(|(id, _)| id.clone()).collect();
        let read = spec.clone();
        let started = Instant::now();
        let frame = off_runtime(move || {
            let (frame, _) = mlops_data::read_sources_counted(&read, &blobs).map_err(train::TrainError::from)?;
            if frame.rows < 10 {
                return Err(TrainerError::Train(train::TrainError::TooFew(frame.rows)));
            }
            Ok(frame)
        })
        .await?;
        let read_secs = started.elapsed().as_secs_f64();
        let trained = code::Job {
            steps: &self.code,
            runtime,
            spec: &spec,
            job_id: &job.job_id,
            bundle: &bundle,
            dataset_ids,
            frame: Arc::new(frame),
            progress,
            pinned: None,
            phases: Default::default(),
        }
        .train()
        .await?;
        let mut phases = trained.phases;
        phases.insert("bundle".into(), bundle_secs);
        phases.insert("read data".into(), read_secs);
        Ok((trained.artifact.to_bytes(), trained.artifact.manifest, Program { output: trained.tail, phases }))
    }
}

/// A job's model: where it is stored, its holdout metrics, and what its program did (code steps).
struct Made {
    sha: Sha256,
    metrics: BTreeMap<String, f64>,
    program: Program,
}

/// A code step's program run, for its run record: the end of its output and the seconds of each
/// phase.
#[derive(Default)]
struct Program {
    output: String,
    phases: BTreeMap<String, f64>,
}

/// The last `n` lines of `text`.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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
