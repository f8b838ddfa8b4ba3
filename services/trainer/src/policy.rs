//! The continuous-training policy: which events become training jobs, on which data, and when.
//! Each accepted training version is appended to its pipeline's history (the `jobs` bucket). New
//! data, drift and degradation alerts, schedule slots and manual requests each queue a job on the
//! spec's training window over that history (the newest version by default).
//!
//! A drift or degradation alert whose training window holds nothing new — the same versions, the
//! same spec and code as the last job queued — trains nothing: its run is recorded as skipped,
//! and the alert stays armed until the next accepted version arrives, which then queues the
//! retraining it asked for (even where new data alone does not trigger training).
//!
//! Bursts are tamed without timers that a crash could lose: an event that must wait (for the
//! debounce window to close, or the cooldown to end) is handed back to JetStream with a delay, and
//! when it comes back it queues a job unless a job queued meanwhile already covers it. Job ids are
//! derived from their cause and are the jobs' `Nats-Msg-Id`, so a redelivered trigger never queues
//! a second job.

use std::time::Duration;

use mlops_proto as pb;
use mlops_shared::bus::{Bus, JOBS_KV};
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::now_unix_ms;
use mlops_shared::runs::{History, Run, RunState, Runs, history_key, kv_key, reason_name};
use mlops_shared::spec::{
    Accepted, Environment, Origin, PipelineSpec, SpecStore, TriggerEvent, TriggerSpec, WindowSpec,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::error::TrainerError;

/// The policy, shared by the trainer's consumers.
#[derive(Clone)]
pub struct Policy {
    bus: Bus,
    jobs: async_nats::jetstream::kv::Store,
    specs: SpecStore,
    runs: Runs,
    slots: mlops_shared::schedule::Slots,
    /// Where versions' content is: a version whose content is gone (erased) is not trained on.
    datasets: mlops_shared::objects::Objects,
}

impl Policy {
    /// Opens the job-state bucket.
    pub async fn new(bus: Bus) -> anyhow::Result<Self> {
        let jobs = bus.kv(JOBS_KV).await?;
        let specs = SpecStore::open(&bus).await?;
        let runs = Runs::open(&bus).await?;
        let slots = mlops_shared::schedule::Slots::open(&bus).await?;
        let datasets = bus.objects(mlops_shared::bus::DATASETS_BUCKET).await?;
        Ok(Self { bus, jobs, specs, runs, slots, datasets })
    }

    /// New validated data: append it to the pipeline's history, and queue a job on the training
    /// window once the debounce window and the cooldown allow. Serving-time data is never trained on.
    pub async fn on_validated(&self, e: Envelope<pb::DataValidated>) -> Result<(), TrainerError> {
        let v = &e.payload;
        if Environment::parse(&v.environment) != Ok(Environment::Training) {
            tracing::info!(pipeline = %v.pipeline, environment = %v.environment, "not training data; no job");
            return Ok(());
        }
        let origin = Origin::parse(&v.origin).map_err(|m| TrainerError::BadEvent(format!("data.validated: {m}")))?;
        // Erased (or deleted) while it was being validated: nothing left to train on.
        if self.datasets.size_of(&v.dataset_id).await?.is_none() {
            info!(pipeline = %v.pipeline, dataset = %v.dataset_id, "validated, but its content is gone (erased): not trained on");
            return Ok(());
        }
        if !v.erased_from.is_empty() {
            // An erasure's successor takes its predecessor's place; the retraining the erasure
            // asks for (`on_erased`) waits for it, and new data alone it is not.
            let successor = Accepted::new(&v.dataset_id, v.arrived_unix_ms, origin);
            self.change_history(&v.pipeline, |history| replace(history, &v.erased_from, &successor)).await?;
            info!(pipeline = %v.pipeline, dataset = %v.dataset_id, erased = %v.erased_from, "an erasure's successor took its place");
            return Ok(());
        }
        let history = self.append(&v.pipeline, &v.dataset_id, v.arrived_unix_ms, origin).await?;
        let spec = self.spec(&v.pipeline).await?;
        let triggers = spec.training.triggers.clone().unwrap_or_default();
        let state = self.trigger_state(&v.pipeline).await?;
        // An alert that found nothing new waits for this: it retrains even where new data alone
        // does not.
        let armed = state.armed.clone();
        if !triggers.fires_on(TriggerEvent::NewData) && armed.is_none() {
            info!(pipeline = %v.pipeline, "new data does not trigger training (training.triggers.on)");
            return Ok(());
        }
        if state.covers(&history, &v.dataset_id) {
            info!(pipeline = %v.pipeline, dataset = %v.dataset_id, job = %state.job_id, "already in a queued job");
            return Ok(());
        }
        // The debounce window opens with the oldest version no job has covered yet.
        let first_new = history.iter().find(|a| !state.covers(&history, &a.id)).map_or(0, |a| a.arrived_ms);
        let due = (first_new + secs_ms(triggers.debounce_secs)).max(state.cooldown_until(&triggers));
        defer_until(due)?;
        let newest = history.last().map(|a| a.id.as_str()).unwrap_or_default();
        // 64 bits of the newest version's sha256 name the job: unique, and short enough to read.
        let newest = newest.get(..16).unwrap_or(newest);
        let Some(armed) = armed else {
            let job_id = format!("{}-data-{newest}", v.pipeline);
            let reason = pb::TrainReason::NewData;
            return self.queue_on_window(&spec, job_id, reason, &history, &e.id, &e.follow(), String::new).await;
        };
        if self.nothing_new(&spec, &state, &history).await? {
            info!(pipeline = %v.pipeline, last = %state.job_id, "the new version is outside the training window; the alert waits on");
            return Ok(());
        }
        let job_id = format!("{}-{newest}", armed.job_id);
        let reason = pb::TrainReason::try_from(armed.reason).unwrap_or(pb::TrainReason::Drift);
        info!(pipeline = %v.pipeline, alert = %armed.trigger_event_id, "new data for an alert that was waiting for it");
        self.queue_on_window(&spec, job_id, reason, &history, &armed.trigger_event_id, &e.follow(), String::new).await
    }

    /// A rejected version — judged again under a stricter spec, say — leaves the history, so no
    /// later run trains on it.
    pub async fn on_rejected(&self, e: Envelope<pb::DataRejected>) -> Result<(), TrainerError> {
        let r = &e.payload;
        self.forget(&r.pipeline, &[r.dataset_id.as_str()]).await?;
        Ok(())
    }

    /// Data was erased: the erased versions leave the history, and when the last job trained on
    /// any of them (and `training.triggers.on` has `erasure`) a run retrains on the window without
    /// them, once the versions written in their place are accepted (or [`ERASURE_WAIT_MS`] has
    /// passed: a successor validation rejected is not waited for).
    pub async fn on_erased(&self, e: Envelope<pb::DataErased>) -> Result<(), TrainerError> {
        let erased = &e.payload;
        let gone: Vec<&str> = erased.versions.iter().map(|v| v.dataset_id.as_str()).collect();
        let history = self.forget(&erased.pipeline, &gone).await?;
        let state = self.trigger_state(&erased.pipeline).await?;
        let trained_on_erased = state.window.iter().any(|id| gone.contains(&id.as_str()));
        // Nothing was trained on the versions (a feature view's, say, which has no spec here).
        let spec = match trained_on_erased {
            true => Some(self.spec(&erased.pipeline).await?),
            false => None,
        };
        let fires = |s: &PipelineSpec| s.training.triggers.clone().unwrap_or_default().fires_on(TriggerEvent::Erasure);
        let Some(spec) = spec.filter(fires) else {
            info!(pipeline = %erased.pipeline, erasure = %erased.erasure_id, trained_on_erased, "erased versions left the history; no retraining");
            return Ok(());
        };
        let waiting = erased
            .versions
            .iter()
            .filter(|v| !v.successor_id.is_empty() && v.environment == Environment::Training.as_str())
            .any(|v| !history.iter().any(|a| a.id == v.successor_id));
        if waiting && now_unix_ms() < erased.erased_unix_ms + ERASURE_WAIT_MS {
            return Err(TrainerError::Deferred(Duration::from_secs(if gone.len() > 10 { 5 } else { 1 })));
        }
        let job_id = format!("{}-{}", erased.pipeline, erased.erasure_id);
        let no_data = || {
            format!(
                "`{}` has no accepted training version after erasure {}: every one was erased, or its successor is \
                 not accepted yet",
                erased.pipeline, erased.erasure_id
            )
        };
        self.queue_on_window(&spec, job_id, pb::TrainReason::Erasure, &history, &e.id, &e.follow(), no_data).await
    }

    /// A drift alert: retrain on the training window, once the cooldown allows.
    pub async fn on_drift(&self, e: Envelope<pb::DriftDetected>) -> Result<(), TrainerError> {
        let d = &e.payload;
        let job_id = format!("{}-drift-{}", d.pipeline, kv_key(&d.alert_id));
        self.on_alert(&e, &d.pipeline, TriggerEvent::Drift, job_id, pb::TrainReason::Drift).await
    }

    /// Label-based quality fell under its floor: retrain on the training window, once the
    /// cooldown allows.
    pub async fn on_degraded(&self, e: Envelope<pb::PerformanceDegraded>) -> Result<(), TrainerError> {
        let d = &e.payload;
        info!(pipeline = %d.pipeline, metric = %d.metric, value = d.value, floor = d.floor, "performance degraded");
        let job_id = format!("{}-degradation-{}", d.pipeline, kv_key(&d.alert_id));
        self.on_alert(&e, &d.pipeline, TriggerEvent::Degradation, job_id, pb::TrainReason::Degradation).await
    }

    async fn on_alert<E>(
        &self,
        e: &Envelope<E>,
        pipeline: &str,
        kind: TriggerEvent,
        job_id: String,
        reason: pb::TrainReason,
    ) -> Result<(), TrainerError> {
        let spec = self.spec(pipeline).await?;
        let triggers = spec.training.triggers.clone().unwrap_or_default();
        if !triggers.fires_on(kind) {
            info!(pipeline, trigger = ?kind, "this alert does not trigger training (training.triggers.on)");
            return Ok(());
        }
        let state = self.trigger_state(pipeline).await?;
        if state.queued_ms >= e.published_ms && e.published_ms > 0 {
            info!(pipeline, job = %state.job_id, "a job queued since the alert already retrains");
            return Ok(());
        }
        let history = self.history(pipeline).await?.0;
        if self.nothing_new(&spec, &state, &history).await? {
            return self.skip(pipeline, job_id, reason, e, &state).await;
        }
        defer_until(state.cooldown_until(&triggers))?;
        self.queue_on_window(&spec, job_id, reason, &history, &e.id, &e.follow(), || {
            format!("{kind:?} alert on `{pipeline}` but no validated dataset to retrain on")
        })
        .await
    }

    /// Whether `spec`'s training window over `history` holds nothing the last job (in `state`)
    /// did not: the same versions under the same spec and code, and that job did not fail.
    async fn nothing_new(
        &self,
        spec: &PipelineSpec,
        state: &TriggerState,
        history: &History,
    ) -> Result<bool, TrainerError> {
        if state.job_id.is_empty() || state.model_hash.is_empty() || history.is_empty() {
            return Ok(false);
        }
        let window = WindowSpec::select(spec.training.window.as_ref(), history, now_unix_ms());
        if window != state.window || spec.model_hash() != state.model_hash {
            return Ok(false);
        }
        Ok(!self.runs.get(&state.job_id).await?.is_some_and(|r| r.state == RunState::Failed))
    }

    /// Records job `job_id` as skipped, with nothing new to train on since the last job (in
    /// `state`: its window is this one), and arms the alert: the next accepted version queues it.
    async fn skip<E>(
        &self,
        pipeline: &str,
        job_id: String,
        reason: pb::TrainReason,
        e: &Envelope<E>,
        state: &TriggerState,
    ) -> Result<(), TrainerError> {
        let last = state.job_id.as_str();
        let job = pb::TrainJob {
            job_id: job_id.clone(),
            pipeline: pipeline.to_owned(),
            dataset_ids: state.window.clone(),
            reason: reason as i32,
            trigger_event_id: e.id.clone(),
        };
        let mut run = Run::queued(&job, now_unix_ms());
        run.state = RunState::Skipped;
        run.stage = format!(
            "nothing new to train on: the same {} dataset version(s), spec and code as {last}; waiting for the next \
             accepted version",
            job.dataset_ids.len()
        );
        run.finished_ms = run.queued_ms;
        // A redelivered alert finds its record there.
        if self.runs.create(&run).await? {
            info!(pipeline, job = %job_id, last, "alert skipped: nothing new to train on; armed for new data");
            metrics::counter!("mlops_jobs_skipped_total", "pipeline" => pipeline.to_owned()).increment(1);
        }
        let armed = Armed { job_id, reason: reason as i32, trigger_event_id: e.id.clone() };
        // Armed on the job it found nothing new since: a job queued meanwhile may hold new data.
        self.change_trigger(pipeline, |state| {
            if state.job_id != last {
                return false;
            }
            state.armed = Some(armed.clone());
            true
        })
        .await
    }

    /// A spec whose model-shaping parts changed was applied: train on the window under it now
    /// (no debounce, no cooldown: the change is the news), unless `training.triggers.on` leaves
    /// `spec_changed` out or there is no data yet.
    pub async fn on_applied(&self, e: Envelope<pb::PipelineApplied>) -> Result<(), TrainerError> {
        let a = &e.payload;
        if !a.model_changed {
            info!(pipeline = %a.pipeline, revision = a.revision, "spec applied; nothing that shapes the model changed");
            return Ok(());
        }
        let spec = self.spec(&a.pipeline).await?;
        if spec.model_hash() != a.model_hash {
            info!(pipeline = %a.pipeline, revision = a.revision, "a spec shaping another model was applied since");
            return Ok(());
        }
        if !spec.training.triggers.clone().unwrap_or_default().fires_on(TriggerEvent::SpecChanged) {
            info!(pipeline = %a.pipeline, "a spec change does not trigger training (training.triggers.on)");
            return Ok(());
        }
        let history = self.history(&a.pipeline).await?.0;
        if history.is_empty() {
            info!(pipeline = %a.pipeline, "spec changed; no accepted training data to train on yet");
            return Ok(());
        }
        // Per revision: a revert to an earlier spec trains again, on today's data.
        let hash = a.spec_hash.get(..16).unwrap_or(&a.spec_hash);
        let job_id = format!("{}-spec-r{}-{hash}", a.pipeline, a.revision);
        info!(pipeline = %a.pipeline, revision = a.revision, commit = %a.commit, "the model-shaping spec changed");
        self.queue_on_window(&spec, job_id, pb::TrainReason::SpecChanged, &history, &e.id, &e.follow(), String::new)
            .await
    }

    /// A manual request: train on the window now (no debounce, no cooldown).
    pub async fn on_requested(&self, e: Envelope<pb::TrainRequested>) -> Result<(), TrainerError> {
        let r = &e.payload;
        let history = self.history(&r.pipeline).await?.0;
        let request = if r.request_id.is_empty() { e.id.as_str() } else { r.request_id.as_str() };
        info!(pipeline = %r.pipeline, by = %r.requested_by, request, "training requested");
        let job_id = format!("{}-manual-{}", r.pipeline, kv_key(request));
        let no_data = || format!("train.requested: pipeline `{}` has no accepted training data yet", r.pipeline);
        // Said before the spec is read, so that a pipeline never applied gets the same answer.
        if history.is_empty() {
            return Err(TrainerError::NothingToTrainOn(no_data()));
        }
        let spec = self.spec(&r.pipeline).await?;
        self.queue_on_window(&spec, job_id, pb::TrainReason::Manual, &history, &e.id, &e.follow(), no_data).await
    }

    /// Fires the schedules of all pipelines every second until `shutdown`. Each slot of a
    /// pipeline's `training.triggers.schedule` queues one job, whichever trainer sees it first (the
    /// slot is recorded with a revision check, and the job id is derived from it). Slots missed
    /// while no trainer ran make one job when one starts; the slots before a schedule was first
    /// seen make none.
    pub async fn run_schedules(&self, shutdown: CancellationToken) {
        let wanted = |s: &PipelineSpec| s.training.triggers.as_ref().is_some_and(|t| t.schedule.is_some());
        mlops_shared::schedule::every_second(&self.specs, shutdown, wanted, |spec| async move {
            self.fire_schedule(&spec).await.map_err(|e| e.to_string())
        })
        .await;
    }

    async fn fire_schedule(&self, spec: &PipelineSpec) -> Result<(), TrainerError> {
        let Some(Ok(cron)) = spec.training.triggers.as_ref().and_then(|t| t.cron()) else { return Ok(()) };
        let pipeline = spec.name.as_str();
        let key = format!("schedule.{}", kv_key(pipeline));
        let Some(due) = self.slots.due(&key, &cron).await? else { return Ok(()) };
        let history = self.history(pipeline).await?.0;
        if history.is_empty() {
            info!(pipeline, "scheduled run skipped: no accepted training data yet");
        } else {
            let job_id = format!("{pipeline}-schedule-{}", due.slot_ms);
            let ctx = EventContext::new_run(job_id.clone());
            self.queue_on_window(spec, job_id, pb::TrainReason::Schedule, &history, "", &ctx, String::new).await?;
        }
        // Another trainer may have recorded the slot first; its job has the same id.
        self.slots.fired(&key, due).await;
        Ok(())
    }

    /// Queues job `job_id` of `spec`'s pipeline on its training window over `history`. An empty
    /// history leaves nothing to train on: a permanent error, `no_data` saying why.
    #[allow(clippy::too_many_arguments)] // each is one fact about the job
    async fn queue_on_window(
        &self,
        spec: &PipelineSpec,
        job_id: String,
        reason: pb::TrainReason,
        history: &History,
        trigger_event_id: &str,
        ctx: &EventContext,
        no_data: impl FnOnce() -> String,
    ) -> Result<(), TrainerError> {
        if history.is_empty() {
            return Err(TrainerError::NothingToTrainOn(no_data()));
        }
        let pipeline = spec.name.as_str();
        let dataset_ids = WindowSpec::select(spec.training.window.as_ref(), history, now_unix_ms());
        if dataset_ids.is_empty() {
            return Err(TrainerError::NothingToTrainOn(format!(
                "`training.window` of `{pipeline}` selects none of its {} accepted version(s) (their origins: {})",
                history.len(),
                origins(history)
            )));
        }
        let job = pb::TrainJob {
            job_id,
            pipeline: pipeline.to_owned(),
            dataset_ids,
            reason: reason as i32,
            trigger_event_id: trigger_event_id.to_owned(),
        };
        // The record goes first, so a worker taking the job at once finds it.
        let queued_ms = now_unix_ms();
        let run = Run::queued(&job, queued_ms);
        // A redelivered trigger finds the record there, perhaps further on: it is left alone, but
        // the trigger state is brought up to it (a crash may have come between the two).
        let first = self.runs.create(&run).await?;
        self.queue(&job, ctx).await?;
        let queued_ms = match first {
            true => queued_ms,
            false => self.runs.get(&job.job_id).await?.map_or(queued_ms, |r| r.queued_ms),
        };
        let previous = self.trigger_state(pipeline).await?.job_id;
        let newest = history.last().map(|a| a.id.clone()).unwrap_or_default();
        let state = TriggerState {
            queued_ms,
            newest,
            job_id: job.job_id.clone(),
            window: job.dataset_ids.clone(),
            model_hash: spec.model_hash(),
            armed: None,
        };
        self.record_queued(pipeline, state).await?;
        if !first {
            return Ok(());
        }
        // The queue keeps one waiting job per pipeline: one still waiting was replaced by this.
        if !previous.is_empty()
            && previous != job.job_id
            && let Some(mut old) = self.runs.get(&previous).await?
            && old.state == RunState::Queued
        {
            old.state = RunState::Superseded;
            old.stage = "superseded".into();
            old.superseded_by = job.job_id;
            old.finished_ms = queued_ms;
            self.runs.put(&old).await?;
        }
        Ok(())
    }

    /// The pipeline's trigger state; the default when no job was queued yet.
    async fn trigger_state(&self, pipeline: &str) -> Result<TriggerState, TrainerError> {
        let entry =
            self.jobs.get(trigger_key(pipeline)).await.map_err(TrainerError::jobs("reading the trigger state"))?;
        Ok(entry.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default())
    }

    /// Records a queued job. A later record is never replaced by an older one, and an armed
    /// alert stays armed unless the job trains on something new.
    async fn record_queued(&self, pipeline: &str, queued: TriggerState) -> Result<(), TrainerError> {
        self.change_trigger(pipeline, |state| state.record(&queued)).await
    }

    /// Changes the trigger state with `change` (which says whether it changed anything), safely
    /// against other trainers: the write names the revision it read, and a conflict reads again.
    async fn change_trigger(
        &self,
        pipeline: &str,
        change: impl Fn(&mut TriggerState) -> bool,
    ) -> Result<(), TrainerError> {
        for _ in 0..20 {
            let entry = self
                .jobs
                .entry(trigger_key(pipeline))
                .await
                .map_err(TrainerError::jobs("reading the trigger state"))?;
            let revision = entry.as_ref().map(|e| e.revision);
            let mut state: TriggerState = entry.and_then(|e| serde_json::from_slice(&e.value).ok()).unwrap_or_default();
            if !change(&mut state) {
                return Ok(());
            }
            let bytes: bytes::Bytes = serde_json::to_vec(&state).expect("a trigger state always encodes").into();
            let written = match revision {
                Some(r) => self.jobs.update(trigger_key(pipeline), bytes, r).await.is_ok(),
                None => self.jobs.create(trigger_key(pipeline), bytes).await.is_ok(),
            };
            if written {
                return Ok(());
            }
        }
        Err(TrainerError::KeptChanging { what: "trigger state", pipeline: pipeline.to_owned() })
    }

    async fn spec(&self, pipeline: &str) -> Result<PipelineSpec, TrainerError> {
        self.specs.get(pipeline).await?.ok_or_else(|| TrainerError::UnknownPipeline(pipeline.to_owned()))
    }

    /// The pipeline's accepted training versions, oldest first, and the bucket revision read.
    async fn history(&self, pipeline: &str) -> Result<(History, Option<u64>), TrainerError> {
        let entry =
            self.jobs.entry(history_key(pipeline)).await.map_err(TrainerError::jobs("reading the dataset history"))?;
        match entry {
            Some(e) if !e.value.is_empty() => {
                let history: History = serde_json::from_slice(&e.value)
                    .map_err(|source| TrainerError::BadHistory { pipeline: pipeline.to_owned(), source })?;
                Ok((history, Some(e.revision)))
            }
            Some(e) => Ok((Vec::new(), Some(e.revision))),
            None => Ok((Vec::new(), None)),
        }
    }

    /// Adds `dataset` (once) to the history in its place by `arrived_ms` (the time its content
    /// first arrived; now when unknown), so that a version judged again later does not pass for
    /// the newest.
    async fn append(
        &self,
        pipeline: &str,
        dataset: &str,
        arrived_ms: i64,
        origin: Origin,
    ) -> Result<History, TrainerError> {
        let at = if arrived_ms > 0 { arrived_ms } else { mlops_shared::now_unix_ms() };
        self.change_history(pipeline, |history| {
            if history.iter().any(|a| a.id == dataset) {
                return false;
            }
            let place = history.partition_point(|a| a.arrived_ms <= at);
            history.insert(place, Accepted::new(dataset, at, origin));
            if history.len() > MAX_HISTORY {
                history.drain(..history.len() - MAX_HISTORY);
            }
            true
        })
        .await
    }

    /// Takes versions `ids` out of `pipeline`'s history: no later run trains on them.
    async fn forget(&self, pipeline: &str, ids: &[&str]) -> Result<History, TrainerError> {
        self.change_history(pipeline, |history| {
            let before = history.len();
            history.retain(|a| !ids.contains(&a.id.as_str()));
            history.len() != before
        })
        .await
    }

    /// Changes the history with `change` (which says whether it changed anything), safely
    /// against other trainers doing the same: the write names the revision it read, and a
    /// conflict reads again.
    async fn change_history(
        &self,
        pipeline: &str,
        change: impl Fn(&mut History) -> bool,
    ) -> Result<History, TrainerError> {
        for _ in 0..20 {
            let (mut history, revision) = self.history(pipeline).await?;
            if !change(&mut history) {
                return Ok(history);
            }
            let bytes = serde_json::to_vec(&history).expect("a history always encodes");
            let written = match revision {
                Some(r) => self.jobs.update(history_key(pipeline), bytes.into(), r).await.is_ok(),
                None => self.jobs.create(history_key(pipeline), bytes.into()).await.is_ok(),
            };
            if written {
                return Ok(history);
            }
        }
        Err(TrainerError::KeptChanging { what: "dataset history", pipeline: pipeline.to_owned() })
    }

    /// Publishes `job`; true when the server already had it (a duplicate, dropped).
    async fn queue(&self, job: &pb::TrainJob, ctx: &EventContext) -> Result<bool, TrainerError> {
        let published = self.bus.publish(&job.job_id, ctx, job).await?;
        info!(job = %job.job_id, reason = %reason_name(job.reason), duplicate = published.duplicate, "training job queued");
        if !published.duplicate {
            metrics::counter!("mlops_jobs_queued_total", "pipeline" => job.pipeline.clone()).increment(1);
        }
        Ok(published.duplicate)
    }
}

/// How long a retraining after an erasure waits for the versions written in the erased ones'
/// place to be accepted.
const ERASURE_WAIT_MS: i64 = 300_000;

/// Puts `successor` in `erased`'s place in `history` (or by its arrival, when `erased` has left
/// already); whether anything changed.
fn replace(history: &mut History, erased: &str, successor: &Accepted) -> bool {
    if history.iter().any(|a| a.id == successor.id) {
        return false;
    }
    match history.iter().position(|a| a.id == erased) {
        Some(at) => history[at] = successor.clone(),
        None => {
            let place = history.partition_point(|a| a.arrived_ms <= successor.arrived_ms);
            history.insert(place, successor.clone());
        }
    }
    true
}

/// Accepted versions kept per pipeline: more than any window by versions needs, and small enough
/// (about 170 kB) for one key-value entry.
const MAX_HISTORY: usize = 2_000;

fn trigger_key(pipeline: &str) -> String {
    format!("trigger.{}", kv_key(pipeline))
}

/// The last job queued for a pipeline (`trigger.<pipeline>` in the jobs bucket): what the debounce
/// window and the cooldown are measured from, and what an alert compares its window with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TriggerState {
    /// When it was queued (Unix ms).
    queued_ms: i64,
    /// The newest accepted version when it was queued: it and every older version are covered.
    newest: String,
    job_id: String,
    /// The versions it trains on, and the spec's model hash (spec and code) it was queued under.
    #[serde(default)]
    window: Vec<String>,
    #[serde(default)]
    model_hash: String,
    /// An alert that found nothing new since, waiting for the next accepted version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    armed: Option<Armed>,
}

