//! Code steps: a pipeline whose `training.code` names the team's own program. Each run gets a
//! fresh directory holding a copy of the code bundle, the training rows as Parquet (the holdout
//! kept back, so the platform judges the model on rows the program never saw) and an empty model
//! directory; the program runs in its Python environment under the step runner's limits, and
//! writes `model.onnx`, which the platform then checks, measures and stores like an imported
//! model. A search runs the program once per candidate and fold.
//!
//! The program's contract (README, "Your own training code"): environment variables
//! `MLOPS_TRAIN_DATA`, `MLOPS_MODEL_DIR`, `MLOPS_PARAMS`, `MLOPS_SEED`, `MLOPS_FEATURES`,
//! `MLOPS_TARGET`, `MLOPS_TASK`; `progress F` lines on stdout; an optional `metrics.json`.

pub mod env;
pub mod step;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_onnx::import::{Graph, Origin};
use mlops_shared::bundle::BundleError;
use mlops_shared::model::{Candidate, OnnxArtifact, ProgramRun, SearchResult, holdout_split};
use mlops_shared::spec::{CodeSpec, DEFAULT_TIMEOUT_SECS, PipelineSpec};
use mlops_shared::table::Frame;

use crate::code::env::{EnvError, Environments, PythonEnv};
use crate::code::step::{Ran, Status, Step};
use crate::train::{Progress, best_candidate, validation_splits};

/// The algorithm name of models a code step made.
pub const ALGORITHM: &str = "code";

/// What a trainer needs to run code steps.
#[derive(Debug, Clone)]
pub struct CodeSteps {
    /// The step runner binary (`mlops-step`).
    pub runner: PathBuf,
    /// Runs' directories are made under `<work_dir>/runs`.
    pub work_dir: PathBuf,
    pub envs: Environments,
    /// Output a run may print before it is stopped.
    pub max_output: u64,
}

impl CodeSteps {
    /// Removes the run directories of trainers that are gone (killed before they could clean up):
    /// each is named after the process that made it.
    pub fn sweep(&self) {
        let Ok(runs) = std::fs::read_dir(self.work_dir.join("runs")) else { return };
        for run in runs.flatten() {
            let name = run.file_name().to_string_lossy().into_owned();
            let owner = name.split('-').next().and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = owner
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                match std::fs::remove_dir_all(run.path()) {
                    Ok(()) => tracing::info!(dir = %run.path().display(), "removed a dead trainer's run directory"),
                    Err(e) => {
                        tracing::warn!(dir = %run.path().display(), error = %e, "cannot remove a dead trainer's run directory")
                    }
                }
            }
        }
    }
}

/// Why a code step made no model. Every kind but `Io` is the program's or its code's doing, and
/// would fail again: the run fails at once.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("the spec names no code bundle: apply it with `mlops pipeline apply`, which packs the code directory")]
    NoBundle,
    #[error("code bundle: {0}")]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The program failed: why, and the end of its output.
    #[error("the training program {reason}")]
    Program { reason: String, tail: String },
    /// Its model.onnx is missing, broken or does not answer as the pipeline's contract says; the
    /// end of the program's output, when it ran.
    #[error("the training program's model: {problem}")]
    Model { problem: String, tail: String },
    #[error("the run's directory: {0}")]
    Io(String),
}

impl CodeError {
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Io(_) | Self::Env(EnvError::Io(_) | EnvError::Unreachable(_)))
    }

    /// The end of the program's output, when it ran.
    pub fn tail(&self) -> &str {
        match self {
            Self::Program { tail, .. } | Self::Model { tail, .. } => tail,
            _ => "",
        }
    }

    /// A problem with the program's model.
    fn model(problem: impl Into<String>) -> Self {
        Self::Model { problem: problem.into(), tail: String::new() }
    }

    /// The error, with the end of the program's output when it is about its model.
    fn with_tail(self, output: &str) -> Self {
        match self {
            Self::Model { problem, .. } => Self::Model { problem, tail: output.to_owned() },
            other => other,
        }
    }
}

fn io_error(doing: &'static str) -> impl Fn(std::io::Error) -> CodeError {
    move |e| CodeError::Io(format!("{doing}: {e}"))
}

