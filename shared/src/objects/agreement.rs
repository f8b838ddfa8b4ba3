//! One store for every process on a NATS: the first service to start records where blobs live
//! (its `MLOPS_OBJECT_STORE`, or NATS's own object store) in key-value bucket `platform`; a
//! process set to another store is refused at start, and one given none (the CLI, mostly, or a
//! service whose setting was forgotten) takes the recorded one, so that no blob is written where
//! the others never look.

use anyhow::Context as _;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::stream::{LastRawMessageError, LastRawMessageErrorKind};
use backon::Retryable as _;

use super::external::Location;
use crate::bus::{Bus, PLATFORM_KV};

/// The key of [`PLATFORM_KV`] that holds where blobs live.
pub const OBJECT_STORE_KEY: &str = "object_store";
/// The record when blobs live in NATS's object store.
pub const IN_NATS: &str = "nats";

/// A process set to a store other than the one recorded.
#[derive(Debug, thiserror::Error)]
#[error(
    "MLOPS_OBJECT_STORE is {ours} here, but the platform on this NATS keeps its blobs in {recorded} \
     (key-value bucket {PLATFORM_KV}, key {OBJECT_STORE_KEY}, written by the first service to start): \
     every service and the CLI must use the same store; set MLOPS_OBJECT_STORE to match, or, once \
     the blobs are moved, record the new store with `mlops object-store --set`"
)]
pub struct Disagreement {
    pub ours: String,
    pub recorded: String,
}

/// A record as people read it.
fn described(record: &str) -> String {
    if record == IN_NATS { "NATS's object store (MLOPS_OBJECT_STORE unset)".into() } else { record.into() }
}

impl Bus {
    /// Where this process keeps blobs, as the record states it.
    pub fn object_store_record(&self) -> String {
        self.object_store.as_ref().map_or_else(|| IN_NATS.to_owned(), Location::identity)
    }

    /// The store recorded for this NATS, if the platform was provisioned and a service recorded
    /// one.
    ///
    /// Read from the stream's leader, not by a key-value get: that is a direct get, whose
    /// responders a stream created a moment ago by another service starting beside this one may
    /// not have yet (the request then times out, on 2.9 at least). Such a stream may not answer
    /// at all for a moment either: the read is retried for a few seconds.
    pub async fn recorded_object_store(&self) -> anyhow::Result<Option<String>> {
        let stream = match self.js.get_stream(format!("KV_{PLATFORM_KV}")).await {
            Ok(stream) => stream,
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("reading {PLATFORM_KV}/{OBJECT_STORE_KEY}")),
        };
        let subject = format!("$KV.{PLATFORM_KV}.{OBJECT_STORE_KEY}");
        let read = || stream.get_last_raw_message_by_subject(&subject);
        let absent = |e: &LastRawMessageError| e.kind() == LastRawMessageErrorKind::NoMessageFound;
        match read.retry(crate::bus::STARTUP_BACKOFF).when(|e| !absent(e)).await {
            // A deleted or purged key leaves an empty marker: no record.
            Ok(message) if message.payload.is_empty() => Ok(None),
            Ok(message) => Ok(Some(String::from_utf8_lossy(&message.payload).into_owned())),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {PLATFORM_KV}/{OBJECT_STORE_KEY}")),
        }
    }

    /// Checks this process's store against the record: the same is fine; none set takes the
    /// recorded one (probed like a setting); another is refused ([`Disagreement`]). With
    /// `record`, a platform with no record yet gets this process's.
    pub(crate) async fn agree_on_object_store(&mut self, record: bool) -> anyhow::Result<()> {
        let ours = self.object_store_record();
        let recorded = match self.recorded_object_store().await? {
            Some(recorded) => recorded,
            None if !record => return Ok(()),
            None => match self.write_record(&ours, true).await {
                Ok(()) => return Ok(()),
                // Another service recorded first.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    self.recorded_object_store().await?.with_context(|| {
                        format!("{PLATFORM_KV}/{OBJECT_STORE_KEY} was written by another service but cannot be read")
                    })?
                }
                Err(e) => return Err(e).with_context(|| format!("writing {PLATFORM_KV}/{OBJECT_STORE_KEY}")),
            },
        };
        if recorded == ours {
            return Ok(());
        }
        if self.object_store.is_some() {
            return Err(Disagreement { ours: described(&ours), recorded: described(&recorded) }.into());
        }
        self.object_store = if recorded == IN_NATS { None } else { Some(recorded_location(&recorded).await?) };
        tracing::info!(store = %described(&recorded), "blobs where the platform records them");
        Ok(())
    }

    /// Records `store` (a `MLOPS_OBJECT_STORE` value, or [`IN_NATS`]) as where this NATS's
    /// platform keeps its blobs, once it is probed: for an operator who moved the blobs. Returns
    /// the previous record.
    pub async fn record_object_store(&self, store: &str) -> anyhow::Result<Option<String>> {
        let record = if store == IN_NATS { IN_NATS.to_owned() } else { recorded_location(store).await?.identity() };
        let previous = self.recorded_object_store().await?;
        self.write_record(&record, false).await.with_context(|| format!("writing {PLATFORM_KV}/{OBJECT_STORE_KEY}"))?;
        Ok(previous)
    }
}

impl Bus {
    /// Writes the record as a key-value put would, but with a plain publish: the key-value
    /// create, when it loses a race, reads the key by a direct get, which times out on a stream
    /// another service created a moment ago. With `only_if_absent`, a record already there
    /// fails the write with [`PublishErrorKind::WrongLastSequence`].
    async fn write_record(&self, record: &str, only_if_absent: bool) -> Result<(), PublishError> {
        let mut headers = async_nats::HeaderMap::new();
        if only_if_absent {
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
        }
        let subject = format!("$KV.{PLATFORM_KV}.{OBJECT_STORE_KEY}");
        let write = || async {
            self.js
                .publish_with_headers(subject.clone(), headers.clone(), record.to_owned().into())
                .await?
                .await
                .map(drop)
        };
        // A stream another service created a moment ago may not take messages yet.
        write.retry(crate::bus::STARTUP_BACKOFF).when(|e| e.kind() != PublishErrorKind::WrongLastSequence).await
    }
}

/// The store a record names, probed. NATS's own store needs no probe: the connection is made.
async fn recorded_location(record: &str) -> anyhow::Result<Location> {
    let location = Location::parse_named("the recorded MLOPS_OBJECT_STORE", record, &[])?;
    location.probe().await?;
    Ok(location)
}
