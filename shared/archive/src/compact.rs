//! The compactor: reads the prediction log in order from the sequence after the last archived,
//! gathers predictions per pipeline and hour, and flushes them (files, then the commit, then the
//! partition index) when enough are gathered or the oldest has waited long enough. Any failure
//! drops what is gathered and starts again from the last commit: nothing is acknowledged, so
//! nothing is lost, and the commit is made once, so nothing is archived twice.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use bytes::Bytes;
use futures::StreamExt as _;
use mlops_shared::bus::{Bus, PREDICTIONS_STREAM};
use mlops_shared::spec::SpecStore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::manifest::Committed;
use crate::wire::{LogBatch, text};
use crate::{Archive, ArchiveError, Flush, Partition, hour_of, hour_start};

/// When the compactor flushes and how often it deletes expired partitions.
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Flush once this many predictions are gathered.
    pub max_rows: usize,
    /// Flush once the oldest gathered message has waited this long.
    pub flush_after: Duration,
    /// How often partitions past their pipeline's retention are looked for.
    pub retention_check: Duration,
}

/// The archive's writer.
pub struct Compactor {
    pub archive: Archive,
    pub bus: Bus,
    pub specs: SpecStore,
    pub config: CompactorConfig,
}

/// Messages read since the last flush.
struct Gathered {
    first: u64,
    /// The sequence expected next.
    next: u64,
    /// By pipeline and hour (since the Unix epoch).
    parts: HashMap<(Bytes, i64), Partition>,
    rows: usize,
    lost: u64,
    unreadable: u64,
    since: Option<Instant>,
}

impl Gathered {
    fn from(first: u64) -> Self {
        Self { first, next: first, parts: HashMap::new(), rows: 0, lost: 0, unreadable: 0, since: None }
    }

    fn add(&mut self, msg: &async_nats::jetstream::Message) -> Result<(), ArchiveError> {
        let seq = msg.info().map_err(|e| ArchiveError::Store(format!("a message's sequence: {e}")))?.stream_sequence;
        if seq < self.next {
            return Ok(());
        }
        self.lost += seq - self.next;
        self.next = seq + 1;
        self.since.get_or_insert_with(Instant::now);
        let ce_type =
            msg.headers.as_ref().and_then(|h| h.get(mlops_shared::events::headers::TYPE)).map(|v| v.to_string());
        let batch = match LogBatch::decode_message(ce_type.as_deref(), msg.payload.clone()) {
            Ok(batch) => batch,
            Err(e) => {
                warn!(seq, subject = %msg.subject, error = %e, "a message of the prediction log is not archived");
                self.unreadable += 1;
                return Ok(());
            }
        };
        for p in &batch.predictions {
            let key = (p.pipeline.clone(), p.time_unix_ms.div_euclid(crate::HOUR_MS));
            let part =
                self.parts.entry(key).or_insert_with(|| Partition::new(text(&p.pipeline), &hour_of(p.time_unix_ms)));
            part.push(seq, p);
            self.rows += 1;
        }
        Ok(())
    }
}

