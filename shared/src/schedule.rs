//! Cron schedules in the pipeline spec, fired once per slot however many replicas watch them: the
//! last fired slot of each schedule is a key of the `jobs` bucket, written with a revision check.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::bus::{Bus, BusError, JOBS_KV};
use crate::spec::{PipelineSpec, SpecStore};

/// A slot that is due: fire it, then [`Slots::fired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The slot's time, Unix ms.
    pub slot_ms: i64,
    revision: u64,
}

/// The fired slots, in the `jobs` bucket.
#[derive(Clone)]
pub struct Slots {
    kv: kv::Store,
}

impl Slots {
    pub async fn open(bus: &Bus) -> Result<Self, BusError> {
        Ok(Self { kv: bus.kv(JOBS_KV).await? })
    }

    /// The latest slot of `cron` not fired yet under `key`, if it is due. The first sight of a
    /// schedule records the slot just passed and fires from the next one; slots missed while
    /// nothing ran make one due slot.
    pub async fn due(&self, key: &str, cron: &croner::Cron) -> Result<Option<Due>, BusError> {
        let err = |message: String| BusError::Kv { bucket: JOBS_KV, message };
        let Ok(slot) = cron.find_previous_occurrence(&chrono::Utc::now(), true) else { return Ok(None) };
        let slot = slot.timestamp_millis();
        let entry = self.kv.entry(key).await.map_err(|e| err(e.to_string()))?;
        let Some(entry) = entry.filter(|e| !e.value.is_empty()) else {
            let _ = self.kv.create(key, slot.to_string().into_bytes().into()).await;
            return Ok(None);
        };
        let fired: i64 = String::from_utf8_lossy(&entry.value).parse().unwrap_or(0);
        Ok((slot > fired).then_some(Due { slot_ms: slot, revision: entry.revision }))
    }

    /// Records `due` as fired. Another replica may have recorded it first; whatever it fired
    /// must be idempotent by the slot (e.g. an event or job id derived from it).
    pub async fn fired(&self, key: &str, due: Due) {
        let _ = self.kv.update(key, due.slot_ms.to_string().into_bytes().into(), due.revision).await;
    }
}

/// Calls `fire` every second for each pipeline `wanted` selects, until `shutdown`. The pipelines
/// are listed every ten seconds, so a new schedule starts at its next slot.
pub async fn every_second<F, Fut>(
    specs: &SpecStore,
    shutdown: CancellationToken,
    wanted: impl Fn(&PipelineSpec) -> bool,
    mut fire: F,
) where
    F: FnMut(PipelineSpec) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut selected: Vec<PipelineSpec> = Vec::new();
    let mut listed = None::<std::time::Instant>;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if listed.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            match specs.all().await {
                Ok(all) => selected = all.into_iter().filter(|s| wanted(s)).collect(),
                Err(err) => warn!(error = %err, "cannot list pipelines for their schedules"),
            }
            listed = Some(std::time::Instant::now());
        }
        for spec in &selected {
            let name = spec.name.to_string();
            if let Err(err) = fire(spec.clone()).await {
                warn!(pipeline = %name, error = %err, "schedule not fired; trying again");
            }
        }
    }
}
