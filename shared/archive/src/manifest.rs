//! The manifest (key-value bucket `archive`) and the files (object store `archive`): committing a
//! flush once, indexing its files per partition, reading a file back checked, and deleting an
//! expired partition with an audit record.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;
use futures::StreamExt as _;
use mlops_shared::bus::{ARCHIVE_BUCKET, ARCHIVE_KV, Bus};
use mlops_shared::objects::{ObjectError, Objects};
use parquet::bloom_filter::Sbbf;
use serde::{Deserialize, Serialize};

use crate::ArchiveError;

/// One archived file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `<pipeline>/<yyyymmddhh>/<first>-<last>.parquet`; its bloom filter is `<name>.bloom`.
    pub name: String,
    pub pipeline: String,
    pub hour: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub bloom_sha256: String,
    pub min_time_ms: i64,
    pub max_time_ms: i64,
    /// The model versions that made its predictions.
    pub versions: Vec<u64>,
    /// Its input columns and their types (`f64` or `utf8`).
    pub inputs: std::collections::BTreeMap<String, String>,
    /// Whether its answers are a classifier's (`probability` and `label`, else `prediction`).
    pub classifier: bool,
    /// The stream sequences of the flush that wrote it.
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// The batch job whose rows it holds, for a file of a batch's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchRows>,
    /// The object holding the file once an erasure wrote it again (`name` until then).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
}

/// The rows of a batch job's output a file holds: prediction ids `<id>-<first_row>` to
/// `<id>-<last_row>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRows {
    pub id: String,
    pub first_row: u64,
    pub last_row: u64,
}

impl FileEntry {
    pub fn bloom_name(&self) -> String {
        format!("{}.bloom", self.name)
    }

    /// The object holding the file.
    pub fn object_name(&self) -> &str {
        if self.object.is_empty() { &self.name } else { &self.object }
    }
}

/// One flush: the stream sequences `first` to `last`, all archived at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flush {
    pub first: u64,
    pub last: u64,
    pub files: Vec<FileEntry>,
    pub predictions: u64,
    /// Messages of the range the stream no longer held when they were read (expired or deleted
    /// before they were archived).
    pub lost: u64,
    /// Messages of the range that were not prediction logs.
    pub unreadable: u64,
    pub written_unix_ms: i64,
}

/// A partition deleted at the end of its retention: what it held, and when and why it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expired {
    pub pipeline: String,
    pub hour: String,
    pub files: Vec<FileEntry>,
    pub rows: u64,
    pub retention_days: u32,
    pub deleted_unix_ms: i64,
}

/// Files written for a flush not yet committed: deleted at start-up unless the commit happened.
#[derive(Serialize, Deserialize)]
struct Pending {
    first: u64,
    names: Vec<String>,
}

/// Whether a flush was committed by this writer or, first, by another.
pub enum Committed {
    Ours,
    Theirs(Flush),
}

/// Which log an [`Archive`] holds: the predictions, the labels that came for them later, or the
/// batch jobs done (`batch.completed`), whose outputs are archived with the predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Predictions,
    Labels,
    Batches,
}

impl Log {
    /// Its name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Predictions => "predictions",
            Self::Labels => "labels",
            Self::Batches => "batches",
        }
    }
}

/// The archive's manifest and files, of one log.
#[derive(Clone)]
pub struct Archive {
    kv: kv::Store,
    objects: Objects,
    pub(crate) bus: Bus,
    pub log: Log,
}

fn store<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> ArchiveError + '_ {
    move |e| ArchiveError::Store(format!("{what}: {e}"))
}

fn json<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value).map(Bytes::from).unwrap_or_default()
}

impl Archive {
    /// The archive's bucket and store, made by [`Bus::provision`].
    pub async fn open(bus: &Bus) -> Result<Self, ArchiveError> {
        let kv = bus.js.get_key_value(ARCHIVE_KV).await.map_err(store("opening the archive manifest"))?;
        let objects = bus.objects(ARCHIVE_BUCKET).await.map_err(store("opening the archive store"))?;
        Ok(Self { kv, objects, bus: bus.clone(), log: Log::Predictions })
    }

    /// The same archive's labels: the `labels.arrived` that came for its predictions, archived the
    /// same way (keys `lflush.`, `lpart.`, …; files under `_labels/`), by the hour of the
    /// prediction their id names (or of their arrival).
    pub fn labels(&self) -> Self {
        Self { log: Log::Labels, ..self.clone() }
    }

    /// The same archive's batch jobs: the outputs `batch.completed` names, archived in the
    /// predictions' partitions (so found, exported and expired with them) by a chain of flushes
    /// of their own (`bflush.`, …) over the events, and indexed by batch id (`bjob.<id>`).
    pub fn batches(&self) -> Self {
        Self { log: Log::Batches, ..self.clone() }
    }

