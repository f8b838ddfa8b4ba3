//! The feature store on NATS: views in the `feature_views` bucket, the offline log as files in
//! the `features` object store (NATS's, or a folder of `MLOPS_OBJECT_STORE`), the online store in
//! the `features_online` bucket.

use async_nats::jetstream::kv;
use futures::{StreamExt as _, TryStreamExt as _};
use mlops_shared::bus::{Bus, FEATURE_VIEWS_KV, FEATURES_BUCKET, ONLINE_FEATURES_KV};
use mlops_shared::objects::Objects;
use mlops_shared::spec::FeatureViewSpec;

use std::sync::Arc;

use crate::online::{Entry, entry_key, newest_per_key};
use crate::replica::Replica;
use crate::training::Log;
use crate::{ViewRows, offline};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("feature store ({what}): {message}")]
    Nats { what: &'static str, message: String },
    #[error("feature view `{0}` is not known (apply it with `mlops features apply`)")]
    UnknownView(String),
    #[error("feature view `{view}`: stored spec unreadable: {message}")]
    BadView { view: String, message: String },
    #[error("offline file {name}: {source}")]
    File { name: String, source: crate::FeatureError },
}

pub(crate) fn nats(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::Nats { what, message: e.to_string() }
}

/// What one online materialisation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Materialised {
    /// Entities whose entry this batch replaced or created.
    pub written: u64,
    /// Entities whose stored entry was newer than this batch's (an older batch arriving late).
    pub kept: u64,
}

/// The three parts of the store.
#[derive(Clone)]
pub struct FeatureStore {
    views: kv::Store,
    pub(crate) offline: Objects,
    pub(crate) online: kv::Store,
}

impl FeatureStore {
    /// Opens the buckets [`Bus::provision`] creates.
    pub async fn open(bus: &Bus) -> Result<Self, StoreError> {
        Ok(Self {
            views: bus.kv(FEATURE_VIEWS_KV).await.map_err(|e| nats("views")(&e))?,
            offline: bus.objects(FEATURES_BUCKET).await.map_err(|e| nats("offline")(&e))?,
            online: bus.kv(ONLINE_FEATURES_KV).await.map_err(|e| nats("online")(&e))?,
        })
    }

    /// The current spec of view `name`, if any.
    pub async fn view(&self, name: &str) -> Result<Option<FeatureViewSpec>, StoreError> {
        let Some(bytes) = self.views.get(name).await.map_err(|e| nats("views")(&e))? else { return Ok(None) };
        FeatureViewSpec::from_json(&bytes)
            .map(Some)
            .map_err(|e| StoreError::BadView { view: name.into(), message: e.to_string() })
    }

    /// View `name`, which must exist.
    pub async fn known_view(&self, name: &str) -> Result<FeatureViewSpec, StoreError> {
        self.view(name).await?.ok_or_else(|| StoreError::UnknownView(name.into()))
    }

    /// Stores `view` as the current spec of its name; returns the bucket's revision.
    pub async fn put_view(&self, view: &FeatureViewSpec) -> Result<u64, StoreError> {
        self.views.put(view.name.as_str(), view.canonical_json().into()).await.map_err(|e| nats("views")(&e))
    }

    /// Every view, in name order.
    pub async fn views(&self) -> Result<Vec<FeatureViewSpec>, StoreError> {
        let keys = self.views.keys().await.map_err(|e| nats("views")(&e))?;
        let mut names: Vec<String> = keys.try_collect().await.map_err(|e| nats("views")(&e))?;
        names.sort();
        let mut views = Vec::with_capacity(names.len());
        for name in names {
            views.extend(self.view(&name).await?);
        }
        Ok(views)
    }

    /// Appends `rows` (a batch from `dataset`, written at `written_ms`) to the offline log as its
    /// own file, unless that file exists already; returns the file's name and whether it was new.
    pub async fn append(
        &self,
        view: &FeatureViewSpec,
        rows: &ViewRows,
        dataset: &str,
        written_ms: i64,
    ) -> Result<(String, bool), StoreError> {
        let name = offline::object_name(view.name.as_str(), written_ms, dataset);
        if self.offline.size_of(&name).await.map_err(|e| nats("offline")(&e))?.is_some() {
            return Ok((name, false));
        }
        let mut bytes = Vec::new();
        offline::write(view, rows, &mut bytes).map_err(|source| StoreError::File { name: name.clone(), source })?;
        self.offline.put_named(&name, &bytes).await.map_err(|e| nats("offline")(&e))?;
        Ok((name, true))
    }

    /// The names of view `view`'s offline files, in write order.
    pub async fn files(&self, view: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{view}/");
        self.offline.names(&prefix).await.map_err(|e| nats("offline")(&e))
    }

    /// The whole offline log of `view`, file after file in write order.
    pub async fn log(&self, view: &FeatureViewSpec) -> Result<ViewRows, StoreError> {
        let mut rows = ViewRows::empty(view);
        for name in self.files(view.name.as_str()).await? {
            let bytes = self.file(&name).await?;
            offline::read(view, mlops_data::Source::Bytes(bytes.into()), &mut rows)
                .map_err(|source| StoreError::File { name, source })?;
        }
        Ok(rows)
    }

    /// Offline file `name`, whole.
    pub(crate) async fn file(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.offline.get_named(name, u64::MAX).await.map_err(|e| nats("offline")(&e))
    }