/// A code step's model, and the end of its final run's output.
pub struct CodeTrained {
    pub artifact: OnnxArtifact,
    pub tail: String,
    /// Seconds spent in each phase: `environment`, `hand-over` (the bundle unpacked and the rows
    /// written as Parquet), `program`, `check`, summed over the search's runs too.
    pub phases: BTreeMap<String, f64>,
}

/// One job's code step: the spec, the bundle, the data and where progress goes.
pub struct Job<'a> {
    pub steps: &'a CodeSteps,
    pub runtime: &'static mlops_onnx::Runtime,
    pub spec: &'a PipelineSpec,
    pub job_id: &'a str,
    pub bundle: &'a [u8],
    pub dataset_ids: Vec<String>,
    /// The training window, read under the spec (shared with the work off the runtime, not
    /// copied).
    pub frame: Arc<Frame>,
    pub progress: &'a tokio::sync::watch::Sender<Progress>,
    /// Packages to install instead of the requirements file: a model's recorded `pip freeze`,
    /// when `mlops reproduce` rebuilds the environment that made it.
    pub pinned: Option<String>,
    /// Where the phases' times gather (start it empty).
    pub phases: std::sync::Mutex<BTreeMap<String, f64>>,
}

impl Job<'_> {
    fn code(&self) -> &CodeSpec {
        self.spec.training.code.as_ref().expect("a code step's spec has code")
    }

    /// Runs the step: the environment, the search's runs if any, the final run, and the check of
    /// its model on the holdout.
    pub async fn train(self) -> Result<CodeTrained, CodeError> {
        let bundle_sha = self.code().bundle.clone().ok_or(CodeError::NoBundle)?;
        let files = mlops_shared::bundle::files(self.bundle)?;
        self.report("preparing the environment", 0.0);
        let started = Instant::now();
        let env = self.environment(&files).await?;
        self.took("environment", started);
        let t = &self.spec.training;
        let (train_idx, _) = holdout_split(self.frame.rows, t.holdout, t.seed);
        let train = Arc::new(self.frame.take(&train_idx));
        let (params, search, from) = match &t.search {
            None => (t.params.clone(), None, 0.05),
            Some(_) => {
                let result = self.search(&train, env.as_ref()).await?;
                (result.candidates[result.best].params.clone(), Some(result), 0.8)
            }
        };
        let (run, graph) = self.run_program(&params, train.clone(), env.as_ref(), "training", (from, 0.95)).await?;
        self.report("checking the model on the holdout", 0.95);
        let program = ProgramRun {
            bundle: bundle_sha.clone(),
            command: self.code().command.clone(),
            environment: env.map(|e| e.freeze).unwrap_or_default(),
            metrics: run.metrics,
        };
        let origin = Origin {
            algorithm: ALGORITHM.into(),
            code_version: format!("code sha256:{bundle_sha}"),
            params,
            training_rows: train.rows as u64,
            search,
            program: Some(program),
        };
        let started = Instant::now();
        let artifact = self.check(graph, origin).await?;
        self.took("check", started);
        self.report("done", 1.0);
        let phases = std::mem::take(&mut *self.phases.lock().expect("never poisoned"));
        Ok(CodeTrained { artifact, tail: run.tail, phases })
    }

    fn report(&self, stage: &str, fraction: f64) {
        self.progress.send_replace(Progress { stage: stage.into(), fraction });
    }

    /// Adds the time since `started` to `phase`.
    fn took(&self, phase: &str, started: Instant) {
        let mut phases = self.phases.lock().expect("never poisoned");
        *phases.entry(phase.to_owned()).or_default() += started.elapsed().as_secs_f64();
    }

    /// The Python environment the spec asks for, made from the bundle's requirements file.
    async fn environment(&self, files: &[(String, bool, Vec<u8>)]) -> Result<Option<PythonEnv>, CodeError> {
        let Some(python) = self.spec.training.environment.as_ref().and_then(|e| e.python.as_ref()) else {
            return Ok(None);
        };
        let requirements = match (&self.pinned, &python.requirements) {
            (Some(freeze), _) => freeze.clone().into_bytes(),
            (None, None) => Vec::new(),
            (None, Some(path)) => {
                let inside = self.code().in_bundle(path).unwrap_or_default();
                let file = files.iter().find(|(name, _, _)| *name == inside);
                file.map(|(_, _, content)| content.clone()).ok_or_else(|| {
                    CodeError::Env(EnvError::Pip(format!("the requirements file {path:?} is not in the code bundle")))
                })?
            }
        };
        let envs = self.steps.envs.clone();
        let env = tokio::task::spawn_blocking(move || envs.prepare(&requirements))
            .await
            .map_err(|e| CodeError::Io(format!("making the environment: {e}")))??;
        Ok(Some(env))
    }

    /// Tries every candidate of the spec's search: one run per candidate and fold, each model
    /// scored on the rows held from it.
    async fn search(&self, train: &Arc<Frame>, env: Option<&PythonEnv>) -> Result<SearchResult, CodeError> {
        let t = &self.spec.training;
        let search = t.search.as_ref().expect("called for a search");
        let task = self.spec.target.task;
        let (metric, higher_is_better) = search.ranking(task);
        let splits = validation_splits(train.rows, search.folds, search.validation, t.seed);
        let candidates = search.candidates(&t.params);
        let runs = (candidates.len() * splits.len()) as f64;
        let mut tried = Vec::with_capacity(candidates.len());
        for (c, params) in candidates.into_iter().enumerate() {
            let mut fold_scores = Vec::with_capacity(splits.len());
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            for (f, (fit, check)) in splits.iter().enumerate() {
                let at = 0.05 + 0.75 * (c * splits.len() + f) as f64 / runs;
                let stage = format!("searching: candidate {} of {}", c + 1, runs as usize / splits.len());
                let fit_rows = Arc::new(train.take(fit));
                let (_, graph) = self.run_program(&params, fit_rows, env, &stage, (at, at + 0.75 / runs)).await?;
                let held = train.take(check);
                let metrics = self.score(graph, held).await?;
                fold_scores.push(metrics.get(metric).copied().filter(|v| v.is_finite()));
                for (name, value) in metrics {
                    *sums.entry(name).or_default() += value / splits.len() as f64;
                }
            }
            let score = fold_scores.iter().copied().sum::<Option<f64>>().map(|s| s / fold_scores.len() as f64);
            tried.push(Candidate { params, score, fold_scores, metrics: sums });
        }
        let best = best_candidate(&tried, higher_is_better);
        Ok(SearchResult {
            metric: metric.to_owned(),
            folds: search.folds.unwrap_or(0),
            validation_rows: splits.iter().map(|(_, v)| v.len() as u64).sum(),
            candidates: tried,
            best,
        })
    }

    /// The task's metrics of `graph` on `rows`.
    async fn score(&self, graph: Graph, rows: Frame) -> Result<BTreeMap<String, f64>, CodeError> {
        let (runtime, spec, task) = (self.runtime, self.spec.clone(), self.spec.target.task);
        tokio::task::spawn_blocking(move || {
            let scores =
                mlops_onnx::import::score(runtime, &spec, graph, &rows).map_err(|e| CodeError::model(e.to_string()))?;
            let labels = rows.target.as_deref().unwrap_or_default();
            Ok(mlops_shared::scoring::for_task(task, labels, &scores)
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .collect())
        })
        .await
        .map_err(|e| CodeError::Io(format!("scoring a candidate: {e}")))?
    }

    /// Checks the final graph on the data and measures it on the holdout: the artifact.
    async fn check(&self, graph: Graph, origin: Origin) -> Result<OnnxArtifact, CodeError> {
        let (runtime, spec, ids) = (self.runtime, self.spec.clone(), self.dataset_ids.clone());
        let frame = Arc::clone(&self.frame);
        tokio::task::spawn_blocking(move || {
            mlops_onnx::import::import_as(runtime, &spec, graph, ids, &frame, origin)
                .map_err(|e| CodeError::model(e.to_string()))
        })
        .await
        .map_err(|e| CodeError::Io(format!("checking the model: {e}")))?
    }

    /// One run of the program with `params` on `rows`; its progress fills `band` of the run's.
    async fn run_program(
        &self,
        params: &BTreeMap<String, f64>,
        rows: Arc<Frame>,
        env: Option<&PythonEnv>,
        stage: &str,
        band: (f64, f64),
    ) -> Result<(ProgramOutput, Graph), CodeError> {
        let runs = self.steps.work_dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(io_error("creating the runs directory"))?;
        // Named by this process's id, so a later trainer can tell a dead one's leftovers.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-{}-", std::process::id(), mlops_shared::runs::kv_key(self.job_id)))
            .tempdir_in(&runs)
            .map_err(io_error("creating the run's directory"))?;
        let layout = Layout::new(dir.path());
        let started = Instant::now();
        self.prepare(&layout, rows).await?;
        self.took("hand-over", started);
        let env_vars = self.env_vars(&layout, params, env);
        let t = &self.spec.training;
        let step = Step {
            runner: &self.steps.runner,
            cwd: &layout.code,
            status_file: &layout.status,
            command: &self.code().command,
            env: &env_vars,
            timeout: Duration::from_secs(t.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            memory_mb: t.memory_mb.unwrap_or(0),
            max_output: self.steps.max_output,
        };
        self.report(stage, band.0);
        let mut progress = |f: f64| self.report(stage, band.0 + (band.1 - band.0) * f);
        let started = Instant::now();
        let ran = step::run(&step, &mut progress).await.map_err(io_error("running the step runner"))?;
        self.took("program", started);
        self.verdict(&ran, t.memory_mb)?;
        let graph = read_model(&layout.model).map_err(|e| e.with_tail(&ran.tail))?;
        let metrics = read_metrics(&layout.model).map_err(|e| e.with_tail(&ran.tail))?;
        Ok((ProgramOutput { tail: ran.tail, metrics }, graph))
    }

    /// Unpacks the bundle and writes the rows as Parquet, off the runtime.
    async fn prepare(&self, layout: &Layout, rows: Arc<Frame>) -> Result<(), CodeError> {
        for dir in [&layout.code, &layout.model, &layout.tmp, &layout.data_dir] {
            std::fs::create_dir_all(dir).map_err(io_error("creating the run's directories"))?;
        }
        let (bundle, code) = (self.bundle.to_vec(), layout.code.clone());
        let (spec, data) = (self.spec.clone(), layout.data.clone());
        tokio::task::spawn_blocking(move || {
            // The bundle was read whole before: what fails now is the disk, which may recover.
            mlops_shared::bundle::unpack(&bundle, &code).map_err(|e| match e {
                BundleError::Io { .. } => CodeError::Io(e.to_string()),
                other => CodeError::Bundle(other),
            })?;
            let file = std::fs::File::create(&data).map_err(io_error("creating the training data file"))?;
            let out = std::io::BufWriter::new(file);
            mlops_data::write_parquet(&spec, &rows, out)
                .map_err(|e| CodeError::Io(format!("writing the training data: {e}")))
        })
        .await
        .map_err(|e| CodeError::Io(format!("preparing the run: {e}")))?
    }

    /// The program's whole environment: the contract's variables, a `PATH` with the Python
    /// environment first, and the trainer's variables the spec lists — nothing else of the
    /// trainer's.
    fn env_vars(
        &self,
        layout: &Layout,
        params: &BTreeMap<String, f64>,
        env: Option<&PythonEnv>,
    ) -> Vec<(String, String)> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let system_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let search_path = match env {
            Some(e) => format!("{}:{system_path}", path(&e.bin)),
            None => system_path,
        };
        let features: Vec<serde_json::Value> = self
            .spec
            .model_inputs()
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "type": f.kind, "categories": f.categories}))
            .collect();
        let mut vars = vec![
            ("PATH".to_owned(), search_path),
            ("HOME".into(), path(&layout.tmp)),
            ("TMPDIR".into(), path(&layout.tmp)),
            ("LANG".into(), "C.UTF-8".into()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("PYTHONHASHSEED".into(), "0".into()),
            ("MLOPS_TRAIN_DATA".into(), path(&layout.data)),
            ("MLOPS_MODEL_DIR".into(), path(&layout.model)),
            ("MLOPS_PARAMS".into(), serde_json::to_string(params).expect("numbers serialize")),
            ("MLOPS_SEED".into(), self.spec.training.seed.to_string()),
            ("MLOPS_FEATURES".into(), serde_json::Value::from(features).to_string()),
            ("MLOPS_TARGET".into(), self.spec.target.name.clone()),
            ("MLOPS_TASK".into(), self.spec.target.task.as_str().into()),
            ("MLOPS_PIPELINE".into(), self.spec.name.to_string()),
            ("MLOPS_JOB_ID".into(), self.job_id.to_owned()),
        ];
        for name in &self.code().env {
            if let Ok(value) = std::env::var(name) {
                vars.push((name.clone(), value));
            }
        }
        vars
    }

    /// Whether the run succeeded; why not, in words, when it did not.
    fn verdict(&self, ran: &Ran, memory_mb: Option<u64>) -> Result<(), CodeError> {
        let fail = |reason: String| Err(CodeError::Program { reason, tail: ran.tail.clone() });
        if ran.flooded {
            return fail(format!("printed more than {} MiB and was stopped", self.steps.max_output >> 20));
        }
        let memory = || {
            let out_of_memory = ["MemoryError", "Cannot allocate memory", "bad_alloc", "out of memory"];
            match memory_mb {
                Some(mb) if out_of_memory.iter().any(|m| ran.tail.contains(m)) => {
                    format!(", out of memory: its limit is {mb} MiB (`training.memory_mb`)")
                }
                _ => String::new(),
            }
        };
        match &ran.status {
            Status::Exited { code: Some(0), leftover: false, .. } => Ok(()),
            Status::Exited { leftover: true, code, .. } => fail(format!(
                "left processes running when it exited (status {}); they were killed: wait for the processes it starts",
                code.map_or_else(|| "signal".into(), |c| c.to_string())
            )),
            Status::Exited { code: Some(c), .. } => fail(format!("exited with status {c}{}", memory())),
            Status::Exited { signal, .. } => {
                fail(format!("was killed by signal {}{}", signal.unwrap_or_default(), memory()))
            }
            Status::TimedOut { secs } => {
                fail(format!("ran past its timeout of {secs} s (`training.timeout_secs`) and was killed"))
            }
            Status::Cancelled => fail("was stopped by the trainer".into()),
            Status::FailedToStart { error } => fail(format!("could not start: {error}")),
        }
    }
}