impl Compactor {
    /// Compacts until `shutdown` fires, starting again from the last commit after any failure.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.pass(&shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    metrics::counter!("mlops_archive_restarts_total").increment(1);
                    let delay = Duration::from_millis(200 << failures.min(7));
                    warn!(error = %e, retry_in = ?delay, "archive compaction interrupted; resuming from the last flush");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// One run from the last commit until shutdown or a failure.
    async fn pass(&self, shutdown: &CancellationToken) -> Result<(), ArchiveError> {
        let watermark = self.archive.recover().await?;
        metrics::gauge!("mlops_archive_sequence").set(watermark as f64);
        let stream =
            self.bus.js.get_stream(PREDICTIONS_STREAM).await.map_err(|e| ArchiveError::Store(e.to_string()))?;
        let config = OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: watermark + 1 },
            filter_subject: "mlops.predictions.>".into(),
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| ArchiveError::Store(e.to_string()))?;
        let mut messages = consumer.messages().await.map_err(|e| ArchiveError::Store(e.to_string()))?;
        let mut gathered = Gathered::from(watermark + 1);
        let mut retention_due = Instant::now();
        loop {
            let flush_at = gathered.since.map(|t| t + self.config.flush_after);
            tokio::select! {
                () = shutdown.cancelled() => return self.flush(gathered).await.map(drop),
                () = tokio::time::sleep_until(flush_at.unwrap_or(retention_due)), if flush_at.is_some() => {
                    gathered = self.flush(gathered).await?;
                }
                () = tokio::time::sleep_until(retention_due) => {
                    self.expire_old().await?;
                    retention_due = Instant::now() + self.config.retention_check;
                }
                msg = messages.next() => {
                    let msg = msg
                        .ok_or_else(|| ArchiveError::Store("the prediction log's reader stopped".into()))?
                        .map_err(|e| ArchiveError::Store(format!("reading the prediction log: {e}")))?;
                    gathered.add(&msg)?;
                    if gathered.rows >= self.config.max_rows {
                        gathered = self.flush(gathered).await?;
                    }
                }
            }
        }
    }

    /// Writes what was gathered and commits it. Returns the next gathering.
    async fn flush(&self, gathered: Gathered) -> Result<Gathered, ArchiveError> {
        let (first, last) = (gathered.first, gathered.next - 1);
        if last < first {
            return Ok(gathered);
        }
        let parts: Vec<Partition> = gathered.parts.into_values().collect();
        let encoded = tokio::task::spawn_blocking(move || {
            parts.into_iter().map(|p| p.encode(first, last)).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| ArchiveError::Write(e.to_string()))??;
        self.archive.write_files(first, &encoded).await?;
        let flush = Flush {
            first,
            last,
            files: encoded.into_iter().map(|e| e.entry).collect(),
            predictions: gathered.rows as u64,
            lost: gathered.lost,
            unreadable: gathered.unreadable,
            written_unix_ms: mlops_shared::now_unix_ms(),
        };
        match self.archive.commit(&flush).await? {
            Committed::Ours => {}
            Committed::Theirs(theirs) if theirs == flush => {}
            Committed::Theirs(theirs) => {
                return Err(ArchiveError::Store(format!(
                    "sequences {first}-{} were archived by another writer meanwhile",
                    theirs.last
                )));
            }
        }
        self.archive.index(&flush).await?;
        metrics::counter!("mlops_archive_predictions_total").increment(flush.predictions);
        metrics::counter!("mlops_archive_files_total").increment(flush.files.len() as u64);
        metrics::gauge!("mlops_archive_sequence").set(last as f64);
        if flush.lost > 0 {
            metrics::counter!("mlops_archive_lost_messages_total").increment(flush.lost);
            warn!(first, last, lost = flush.lost, "prediction log messages expired before they were archived");
        }
        info!(first, last, predictions = flush.predictions, files = flush.files.len(), "predictions archived");
        Ok(Gathered::from(last + 1))
    }

    /// Deletes every partition older than its pipeline's retention, recording each deletion.
    async fn expire_old(&self) -> Result<(), ArchiveError> {
        let now = mlops_shared::now_unix_ms();
        for pipeline in self.archive.pipelines().await? {
            let spec = self.specs.get(&pipeline).await.map_err(|e| ArchiveError::Store(e.to_string()))?;
            let days = spec
                .map_or_else(|| mlops_shared::spec::AuditSpec::default().retention_days, |s| s.audit.retention_days);
            let cutoff = now - i64::from(days) * 24 * crate::HOUR_MS;
            for hour in self.archive.hours(&pipeline).await? {
                if hour_start(&hour).is_some_and(|start| start + crate::HOUR_MS <= cutoff) {
                    let expired = self.archive.expire(&pipeline, &hour, days).await?;
                    metrics::counter!("mlops_archive_expired_rows_total").increment(expired.rows);
                    info!(pipeline, hour, rows = expired.rows, retention_days = days, "archive partition expired");
                }
            }
        }
        Ok(())
    }
}