    /// The key `key` of this archive's log.
    fn key(&self, key: &str) -> String {
        match self.log {
            Log::Predictions => key.to_owned(),
            Log::Labels => format!("l{key}"),
            Log::Batches => format!("b{key}"),
        }
    }

    /// The key `key` of the partitions this log's files are listed in (`part.`, `audit.`): the
    /// labels' own, or the predictions' for predictions and batch outputs alike.
    pub(crate) fn part_key(&self, key: &str) -> String {
        match self.log {
            Log::Labels => format!("l{key}"),
            Log::Predictions | Log::Batches => key.to_owned(),
        }
    }

    /// The files of batch job `id`'s output, once archived.
    pub async fn batch_files(&self, id: &str) -> Result<Option<Vec<FileEntry>>, ArchiveError> {
        self.read(&format!("bjob.{id}")).await
    }

    /// The value of `key`, parsed, or `None` when there is none.
    async fn read<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, ArchiveError> {
        let Some(bytes) = self.kv.get(key).await.map_err(store(key))? else { return Ok(None) };
        self.parse(key, &bytes).map(Some)
    }

    /// The flush that starts at stream sequence `first`, if committed.
    pub async fn flush(&self, first: u64) -> Result<Option<Flush>, ArchiveError> {
        self.read(&self.key(&format!("flush.{first}"))).await
    }

    /// Walks the chain of flushes from the `head` hint: the last sequence archived, and the
    /// flushes past the hint (whose partition entries may not all be written yet).
    async fn walk(&self) -> Result<(u64, Vec<Flush>), ArchiveError> {
        let hint: Option<u64> = self.read(&self.key("head")).await?;
        let mut next = hint.unwrap_or(1);
        let mut walked = Vec::new();
        while let Some(flush) = self.flush(next).await? {
            next = flush.last + 1;
            walked.push(flush);
        }
        Ok((next - 1, walked))
    }

    /// The last stream sequence archived.
    pub async fn watermark(&self) -> Result<u64, ArchiveError> {
        Ok(self.walk().await?.0)
    }

    /// Whether this log is archived through stream sequence `seq` with each file listed in its
    /// partition: the newest flush indexed (the `head` hint, moved once its files are listed)
    /// reaches `seq`. Reads only.
    pub async fn listed_through(&self, seq: u64) -> Result<bool, ArchiveError> {
        if seq == 0 {
            return Ok(true);
        }
        let Some(head) = self.read::<u64>(&self.key("head")).await? else { return Ok(false) };
        Ok(self.flush(head).await?.is_some_and(|f| f.last >= seq))
    }

    /// Finishes what a crash interrupted: indexes the newest flushes again and deletes the files
    /// of a flush that was never committed. Returns the last sequence archived.
    pub async fn recover(&self) -> Result<u64, ArchiveError> {
        let (watermark, walked) = self.walk().await?;
        for flush in &walked {
            self.index(flush).await?;
        }
        if let Some(pending) = self.read::<Pending>(&self.key("pending")).await? {
            let committed = self.flush(pending.first).await?;
            let kept = |name: &String| committed.as_ref().is_some_and(|f| f.files.iter().any(|e| &e.name == name));
            for name in pending.names.iter().filter(|n| !kept(n)) {
                self.delete_object(name).await?;
                self.delete_object(&format!("{name}.bloom")).await?;
            }
            self.kv.purge(self.key("pending")).await.map_err(store("pending"))?;
        }
        Ok(watermark)
    }

    /// Stores a flush's files, first noting them as pending so that a crash before the commit
    /// leaves nothing behind.
    pub async fn write_files(&self, first: u64, files: &[crate::Encoded]) -> Result<(), ArchiveError> {
        let pending = Pending { first, names: files.iter().map(|f| f.entry.name.clone()).collect() };
        self.kv.put(self.key("pending"), json(&pending)).await.map_err(store("pending"))?;
        for f in files {
            self.put_object(&f.entry.name, &f.parquet).await?;
            self.put_object(&f.entry.bloom_name(), &f.bloom).await?;
        }
        Ok(())
    }

    /// Stores one more file of the flush from `first`, noting it first among the flush's pending
    /// files (`written`, the names stored so far): for flushes too large to hold at once.
    pub async fn write_file(
        &self,
        first: u64,
        written: &mut Vec<String>,
        file: &crate::Encoded,
    ) -> Result<(), ArchiveError> {
        written.push(file.entry.name.clone());
        let pending = Pending { first, names: written.clone() };
        self.kv.put(self.key("pending"), json(&pending)).await.map_err(store("pending"))?;
        self.put_object(&file.entry.name, &file.parquet).await?;
        self.put_object(&file.entry.bloom_name(), &file.bloom).await
    }