/// What a successful run left besides its model.
struct ProgramOutput {
    tail: String,
    metrics: BTreeMap<String, f64>,
}

/// A run's directory.
struct Layout {
    code: PathBuf,
    data_dir: PathBuf,
    data: PathBuf,
    model: PathBuf,
    tmp: PathBuf,
    status: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        Self {
            code: dir.join("code"),
            data_dir: dir.join("data"),
            data: dir.join("data/train.parquet"),
            model: dir.join("model"),
            tmp: dir.join("tmp"),
            status: dir.join("status.json"),
        }
    }
}

/// The graph the program wrote (`model.onnx`), with the external files it names.
fn read_model(dir: &Path) -> Result<Graph, CodeError> {
    let path = dir.join(mlops_shared::model::onnx_graph::GRAPH_FILE);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CodeError::model("it wrote no model.onnx to MLOPS_MODEL_DIR"),
        _ => CodeError::model(format!("reading model.onnx: {e}")),
    })?;
    let names = mlops_shared::model::onnx_graph::external_files(&bytes)
        .map_err(|e| CodeError::model(format!("model.onnx is not an ONNX model: {e}")))?;
    let mut external = Vec::with_capacity(names.len());
    for name in names {
        let content = std::fs::read(dir.join(&name))
            .map_err(|e| CodeError::model(format!("model.onnx names the external file {name:?}: {e}")))?;
        external.push((name, content));
    }
    Ok(Graph { bytes, external })
}

/// The program's own metrics (`metrics.json`, a JSON object of numbers), if it wrote them.
fn read_metrics(dir: &Path) -> Result<BTreeMap<String, f64>, CodeError> {
    match std::fs::read(dir.join("metrics.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| CodeError::model(format!("metrics.json is not a JSON object of numbers: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(CodeError::model(format!("reading metrics.json: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_of_dead_trainers_are_swept_and_live_ones_kept() {
        let work = tempfile::tempdir().unwrap();
        let steps = CodeSteps {
            runner: PathBuf::new(),
            work_dir: work.path().to_path_buf(),
            envs: Environments { root: PathBuf::new(), python: String::new(), index_url: None },
            max_output: 0,
        };
        let runs = work.path().join("runs");
        let mine = runs.join(format!("{}-job-a1", std::process::id()));
        let dead = runs.join(format!("{}-job-b2", i32::MAX));
        for dir in [&mine, &dead] {
            std::fs::create_dir_all(dir.join("data")).unwrap();
        }
        steps.sweep();
        assert!(mine.exists() && !dead.exists());
    }
}
