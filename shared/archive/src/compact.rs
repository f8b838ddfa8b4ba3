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
use mlops_proto as pb;
use mlops_shared::bus::{BATCHES_BUCKET, Bus, EVENTS_STREAM, PREDICTIONS_STREAM, decode_typed};
use mlops_shared::objects::Objects;
use mlops_shared::spec::{FeatureKind, SpecStore};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::batches::{Job, archive_output, batch_store};
use crate::columns::LabelPartition;
use crate::manifest::{Committed, Log};
use crate::wire::{LogBatch, text};
use crate::{Archive, ArchiveError, FileEntry, Flush, Partition, hour_of, hour_start, id_time};

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

/// How long the log may be quiet (beyond `flush_after`) before it is read again from the last
/// commit.
const IDLE: Duration = Duration::from_secs(5);

/// Why a pass ended without a failure.
enum Ended {
    Shutdown,
    Idle,
}

/// The archive's writer.
pub struct Compactor {
    pub archive: Archive,
    pub bus: Bus,
    pub specs: SpecStore,
    pub config: CompactorConfig,
}

/// What was gathered of each partition, by pipeline and hour (since the Unix epoch).
enum Parts {
    Predictions(HashMap<(Bytes, i64), Partition>),
    Labels(HashMap<(String, i64), LabelPartition>),
    /// Batch jobs done, each once.
    Batches(Vec<Job>),
}

/// Messages read since the last flush.
struct Gathered {
    first: u64,
    /// The sequence expected next.
    next: u64,
    parts: Parts,
    rows: usize,
    lost: u64,
    unreadable: u64,
    since: Option<Instant>,
}

impl Gathered {
    fn from(first: u64, log: Log) -> Self {
        let parts = match log {
            Log::Predictions => Parts::Predictions(HashMap::new()),
            Log::Labels => Parts::Labels(HashMap::new()),
            Log::Batches => Parts::Batches(Vec::new()),
        };
        Self { first, next: first, parts, rows: 0, lost: 0, unreadable: 0, since: None }
    }

    fn unreadable(&mut self, msg: &async_nats::jetstream::Message, error: &str) {
        warn!(subject = %msg.subject, %error, "a message is not archived");
        self.unreadable += 1;
    }

    fn add(&mut self, msg: &async_nats::jetstream::Message) -> Result<(), ArchiveError> {
        let seq = msg.info().map_err(|e| ArchiveError::Store(format!("a message's sequence: {e}")))?.stream_sequence;
        if seq < self.next {
            return Ok(());
        }
        // The prediction log holds nothing else, so a sequence skipped is a message gone; labels
        // are read from among the other events, so theirs skip by design.
        if matches!(self.parts, Parts::Predictions(_)) {
            self.lost += seq - self.next;
        }
        self.next = seq + 1;
        self.since.get_or_insert_with(Instant::now);
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
        let ce_type = header(mlops_shared::events::headers::TYPE);
        match &mut self.parts {
            Parts::Predictions(parts) => {
                let batch = match LogBatch::decode_message(ce_type.as_deref(), msg.payload.clone()) {
                    Ok(batch) => batch,
                    Err(e) => {
                        self.unreadable(msg, &e);
                        return Ok(());
                    }
                };
                for p in &batch.predictions {
                    let key = (p.pipeline.clone(), p.time_unix_ms.div_euclid(crate::HOUR_MS));
                    let hour = || hour_of(p.time_unix_ms);
                    parts.entry(key).or_insert_with(|| Partition::new(text(&p.pipeline), &hour())).push(seq, p);
                    self.rows += 1;
                }
            }
            Parts::Labels(parts) => {
                let json = header(mlops_shared::events::headers::CONTENT_TYPE)
                    .is_some_and(|ct| ct.starts_with(mlops_shared::events::headers::JSON));
                let event = match decode_typed::<pb::LabelsArrived>(&msg.payload, json, ce_type.as_deref()) {
                    Ok(event) => event,
                    Err(e) => {
                        self.unreadable(msg, &e);
                        return Ok(());
                    }
                };
                let published = msg.info().map_or(0, |i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64);
                for l in &event.labels {
                    // With the prediction it labels, when its id names the time.
                    let at = id_time(&l.prediction_id).unwrap_or(published);
                    let key = (event.pipeline.clone(), at.div_euclid(crate::HOUR_MS));
                    let part = parts.entry(key).or_insert_with(|| LabelPartition::new(&event.pipeline, &hour_of(at)));
                    part.push(seq, &l.prediction_id, &l.label, published);
                    self.rows += 1;
                }
            }
            Parts::Batches(jobs) => {
                let job = match Job::of_message(msg) {
                    Ok(job) => job,
                    Err(e) => {
                        self.unreadable(msg, &e);
                        return Ok(());
                    }
                };
                // Announced again (a request repeated after the stream's duplicate window).
                if jobs.iter().any(|j| j.batch_id == job.batch_id) {
                    return Ok(());
                }
                self.rows += job.rows as usize;
                jobs.push(job);
            }
        }
        Ok(())
    }
}