    pub(crate) async fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.objects.put_named(name, bytes).await.map_err(store(name))
    }

    /// Deletes a file written but not committed, and its bloom filter.
    pub async fn discard(&self, file: &FileEntry) -> Result<(), ArchiveError> {
        self.delete_object(&file.name).await?;
        self.delete_object(&file.bloom_name()).await
    }

    pub(crate) async fn delete_object(&self, name: &str) -> Result<(), ArchiveError> {
        self.objects.delete(name).await.map_err(|e| ArchiveError::Store(e.to_string()))
    }

    /// Commits `flush` by creating its record: once only, whoever writes first.
    pub async fn commit(&self, flush: &Flush) -> Result<Committed, ArchiveError> {
        let key = self.key(&format!("flush.{}", flush.first));
        match self.kv.create(&key, json(flush)).await {
            Ok(_) => Ok(Committed::Ours),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                let theirs = self.flush(flush.first).await?;
                theirs.map(Committed::Theirs).ok_or_else(|| ArchiveError::Store(format!("{key} vanished")))
            }
            Err(e) => Err(ArchiveError::Store(format!("{key}: {e}"))),
        }
    }

    /// Lists a committed flush's files in their partitions — and a batch job's files under its id
    /// — and moves the `head` hint to it. Each entry takes all of the flush's files it lists in one
    /// write, so a reader never sees part of a flush (a batch job with one of its files missing).
    /// Idempotent: a file already listed is not listed again, so indexing a flush again never
    /// replaces an entry an erasure moved.
    pub async fn index(&self, flush: &Flush) -> Result<(), ArchiveError> {
        let mut entries: BTreeMap<String, Vec<&FileEntry>> = BTreeMap::new();
        for file in &flush.files {
            let partition = self.part_key(&format!("part.{}.{}", file.pipeline, file.hour));
            let job = file.batch.as_ref().map(|b| format!("bjob.{}", b.id));
            for key in std::iter::once(partition).chain(job) {
                entries.entry(key).or_default().push(file);
            }
        }
        for (key, added) in entries {
            self.change_partition(&key, |files| {
                let before = files.len();
                for file in &added {
                    if !files.iter().any(|f| f.name == file.name) {
                        files.push((*file).clone());
                    }
                }
                files.len() > before
            })
            .await?;
        }
        self.kv.put(self.key("head"), json(&flush.first)).await.map_err(store("head"))?;
        Ok(())
    }

    /// Changes the partition entry `key` with `change` (which says whether it changed anything),
    /// safely against other writers: the write names the revision it read, and a conflict reads
    /// again. A partition deleted meanwhile is not created again unless `change` adds to it.
    pub(crate) async fn change_partition(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Vec<FileEntry>) -> bool,
    ) -> Result<(), ArchiveError> {
        loop {
            let entry = self.kv.entry(key).await.map_err(store(key))?;
            let (mut files, revision) = match entry.filter(|e| e.operation == kv::Operation::Put) {
                Some(e) => (self.parse::<Vec<FileEntry>>(key, &e.value)?, Some(e.revision)),
                None => (Vec::new(), None),
            };
            if !change(&mut files) {
                return Ok(());
            }
            let written = match revision {
                Some(r) => self
                    .kv
                    .update(key, json(&files), r)
                    .await
                    .map(drop)
                    .map_err(|e| (e.kind() != UpdateErrorKind::WrongLastRevision).then(|| e.to_string())),
                None => self
                    .kv
                    .create(key, json(&files))
                    .await
                    .map(drop)
                    .map_err(|e| (e.kind() != CreateErrorKind::AlreadyExists).then(|| e.to_string())),
            };
            match written {
                Ok(()) => return Ok(()),
                // Another writer got there first: read again.
                Err(None) => continue,
                Err(Some(e)) => return Err(ArchiveError::Store(format!("{key}: {e}"))),
            }
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, key: &str, bytes: &[u8]) -> Result<T, ArchiveError> {
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::Manifest { key: key.into(), message: e.to_string() })
    }

    /// The files of `pipeline` in `hour`.
    pub async fn partition(&self, pipeline: &str, hour: &str) -> Result<Vec<FileEntry>, ArchiveError> {
        Ok(self.read(&self.part_key(&format!("part.{pipeline}.{hour}"))).await?.unwrap_or_default())
    }

    /// The keys under `prefix` (`part.<pipeline>.`, say) that hold a value, read from the
    /// bucket's stream without their values.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        let stream = self.bus.js.get_stream(format!("KV_{ARCHIVE_KV}")).await.map_err(store("the manifest stream"))?;
        let subject = format!("$KV.{ARCHIVE_KV}.{prefix}>");
        let config = OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: DeliverPolicy::LastPerSubject,
            headers_only: true,
            ..Default::default()
        };
        let mut consumer = stream.create_consumer(config).await.map_err(store(&subject))?;
        if consumer.info().await.map_err(store(&subject))?.num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer.messages().await.map_err(store(&subject))?;
        let mut keys = Vec::new();
        let head = format!("$KV.{ARCHIVE_KV}.");
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(store(&subject))?;
            let removed = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if !removed && let Some(key) = msg.subject.strip_prefix(head.as_str()) {
                keys.push(key.to_owned());
            }
            if msg.info().map_err(store(&subject))?.pending == 0 {
                break;
            }
        }
        Ok(keys)
    }

    /// The hours of `pipeline` that hold files, oldest first.
    pub async fn hours(&self, pipeline: &str) -> Result<Vec<String>, ArchiveError> {
        let prefix = self.part_key(&format!("part.{pipeline}."));
        let mut hours: Vec<String> =
            self.keys(&prefix).await?.into_iter().filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)).collect();
        hours.sort();
        Ok(hours)
    }

    /// Every pipeline with archived predictions.
    pub async fn pipelines(&self) -> Result<Vec<String>, ArchiveError> {
        let prefix = self.part_key("part.");
        let mut names: Vec<String> = self
            .keys(&prefix)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).and_then(|k| k.split_once('.')).map(|(p, _)| p.to_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The object `name`, checked against `sha256`.
    async fn get_checked(&self, name: &str, sha256: &str) -> Result<Vec<u8>, ArchiveError> {
        let bytes = self.objects.get_named(name, u64::MAX).await.map_err(|e| match e {
            ObjectError::NotFound { .. } => ArchiveError::Missing { name: name.into() },
            e => ArchiveError::Store(format!("{name}: {e}")),
        })?;
        let actual = mlops_shared::sha256_hex(&bytes);
        if actual != sha256 {
            return Err(ArchiveError::Checksum { name: name.into(), expected: sha256.into(), actual });
        }
        Ok(bytes)
    }

    /// The file of `entry`, checked.
    pub async fn file(&self, entry: &FileEntry) -> Result<Bytes, ArchiveError> {
        Ok(self.get_checked(entry.object_name(), &entry.sha256).await?.into())
    }

    /// The bloom filter of `entry`'s prediction ids, checked.
    pub async fn bloom(&self, entry: &FileEntry) -> Result<Sbbf, ArchiveError> {
        let name = entry.bloom_name();
        let bytes = self.get_checked(&name, &entry.bloom_sha256).await?;
        Sbbf::from_bytes(&bytes).map_err(|e| ArchiveError::Unreadable { name, message: e.to_string() })
    }

    /// Deletes the partition `pipeline`/`hour`, first recording what it held (`audit.<pipeline>.
    /// <hour>`). Safe to repeat after a crash: the record is kept from the first attempt.
    pub async fn expire(&self, pipeline: &str, hour: &str, retention_days: u32) -> Result<Expired, ArchiveError> {
        let files = self.partition(pipeline, hour).await?;
        let audit_key = self.part_key(&format!("audit.{pipeline}.{hour}"));
        let record = Expired {
            pipeline: pipeline.into(),
            hour: hour.into(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
            retention_days,
            deleted_unix_ms: mlops_shared::now_unix_ms(),
        };
        let record = match self.kv.create(&audit_key, json(&record)).await {
            Ok(_) => record,
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => self.read(&audit_key).await?.unwrap_or(record),
            Err(e) => return Err(ArchiveError::Store(format!("{audit_key}: {e}"))),
        };
        for f in &record.files {
            self.delete_object(f.object_name()).await?;
            self.delete_object(&f.bloom_name()).await?;
        }
        let key = self.part_key(&format!("part.{pipeline}.{hour}"));
        self.kv.purge(&key).await.map_err(store(&key))?;
        Ok(record)
    }

    /// The partitions of `pipeline` deleted at the end of their retention, oldest first.
    pub async fn expired(&self, pipeline: &str) -> Result<Vec<Expired>, ArchiveError> {
        let mut out = Vec::new();
        let mut keys = self.keys(&self.part_key(&format!("audit.{pipeline}."))).await?;
        keys.sort();
        for key in keys {
            out.extend(self.read::<Expired>(&key).await?);
        }
        Ok(out)
    }
}