/// An alert waiting for new data: the job it would have queued, why, and the alert's event id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Armed {
    job_id: String,
    reason: i32,
    trigger_event_id: String,
}

/// How many accepted versions of each origin `history` holds, e.g. `3 upload, 1 feedback`.
fn origins(history: &History) -> String {
    Origin::ALL
        .into_iter()
        .filter_map(|o| {
            let n = history.iter().filter(|a| a.origin == o).count();
            (n > 0).then(|| format!("{n} {}", o.as_str()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl TriggerState {
    /// Takes in the job `queued` describes, unless this state is later or already has it; an
    /// armed alert stays armed when the job trains on nothing new. Whether it changed.
    fn record(&mut self, queued: &TriggerState) -> bool {
        if self.queued_ms > queued.queued_ms || (self.job_id == queued.job_id && self.window == queued.window) {
            return false;
        }
        let same = queued.window == self.window && queued.model_hash == self.model_hash;
        let armed = if same { self.armed.take() } else { None };
        *self = TriggerState { armed, ..queued.clone() };
        true
    }

    /// Whether the job recorded here was queued after `dataset` was accepted (so trains on it,
    /// or on newer data in its place).
    fn covers(&self, history: &History, dataset: &str) -> bool {
        let at = |id: &str| history.iter().position(|a| a.id == id);
        match (at(&self.newest), at(dataset)) {
            (Some(newest), Some(d)) => d <= newest,
            // The recorded version has left the history (it is older than all kept): not covered.
            _ => false,
        }
    }

    /// When the cooldown after the last queued job ends (Unix ms).
    fn cooldown_until(&self, triggers: &TriggerSpec) -> i64 {
        if self.queued_ms == 0 { 0 } else { self.queued_ms + secs_ms(triggers.cooldown_secs) }
    }
}

fn secs_ms(secs: f64) -> i64 {
    (secs * 1000.0) as i64
}

/// `Ok` once `due` (Unix ms) has passed; else asks for the event again then.
fn defer_until(due: i64) -> Result<(), TrainerError> {
    let wait = due - now_unix_ms();
    if wait > 0 {
        return Err(TrainerError::Deferred(Duration::from_millis(wait as u64)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(queued_ms: i64, job: &str, window: &[&str], hash: &str) -> TriggerState {
        TriggerState {
            queued_ms,
            newest: window.last().map(|w| w.to_string()).unwrap_or_default(),
            job_id: job.into(),
            window: window.iter().map(|w| w.to_string()).collect(),
            model_hash: hash.into(),
            armed: None,
        }
    }

    #[test]
    fn an_erasures_successor_takes_its_predecessors_place_or_its_own_by_arrival() {
        let a = |id: &str, at: i64| Accepted::new(id, at, Origin::Upload);
        let mut history = vec![a("old", 10), a("newer", 20)];
        assert!(replace(&mut history, "old", &a("succ", 10)));
        assert_eq!(history, [a("succ", 10), a("newer", 20)]);
        assert!(!replace(&mut history, "old", &a("succ", 10)), "a redelivery changes nothing");
        // The erased version left first (`data.erased` came before the verdict): placed by arrival.
        let mut history = vec![a("first", 5), a("newer", 20)];
        assert!(replace(&mut history, "gone", &a("succ", 10)));
        assert_eq!(history, [a("first", 5), a("succ", 10), a("newer", 20)]);
    }

    #[test]
    fn an_armed_alert_waits_through_jobs_on_nothing_new_and_ends_with_one_on_new_data() {
        let mut s = state(10, "j1", &["d1"], "h");
        s.armed = Some(Armed { job_id: "churn-drift-a1".into(), reason: 2, trigger_event_id: "e".into() });
        // A schedule slot or `mlops train` on the same window and spec: still armed.
        assert!(s.record(&state(20, "j2", &["d1"], "h")));
        assert!(s.armed.is_some() && s.job_id == "j2");
        // An older record, or the same job again, changes nothing.
        assert!(!s.record(&state(5, "j0", &["d0"], "h")));
        assert!(!s.record(&state(20, "j2", &["d1"], "h")));
        // A job on new data, or under a new spec, is what the alert waited for.
        assert!(s.record(&state(30, "j3", &["d2"], "h")));
        assert!(s.armed.is_none());
        s.armed = Some(Armed { job_id: "a".into(), reason: 2, trigger_event_id: "e".into() });
        assert!(s.record(&state(40, "j4", &["d2"], "h2")));
        assert!(s.armed.is_none());
    }
}