/// Every partition gathered, written as the files of the flush `first` to `last`.
fn encode(parts: Parts, first: u64, last: u64) -> Result<Vec<crate::Encoded>, ArchiveError> {
    match parts {
        Parts::Predictions(parts) => parts.into_values().map(|p| p.encode(first, last)).collect(),
        Parts::Labels(parts) => parts.into_values().map(|p| p.encode(first, last)).collect(),
        Parts::Batches(_) => Ok(Vec::new()),
    }
}

impl Compactor {
    /// Compacts until `shutdown` fires, starting again from the last commit after any failure.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut failures = 0u32;
        let mut retention_due = Instant::now();
        while !shutdown.is_cancelled() {
            match self.pass(&shutdown, &mut retention_due).await {
                Ok(Ended::Shutdown) => break,
                Ok(Ended::Idle) => failures = 0,
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

    /// One run from the last commit until shutdown, a failure, or a pause in the log. After a
    /// pause it reads again from the last commit: a reader that falls behind while a flush runs
    /// may lose the messages delivered meanwhile without noticing until the next one comes, so a
    /// pause must not leave the newest messages unread.
    async fn pass(&self, shutdown: &CancellationToken, retention_due: &mut Instant) -> Result<Ended, ArchiveError> {
        let watermark = self.archive.recover().await?;
        let log = self.archive.log.name();
        metrics::gauge!("mlops_archive_sequence", "log" => log).set(watermark as f64);
        let (stream, filter) = match self.archive.log {
            Log::Predictions => (PREDICTIONS_STREAM, "mlops.predictions.>"),
            Log::Labels => (EVENTS_STREAM, "mlops.events.labels.arrived.>"),
            Log::Batches => (EVENTS_STREAM, "mlops.events.batch.completed.>"),
        };
        let stream = self.bus.js.get_stream(stream).await.map_err(|e| ArchiveError::Store(e.to_string()))?;
        let config = OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: watermark + 1 },
            filter_subject: filter.into(),
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| ArchiveError::Store(e.to_string()))?;
        let mut messages = consumer.messages().await.map_err(|e| ArchiveError::Store(e.to_string()))?;
        let mut gathered = Gathered::from(watermark + 1, self.archive.log);
        let idle = self.config.flush_after + IDLE;
        let mut last_read = Instant::now();
        loop {
            let flush_at = gathered.since.map(|t| t + self.config.flush_after);
            tokio::select! {
                () = shutdown.cancelled() => return self.flush(gathered).await.map(|_| Ended::Shutdown),
                () = tokio::time::sleep_until(flush_at.unwrap_or(*retention_due)), if flush_at.is_some() => {
                    gathered = self.flush(gathered).await?;
                }
                () = tokio::time::sleep_until(last_read + idle), if flush_at.is_none() => {
                    return Ok(Ended::Idle);
                }
                () = tokio::time::sleep_until(*retention_due) => {
                    self.expire_old().await?;
                    *retention_due = Instant::now() + self.config.retention_check;
                }
                msg = messages.next() => {
                    last_read = Instant::now();
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
        let Gathered { parts, rows, lost, mut unreadable, .. } = gathered;
        let (files, rows) = match parts {
            Parts::Batches(jobs) => {
                let (files, rows, failed) = self.write_batches(first, jobs).await?;
                unreadable += failed;
                (files, rows)
            }
            parts => {
                let encoded = tokio::task::spawn_blocking(move || encode(parts, first, last))
                    .await
                    .map_err(|e| ArchiveError::Write(e.to_string()))??;
                self.archive.write_files(first, &encoded).await?;
                (encoded.into_iter().map(|e| e.entry).collect(), rows as u64)
            }
        };
        let flush = Flush {
            first,
            last,
            files,
            predictions: rows,
            lost,
            unreadable,
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
        let log = self.archive.log.name();
        metrics::counter!("mlops_archive_rows_total", "log" => log).increment(flush.predictions);
        metrics::counter!("mlops_archive_files_total", "log" => log).increment(flush.files.len() as u64);
        metrics::gauge!("mlops_archive_sequence", "log" => log).set(last as f64);
        if flush.lost > 0 {
            metrics::counter!("mlops_archive_lost_messages_total", "log" => log).increment(flush.lost);
            warn!(log, first, last, lost = flush.lost, "messages expired from their stream before they were archived");
        }
        info!(log, first, last, rows = flush.predictions, files = flush.files.len(), "archived");
        Ok(Gathered::from(last + 1, self.archive.log))
    }

    /// Writes the outputs of `jobs` as the files of the flush from `first`, one file at a time,
    /// but those their pipeline's spec keeps out (`audit.archive_batches: false`) and those
    /// archived before. Returns the files, the rows, and the outputs that could not be read (each
    /// reported).
    async fn write_batches(&self, first: u64, jobs: Vec<Job>) -> Result<(Vec<FileEntry>, u64, u64), ArchiveError> {
        let objects = self.bus.objects(BATCHES_BUCKET).await.map_err(|e| batch_store(&e))?;
        let (mut written, mut files, mut rows, mut failed) = (Vec::new(), Vec::new(), 0, 0);
        for job in jobs {
            let spec = self.specs.get(&job.pipeline).await.map_err(|e| batch_store(&e))?;
            if spec.as_ref().is_some_and(|s| !s.audit.archive_batches)
                || self.archive.batch_files(&job.batch_id).await?.is_some()
            {
                continue;
            }
            // A CSV's numbers are text: the pipeline's numeric features are archived as numbers.
            let numeric = spec.map_or_else(Vec::new, |s| {
                s.features.into_iter().filter(|f| f.kind == FeatureKind::Numeric).map(|f| f.name).collect()
            });
            let (pipeline, batch) = (job.pipeline.clone(), job.batch_id.clone());
            match self.write_batch(first, &objects, (job, numeric), &mut written).await {
                Ok((entries, n)) => {
                    files.extend(entries);
                    rows += n;
                }
                Err(e @ ArchiveError::Unreadable { .. }) => {
                    warn!(pipeline, batch, error = %e, "a batch output is not archived");
                    metrics::counter!("mlops_archive_unreadable_batches_total").increment(1);
                    failed += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok((files, rows, failed))
    }

    /// Writes `job`'s output, file by file. An output that cannot be read (missing, altered or
    /// not a batch output) is [`ArchiveError::Unreadable`], and what was written of it deleted.
    async fn write_batch(
        &self,
        first: u64,
        objects: &Objects,
        (job, numeric): (Job, Vec<String>),
        written: &mut Vec<String>,
    ) -> Result<(Vec<FileEntry>, u64), ArchiveError> {
        let (output, name) = job.download_output(objects).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let max_rows = self.config.max_rows;

        let converting = tokio::task::spawn_blocking(move || {
            let reader = ParquetRecordBatchReaderBuilder::try_new(output).and_then(|b| b.build());
            let reader = reader.map_err(|e| ArchiveError::Unreadable { name, message: e.to_string() })?;
            let schema = arrow_array::RecordBatchReader::schema(&reader);
            archive_output(&job, (&schema, &numeric), reader, max_rows, |file| {
                tx.blocking_send(file).map_err(|_| ArchiveError::Write("the archive writer stopped".into()))
            })
        });
        let mut files = Vec::new();
        while let Some(file) = rx.recv().await {
            self.archive.write_file(first, written, &file).await?;
            files.push(file.entry);
        }
        match converting.await.map_err(|e| ArchiveError::Write(e.to_string()))? {
            Ok(rows) => Ok((files, rows)),
            Err(e) => {
                for file in &files {
                    self.archive.discard(file).await?;
                }
                Err(e)
            }
        }
    }

    /// Deletes every partition older than its pipeline's retention, recording each deletion.
    /// Batch outputs are in the predictions' partitions, deleted with them.
    async fn expire_old(&self) -> Result<(), ArchiveError> {
        if self.archive.log == Log::Batches {
            return Ok(());
        }
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
