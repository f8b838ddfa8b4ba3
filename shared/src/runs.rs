//! Training runs as operators see them. Each job has a record in the `jobs` bucket
//! (`run.<job id>`), written by the policy when it queues the job and by the worker as it trains;
//! while it trains, the worker also publishes the record on core NATS at
//! `mlops.progress.train.<pipeline>` a few times a second. `mlops runs list` reads the records,
//! `mlops runs watch` follows the progress. Both are JSON (camelCase), for outside readers too.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::bus::{Bus, BusError, JOBS_KV};

/// The subject prefix of progress messages; the pipeline name follows.
pub const PROGRESS_PREFIX: &str = "mlops.progress.train";

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// On the work queue.
    Queued,
    /// A newer job of the same pipeline replaced it on the queue before a trainer took it.
    Superseded,
    Running,
    Succeeded,
    Failed,
    /// An alert found nothing new to train on (the same versions, spec and code as the run
    /// before); the alert waits for the next accepted version instead.
    Skipped,
}

impl RunState {
    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Superseded | Self::Succeeded | Self::Failed | Self::Skipped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Superseded => "superseded",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub job_id: String,
    pub pipeline: String,
    /// Why it runs: `new_data`, `drift`, `degradation`, `schedule` or `manual`.
    pub reason: String,
    pub state: RunState,
    pub dataset_ids: Vec<String>,
    /// The event that caused it.
    #[serde(default)]
    pub trigger_event_id: String,
    /// The worker that took it.
    #[serde(default)]
    pub trainer: String,
    /// Delivery attempt (above 1 after a worker died or failed).
    #[serde(default)]
    pub attempt: u64,
    /// Unix ms; 0 when not yet.
    #[serde(default)]
    pub queued_ms: i64,
    #[serde(default)]
    pub started_ms: i64,
    #[serde(default)]
    pub finished_ms: i64,
    /// What the worker is doing, and how far the run has come, in [0, 1].
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub progress: f64,
    #[serde(default)]
    pub artifact_sha256: String,
    /// Holdout metrics of the model made.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Why it failed (or the last transient failure while it is retried).
    #[serde(default)]
    pub error: String,
    /// The job that replaced a superseded one.
    #[serde(default)]
    pub superseded_by: String,
    /// The end of what a code step's program printed (its last 64 KiB), stdout and stderr as
    /// they came.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Seconds a code step spent in each phase: `bundle` (fetching it), `read data`,
    /// `environment`, `hand-over` (unpacking and writing the rows as Parquet), `program`, `check`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases: BTreeMap<String, f64>,
}

impl Run {
    /// The record of `job`, queued at `queued_ms` (Unix ms).
    pub fn queued(job: &mlops_proto::TrainJob, queued_ms: i64) -> Self {
        Self {
            job_id: job.job_id.clone(),
            pipeline: job.pipeline.clone(),
            reason: reason_name(job.reason),
            state: RunState::Queued,
            dataset_ids: job.dataset_ids.clone(),
            trigger_event_id: job.trigger_event_id.clone(),
            trainer: String::new(),
            attempt: 0,
            queued_ms,
            started_ms: 0,
            finished_ms: 0,
            stage: "queued".into(),
            progress: 0.0,
            artifact_sha256: String::new(),
            metrics: BTreeMap::new(),
            error: String::new(),
            superseded_by: String::new(),
            output: String::new(),
            phases: BTreeMap::new(),
        }
    }

    /// The subject its progress is published on.
    pub fn progress_subject(&self) -> String {
        format!("{PROGRESS_PREFIX}.{}", self.pipeline)
    }
}

/// The run records in the `jobs` bucket.
#[derive(Clone)]
pub struct Runs {
    kv: async_nats::jetstream::kv::Store,
}

impl Runs {
    pub async fn open(bus: &Bus) -> Result<Self, BusError> {
        Ok(Self { kv: bus.kv(JOBS_KV).await? })
    }

    /// Stores `run` as the record of its job.
    pub async fn put(&self, run: &Run) -> Result<(), BusError> {
        let bytes = serde_json::to_vec(run).map_err(|e| err(e.to_string()))?;
        self.kv.put(run_key(&run.job_id), bytes.into()).await.map(drop).map_err(|e| err(e.to_string()))
    }

