//! Each pipeline's drift windows, owned by a task of its own. Predictions reach the task through a
//! bounded queue, so a pipeline whose model is slow to fetch holds up only itself (until its queue
//! is full), and no lock is ever held across I/O: the task alone touches its window.
//!
//! Windows live in memory: a crash loses at most their counts, never a prediction (the log stays
//! in its stream, and its id is kept for labels) nor a recorded window or alert.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlops_proto as pb;
use mlops_shared::bus::off_runtime;
use mlops_shared::events::EventContext;
use mlops_shared::ids::Sha256;
use mlops_shared::model::Stored;
use mlops_shared::spec::{MonitoringSpec, ReferenceKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::Monitor;
use crate::drift::{References, Window};
use crate::error::MonitorError;

/// Attempts at fetching a model before its predictions are left out of the windows for a while.
const LOAD_ATTEMPTS: u32 = 10;
/// How long predictions of a model that could not be loaded are left out before trying again.
const LOAD_PAUSE: Duration = Duration::from_secs(60);

/// One logged prediction on its way to its pipeline's task, with the context of its event.
type Queued = (EventContext, pb::PredictionLogged);

/// The tasks, one per pipeline seen, and the version each one's window follows.
pub(crate) struct Pipelines {
    tasks: Mutex<HashMap<String, mpsc::Sender<Queued>>>,
    serving: Mutex<HashMap<String, u64>>,
    shutdown: CancellationToken,
    /// Predictions a pipeline's task may have waiting.
    queue: usize,
}

impl Pipelines {
    pub(crate) fn new(shutdown: CancellationToken, queue: usize) -> Self {
        Self { tasks: Mutex::default(), serving: Mutex::default(), shutdown, queue: queue.max(1) }
    }

    /// The version whose predictions `pipeline`'s windows hold now, if any.
    pub(crate) fn serving(&self, pipeline: &str) -> Option<u64> {
        self.serving.lock().expect("never poisoned: no panic while held").get(pipeline).copied()
    }

    /// Hands one prediction to its pipeline's task, starting the task on the pipeline's first.
    /// A pipeline whose task has its queue full (its model still loading) has the prediction left
    /// out of its windows, counted, so that intake — and every other pipeline — never waits for
    /// it. Window counts are samples, held in memory only; the prediction itself is already kept
    /// for its label.
    pub(crate) fn send(&self, monitor: &Arc<Monitor>, ctx: EventContext, p: pb::PredictionLogged) {
        let tx = {
            let mut tasks = self.tasks.lock().expect("never poisoned: no panic while held");
            let tx = tasks.entry(p.pipeline.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(self.queue);
                let task = PipelineTask { monitor: monitor.clone(), pipeline: p.pipeline.clone(), open: None };
                tokio::spawn(task.run(rx, self.shutdown.child_token()));
                tx
            });
            tx.clone()
        };
        let pipeline = p.pipeline.clone();
        match tx.try_send((ctx, p)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("mlops_monitor_window_dropped_total", "pipeline" => pipeline).increment(1);
            }
            // The task has ended, at shutdown: the window's counts go with it.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The open window of one pipeline.
struct Open {
    sha: String,
    version: u64,
    /// What the window is compared with: the training data, or the window before (rolling).
    references: Arc<References>,
    spec: MonitoringSpec,
    window: Window,
    /// The features the model looks up, whose served values are checked for skew.
    lookup: Option<mlops_shared::spec::LookupSpec>,
}

/// The task that owns one pipeline's window.
struct PipelineTask {
    monitor: Arc<Monitor>,
    pipeline: String,
    open: Option<Open>,
}

impl PipelineTask {
    async fn run(mut self, mut queue: mpsc::Receiver<Queued>, shutdown: CancellationToken) {
        // A model that could not be loaded, and until when its predictions are left out.
        let mut unloadable: Option<(String, tokio::time::Instant)> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                queued = queue.recv() => {
                    let Some((ctx, p)) = queued else { return };
                    if unloadable.as_ref().is_some_and(|(sha, until)| *sha == p.artifact_sha256 && *until > tokio::time::Instant::now()) {
                        metrics::counter!("mlops_monitor_predictions_unwindowed_total", "pipeline" => self.pipeline.clone()).increment(1);
                        continue;
                    }
                    if let Err(reason) = self.count(&ctx, &p, &shutdown).await {
                        error!(pipeline = %self.pipeline, artifact = %p.artifact_sha256, %reason, "model not loaded: its predictions are left out of drift windows for a minute");
                        metrics::counter!("mlops_monitor_predictions_unwindowed_total", "pipeline" => self.pipeline.clone()).increment(1);
                        unloadable = Some((p.artifact_sha256, tokio::time::Instant::now() + LOAD_PAUSE));
                    }
                }
                _ = tick.tick() => self.close_if_due().await,
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Adds `p` to the window (first loading its model when the window follows another), and
    /// closes the window when it is full or its time is up. Errs only when the model cannot be
    /// loaded.
    async fn count(
        &mut self,
        ctx: &EventContext,
        p: &pb::PredictionLogged,
        shutdown: &CancellationToken,
    ) -> Result<(), MonitorError> {
        if self.open.as_ref().is_none_or(|o| o.sha != p.artifact_sha256) {
            let open = self.load(p, shutdown).await?;
            self.monitor.pipelines.serving.lock().expect("never poisoned").insert(self.pipeline.clone(), p.version);
            self.open = Some(open);
        }
        let Some(o) = self.open.as_mut() else { return Ok(()) };
        o.window.add(&o.references, p);
        let elapsed_ms = p.time_unix_ms - o.window.opened_ms;
        let timed_out = o.spec.window_secs.is_some_and(|s| elapsed_ms >= (s as i64) * 1000);
        if o.window.rows >= u64::from(o.spec.window) || timed_out {
            self.close(ctx).await;
        }
        Ok(())
    }

    /// Closes the window if its `window_secs` have passed since its first prediction, so a quiet
    /// pipeline's window is judged without waiting for more traffic.
    async fn close_if_due(&mut self) {
        let now = mlops_shared::now_unix_ms();
        let due = self.open.as_ref().is_some_and(|o| {
            o.window.rows > 0 && o.spec.window_secs.is_some_and(|s| now - o.window.opened_ms >= (s as i64) * 1000)
        });
        if due {
            self.close(&EventContext::default()).await;
        }
    }

    /// Judges the window off the runtime, records it (and alerts), and opens the next one. A
    /// failure to record keeps the window open: the next prediction or tick tries again.
    async fn close(&mut self, ctx: &EventContext) {
        let Some(o) = self.open.as_mut() else { return };
        let window = std::mem::replace(&mut o.window, Window::new(&o.references));
        let (references, spec) = (o.references.clone(), o.spec.clone());
        let judged = off_runtime({
            let (references, spec) = (references.clone(), spec.clone());
            move || {
                let drift = window.drift(&references, &spec);
                let next =
                    (spec.reference == ReferenceKind::Rolling).then(|| Arc::new(references.from_window(&window)));
                Ok::<_, MonitorError>((window, drift, next))
            }
        })
        .await;
        let Ok((window, (features, share, prediction), next)) = judged else {
            warn!(pipeline = %self.pipeline, "judging a window failed");
            return;
        };
        if let Some(lookup) = &o.lookup {
            self.monitor.check_skew(&self.pipeline, o.version, lookup, (&references, &window), &spec, ctx).await;
        }
        let closed = crate::Closed { version: o.version, rows: window.rows, features, share, prediction };
        match self.monitor.record_window(&self.pipeline, &o.spec, closed, ctx).await {
            Ok(()) => {
                if let Some(next) = next {
                    o.references = next;
                    o.window = Window::new(&o.references);
                }
            }
            Err(e) => {
                warn!(pipeline = %self.pipeline, error = %e, "recording a window failed; it stays open");
                o.window = window;
            }
        }
    }

    /// The window of the model that answered `p`: its artifact fetched and verified (retried with
    /// a growing delay while the store fails) and its training data as the reference.
    async fn load(&self, p: &pb::PredictionLogged, shutdown: &CancellationToken) -> Result<Open, MonitorError> {
        let sha = Sha256::parse(p.artifact_sha256.clone())?;
        let (models, specs) = (&self.monitor.models, &self.monitor.specs);
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        let (bytes, spec) = loop {
            let fetched = async {
                let bytes = models.get_verified(&sha).await?;
                let spec = specs.get(&p.pipeline).await?;
                Ok::<_, MonitorError>((bytes, spec.map(|s| s.monitoring).unwrap_or_default()))
            };
            match fetched.await {
                Ok(fetched) => break fetched,
                Err(e) if attempt < LOAD_ATTEMPTS => {
                    warn!(pipeline = %self.pipeline, error = %e, attempt, retry_in = ?delay, "loading the serving model failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Err(MonitorError::Stopping),
                    }
                    (delay, attempt) = ((delay * 2).min(Duration::from_secs(30)), attempt + 1);
                }
                Err(e) => return Err(MonitorError::ModelUnavailable { attempts: attempt, last: Box::new(e) }),
            }
        };
        let verified = sha.clone();
        let manifest =
            off_runtime(move || Ok::<_, MonitorError>(Stored::verified_manifest(&bytes, &verified)?)).await?;
        let references = Arc::new(References::from_profile(&manifest.reference));
        let window = Window::new(&references);
        let lookup = manifest.lookup.clone();
        Ok(Open { sha: p.artifact_sha256.clone(), version: p.version, references, spec, window, lookup })
    }
}