    /// The offline log of view `view` as batches, file after file in write order, for a thread
    /// off the runtime (reading it blocks): a task on `runtime` fetches the next file while the
    /// reader decodes one, so at most three of the view's files are in memory at a time (one
    /// decoding, one fetched, one waiting to be handed over). A file the store does not give is
    /// [`FeatureError::Unavailable`]; so is a fetching task that stopped before the log's end.
    pub fn log_batches(&self, view: &str, runtime: &tokio::runtime::Handle) -> Log<'static> {
        /// What the fetching task hands over: a file, or the end of the log.
        enum Fetched {
            File(String, Vec<u8>),
            End,
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Fetched, StoreError>>(1);
        let (store, view) = (self.clone(), view.to_owned());
        runtime.spawn(async move {
            let names = match store.files(&view).await {
                Ok(names) => names,
                Err(e) => return drop(tx.send(Err(e)).await),
            };
            for name in names {
                let file = store.file(&name).await.map(|bytes| Fetched::File(name, bytes));
                let failed = file.is_err();
                if tx.send(file).await.is_err() || failed {
                    return;
                }
            }
            let _ = tx.send(Ok(Fetched::End)).await;
        });
        let mut ended = false;
        let files = std::iter::from_fn(move || {
            if ended {
                return None;
            }
            let next = rx.blocking_recv().unwrap_or_else(|| {
                Err(StoreError::Nats { what: "offline", message: "the log's reader stopped before its end".into() })
            });
            ended = !matches!(next, Ok(Fetched::File(..)));
            match next {
                Ok(Fetched::End) => None,
                Ok(Fetched::File(name, bytes)) => Some(Ok((name, bytes))),
                Err(e) => Some(Err(e)),
            }
        });
        Box::new(files.flat_map(|file| -> Log<'static> {
            match file {
                Err(e) => Box::new(std::iter::once(Err(crate::FeatureError::Unavailable(e.to_string())))),
                Ok((name, bytes)) => match offline::batches(mlops_data::Source::Bytes(bytes.into())) {
                    Ok(batches) => crate::training::file_log(&name, batches),
                    Err(source) => Box::new(std::iter::once(Err(crate::FeatureError::InFile {
                        file: name,
                        error: Box::new(source),
                    }))),
                },
            }
        }))
    }

    /// Writes each entity's newest row of `rows` to the online store, unless the entry there is
    /// newer (a batch arriving after a later one). Safe to repeat.
    pub async fn materialise(&self, view: &FeatureViewSpec, rows: &ViewRows) -> Result<Materialised, StoreError> {
        let updates = newest_per_key(rows).into_iter().map(|r| {
            let key = entry_key(view.name.as_str(), &rows.keys[r]);
            let entry = Entry::of(rows, r);
            async move { self.upsert(&key, &entry).await }
        });
        let results: Vec<bool> = futures::stream::iter(updates).buffer_unordered(64).try_collect().await?;
        let written = results.iter().filter(|w| **w).count() as u64;
        Ok(Materialised { written, kept: results.len() as u64 - written })
    }

    /// Puts `entry` at `key` unless a newer one is there; true when written.
    async fn upsert(&self, key: &str, entry: &Entry) -> Result<bool, StoreError> {
        let err = nats("online");
        loop {
            let current = self.online.entry(key).await.map_err(|e| err(&e))?;
            // Another writer got there first (a revision moved, a key appeared): read again and
            // compare with theirs.
            match current.filter(|c| c.operation == kv::Operation::Put) {
                Some(c) => {
                    let stored = Entry::decode(&c.value).ok();
                    if stored.is_some_and(|s| !entry.newer_than(&s)) {
                        return Ok(false);
                    }
                    match self.online.update(key, entry.encode().into(), c.revision).await {
                        Ok(_) => return Ok(true),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                        Err(e) => return Err(err(&e)),
                    }
                }
                None => match self.online.create(key, entry.encode().into()).await {
                    Ok(_) => return Ok(true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                    Err(e) => return Err(err(&e)),
                },
            }
        }
    }

    /// A [`Replica`] of view `view`'s online entries, holding at most `limit` entities, following
    /// the bucket until `shutdown`.
    pub fn replica(&self, view: &str, limit: usize, shutdown: tokio_util::sync::CancellationToken) -> Arc<Replica> {
        Replica::follow(self.online.clone(), view, limit, shutdown)
    }

    /// The live online entries of `view` for `keys` (composite keys), in order; `None` for an
    /// unknown entity or one whose value is past the TTL at `now_ms`. What `replica` holds is
    /// read from it; the rest from the bucket.
    pub async fn online(
        &self,
        view: &FeatureViewSpec,
        keys: &[String],
        now_ms: i64,
        replica: Option<&Replica>,
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let ttl = view.ttl_ms();
        let names: Vec<String> = keys.iter().map(|k| entry_key(view.name.as_str(), k)).collect();
        let mut entries = match replica {
            Some(r) => r.held(&names),
            None => vec![None; names.len()],
        };
        let asked: Vec<(usize, String)> =
            names.into_iter().enumerate().filter(|(i, _)| entries[*i].is_none()).collect();
        // Owned keys and a cloned handle per read: the futures borrow nothing (so callers'
        // futures stay `Send`), and up to 256 reads are in flight at once.
        let reads = futures::stream::iter(asked).map(|(i, key)| {
            let kv = self.online.clone();
            async move {
                let bytes = kv.get(key).await.map_err(|e| nats("online")(&e))?;
                Ok::<_, StoreError>((i, bytes.and_then(|b| Entry::decode(&b).ok())))
            }
        });
        let read: Vec<(usize, Option<Entry>)> = reads.buffered(256).try_collect().await?;
        for (i, entry) in read {
            entries[i] = entry;
        }
        Ok(entries.into_iter().map(|e| e.filter(|e| e.live(now_ms, ttl))).collect())
    }
}