    /// Stores `run` unless its job already has a record; whether it stored it.
    pub async fn create(&self, run: &Run) -> Result<bool, BusError> {
        use async_nats::jetstream::kv::CreateErrorKind;
        let bytes = serde_json::to_vec(run).map_err(|e| err(e.to_string()))?;
        match self.kv.create(run_key(&run.job_id), bytes.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The record of `job_id`, if any.
    pub async fn get(&self, job_id: &str) -> Result<Option<Run>, BusError> {
        let bytes = self.kv.get(run_key(job_id)).await.map_err(|e| err(e.to_string()))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The pipeline's accepted training versions, oldest first (empty before the first one).
    pub async fn history(&self, pipeline: &str) -> Result<History, BusError> {
        match self.kv.get(history_key(pipeline)).await.map_err(|e| err(e.to_string()))? {
            Some(bytes) if !bytes.is_empty() => {
                serde_json::from_slice(&bytes).map_err(|e| err(format!("dataset history of `{pipeline}`: {e}")))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Waits until `pipeline`'s history holds `dataset` — the trainer records a validated
    /// training version just after its verdict — watching the record rather than polling it;
    /// whether it did within `timeout`.
    pub async fn wait_for_dataset(
        &self,
        pipeline: &str,
        dataset: &str,
        timeout: std::time::Duration,
    ) -> Result<bool, BusError> {
        let seen = self
            .watch_until(history_key(pipeline), timeout, |value| {
                let history: History = serde_json::from_slice(value).unwrap_or_default();
                history.iter().any(|a| a.id == dataset).then_some(())
            })
            .await?;
        Ok(seen.is_some())
    }

    /// Waits until the record of `job_id` is final (the worker writes it just after announcing
    /// the model), watching it; the record, or `None` when it did not end within `timeout`.
    pub async fn wait_final(&self, job_id: &str, timeout: std::time::Duration) -> Result<Option<Run>, BusError> {
        self.watch_until(run_key(job_id), timeout, |value| {
            serde_json::from_slice::<Run>(value).ok().filter(|r| r.state.is_final())
        })
        .await
    }

    /// Watches `key` (its current value first) until `found` finds what it looks for in a value;
    /// `None` when `timeout` passes first.
    async fn watch_until<T>(
        &self,
        key: String,
        timeout: std::time::Duration,
        found: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Option<T>, BusError> {
        use futures::StreamExt as _;
        let mut watch = self.kv.watch_with_history(key).await.map_err(|e| err(e.to_string()))?;
        let seen = async {
            while let Some(entry) = watch.next().await {
                let entry = entry.map_err(|e| err(e.to_string()))?;
                if let Some(t) = found(&entry.value) {
                    return Ok(Some(t));
                }
            }
            Ok(None)
        };
        tokio::time::timeout(timeout, seen).await.unwrap_or(Ok(None))
    }

    /// Every record, newest queued first.
    pub async fn list(&self) -> Result<Vec<Run>, BusError> {
        let mut watch = self.kv.watch_with_history("run.>").await.map_err(|e| err(e.to_string()))?;
        let mut runs = BTreeMap::new();
        // The watch replays the last value of every key, then waits for changes: stop when the
        // replay is done (`delta` 0), or after a quiet while when there is nothing to replay.
        while let Ok(Some(entry)) = tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            match serde_json::from_slice::<Run>(&entry.value) {
                Ok(run) => runs.insert(entry.key.clone(), run),
                Err(_) => runs.remove(&entry.key),
            };
            if entry.delta == 0 {
                break;
            }
        }
        let mut runs: Vec<Run> = runs.into_values().collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.queued_ms.max(r.started_ms)));
        Ok(runs)
    }
}

fn err(message: String) -> BusError {
    BusError::Kv { bucket: JOBS_KV, message }
}

/// A training reason as runs show it: `new_data`, `drift`, `degradation`, `schedule`, `manual`.
pub fn reason_name(reason: i32) -> String {
    mlops_proto::TrainReason::try_from(reason)
        .map_or("unspecified", |r| r.as_str_name())
        .trim_start_matches("TRAIN_REASON_")
        .to_ascii_lowercase()
}

/// A pipeline's accepted training versions: (dataset id, accepted at, Unix ms), oldest first.
/// The trainer's policy appends each validated training version; the newest is the pipeline's
/// newest validated data.
pub type History = Vec<crate::spec::Accepted>;

/// The key of a pipeline's [`History`] in the jobs bucket.
pub fn history_key(pipeline: &str) -> String {
    format!("history.{}", kv_key(pipeline))
}

/// The key of a job's run record.
pub fn run_key(job_id: &str) -> String {
    format!("run.{}", kv_key(job_id))
}

/// `id` as one key-value key token (keys allow `[-/_=.a-zA-Z0-9]`; dots would split it).
pub fn kv_key(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_=".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_camel_case_json_and_keys_are_one_token() {
        let run = Run {
            job_id: "churn-data-ab.c".into(),
            pipeline: "churn".into(),
            reason: "new_data".into(),
            state: RunState::Running,
            dataset_ids: vec!["ab".into()],
            trigger_event_id: String::new(),
            trainer: "host-1".into(),
            attempt: 1,
            queued_ms: 1,
            started_ms: 2,
            finished_ms: 0,
            stage: "training".into(),
            progress: 0.5,
            artifact_sha256: String::new(),
            metrics: BTreeMap::new(),
            error: String::new(),
            superseded_by: String::new(),
            output: String::new(),
            phases: BTreeMap::new(),
        };
        let json = serde_json::to_string(&run).unwrap();
        assert!(json.contains(r#""jobId":"churn-data-ab.c""#) && json.contains(r#""state":"running""#), "{json}");
        assert_eq!(serde_json::from_str::<Run>(&json).unwrap(), run);
        assert_eq!(run_key(&run.job_id), "run.churn-data-ab_c");
        assert_eq!(run.progress_subject(), "mlops.progress.train.churn");
        assert_eq!(reason_name(mlops_proto::TrainReason::NewData as i32), "new_data");
    }
}
