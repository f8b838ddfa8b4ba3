//! A view's online entries held in a reader's memory (the deployer's), following the online
//! store's bucket: a read is a hash lookup instead of a round trip to nats-server per entity.
//!
//! The replica starts empty and *not current*: it watches the view's keys in the bucket from the
//! newest value of each, and is current once it has applied every value the bucket held when it
//! started; from then on it applies each write as the bucket streams it (a lag of a network hop).
//! Readers ask [`Replica::held`], which answers only while current; an entity it does not hold
//! (unknown, or written a moment ago) is read from the bucket by the caller, so a new entity is
//! served as soon as it is materialised. Over a lost connection the watch resumes after the last
//! value applied (async-nats's ordered consumer), so the replica keeps answering with what it
//! holds while NATS is out of reach and catches up after; a watch that ends is started again and
//! the replica rebuilt, not current (reads go to the bucket) until it holds every value again.
//!
//! Memory is bounded: a view with more than the replica's limit of entities (or of distinct
//! categories) is not held at all (readers go to the bucket, as without a replica). An entity of
//! ten numeric features cost about 200 bytes in the benchmark (its key, its slot in the hash
//! table, its times, and a number's `f64` or a category's index per feature).
//! Gauges: `mlops_feature_replica_current` and `mlops_feature_replica_entities`, per view.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_nats::jetstream::kv;
use foldhash::HashMap;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::online::Entry;

/// The view's keys in the bucket: `VIEW.<key parts>`.
fn subjects(view: &str) -> String {
    format!("{view}.>")
}

/// A value slot: a number's `f64` bits, or a NaN pattern no JSON number decodes to, tagging a
/// missing value or a category's index.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cell(u64);

const TAG: u64 = 0xFFFF_0000_0000_0000;
const CATEGORY: u64 = 0xFFFF_0000_0000_0000;
const MISSING: u64 = 0xFFFE_0000_0000_0000;

/// One entity's entry, compact.
struct Held {
    event_ms: i64,
    written_ms: i64,
    values: Box<[Cell]>,
}

#[derive(Default)]
struct State {
    current: bool,
    /// The view outgrew the limit: the replica holds nothing and is never current again.
    given_up: bool,
    entries: HashMap<Box<str>, Held>,
    /// Bucket entries applied, for reporting every so many.
    applied: u64,
    categories: Vec<Arc<str>>,
    category_ids: HashMap<Arc<str>, u32>,
}

impl State {
    fn cell(&mut self, value: &serde_json::Value) -> Cell {
        match value {
            serde_json::Value::Number(n) => n.as_f64().map_or(Cell(MISSING), |x| Cell(x.to_bits())),
            serde_json::Value::String(s) => {
                let id = match self.category_ids.get(s.as_str()) {
                    Some(id) => *id,
                    None => {
                        let id = self.categories.len() as u32;
                        let s: Arc<str> = Arc::from(s.as_str());
                        self.categories.push(s.clone());
                        self.category_ids.insert(s, id);
                        id
                    }
                };
                Cell(CATEGORY | u64::from(id))
            }
            _ => Cell(MISSING),
        }
    }

    fn value(&self, cell: Cell) -> serde_json::Value {
        match cell.0 & TAG {
            CATEGORY => serde_json::Value::String(self.categories[(cell.0 & !TAG) as usize].to_string()),
            MISSING => serde_json::Value::Null,
            _ => serde_json::Value::from(f64::from_bits(cell.0)),
        }
    }

    fn entry(&self, held: &Held) -> Entry {
        Entry {
            event_ms: held.event_ms,
            written_ms: held.written_ms,
            values: held.values.iter().map(|c| self.value(*c)).collect(),
        }
    }
}

/// A view's online entries in memory; see the module.
pub struct Replica {
    view: String,
    limit: usize,
    state: RwLock<State>,
}

impl Replica {
    /// A replica of `view`'s entries in `online` (the store's online bucket), holding at most
    /// `limit` entities (and as many distinct categories), following the bucket on a task of its
    /// own until `shutdown` or until the replica is dropped.
    pub fn follow(online: kv::Store, view: &str, limit: usize, shutdown: CancellationToken) -> Arc<Self> {
        let replica = Arc::new(Self { view: view.to_owned(), limit, state: RwLock::new(State::default()) });
        if limit > 0 {
            tokio::spawn(watch(Arc::downgrade(&replica), online, subjects(view), shutdown));
        } else {
            replica.state.write().expect("not poisoned").given_up = true;
            replica.report(false, 0);
        }
        replica
    }

    /// Whether the view outgrew the limit: the replica holds nothing and readers go to the bucket.
    pub fn given_up(&self) -> bool {
        self.state.read().expect("not poisoned").given_up
    }

    /// Whether the replica holds every entry and follows the bucket.
    pub fn current(&self) -> bool {
        self.state.read().expect("not poisoned").current
    }

    /// The entries of `entity_keys` (bucket keys, [`crate::online::entry_key`]) it holds, in
    /// order; all `None` while it is not current. `None` says "ask the bucket", not "unknown".
    pub fn held(&self, entity_keys: &[String]) -> Vec<Option<Entry>> {
        let state = self.state.read().expect("not poisoned");
        if !state.current {
            return vec![None; entity_keys.len()];
        }
        entity_keys.iter().map(|k| state.entries.get(k.as_str()).map(|h| state.entry(h))).collect()
    }

    /// How many entities it holds.
    pub fn len(&self) -> usize {
        self.state.read().expect("not poisoned").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one streamed bucket entry; false once the view is too big to hold.
    fn apply(&self, entry: kv::Entry) -> bool {
        let mut state = self.state.write().expect("not poisoned");
        match entry.operation {
            kv::Operation::Put => match Entry::decode(&entry.value) {
                Ok(e) => {
                    let values = e.values.iter().map(|v| state.cell(v)).collect();
                    let held = Held { event_ms: e.event_ms, written_ms: e.written_ms, values };
                    state.entries.insert(entry.key.into_boxed_str(), held);
                }
                // Unreadable: not held, so readers ask the bucket (and find it unreadable too).
                Err(error) => {
                    tracing::warn!(view = %self.view, key = %entry.key, %error, "online entry not replicated");
                    state.entries.remove(entry.key.as_str());
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                state.entries.remove(entry.key.as_str());
            }
        }
        if state.entries.len() > self.limit || state.categories.len() > self.limit {
            tracing::warn!(view = %self.view, limit = self.limit,
                "feature view too big to hold in memory; its entries are read from the online store");
            *state = State { given_up: true, ..State::default() };
            drop(state);
            self.report(false, 0);
            return false;
        }
        state.applied += 1;
        let became_current = entry.seen_current && !state.current;
        if became_current {
            state.current = true;
            tracing::info!(view = %self.view, entities = state.entries.len(), "feature replica current");
        }
        let (current, len, applied) = (state.current, state.entries.len(), state.applied);
        drop(state);
        if became_current || applied % 4096 == 0 {
            self.report(current, len);
        }
        true
    }

    /// The replica's gauges: whether it is current, and how many entities it holds.
    fn report(&self, current: bool, len: usize) {
        let view = self.view.clone();
        metrics::gauge!("mlops_feature_replica_current", "view" => view.clone()).set(f64::from(u8::from(current)));
        metrics::gauge!("mlops_feature_replica_entities", "view" => view).set(len as f64);
    }

    /// Forgets everything, for a rebuild; false if the replica has given up.
    fn restart(&self) -> bool {
        let mut state = self.state.write().expect("not poisoned");
        let given_up = state.given_up;
        *state = State { given_up, ..State::default() };
        !given_up
    }
}

/// Follows `subjects` in `online` into the replica until shutdown, or until it is dropped or
/// gives up. A watch that reports an error goes on (async-nats's ordered consumer resumes after
/// the last value applied, over a reconnection too, so nothing is missed); one that ends is
/// started again after a pause, the replica rebuilt from the bucket's values (not current, so
/// reads go to the bucket meanwhile).
async fn watch(replica: Weak<Replica>, online: kv::Store, subjects: String, shutdown: CancellationToken) {
    let mut pause = Duration::from_millis(100);
    loop {
        match replica.upgrade() {
            Some(r) if r.restart() => {}
            _ => return,
        }
        let watched = tokio::select! {
            w = online.watch_with_history(&subjects) => w,
            () = shutdown.cancelled() => return,
        };
        match watched {
            Ok(mut entries) => loop {
                let entry = tokio::select! {
                    e = entries.next() => e,
                    () = shutdown.cancelled() => return,
                };
                let Some(entry) = entry else { break };
                let Some(r) = replica.upgrade() else { return };
                match entry {
                    Ok(entry) => {
                        if !r.apply(entry) {
                            return;
                        }
                        pause = Duration::from_millis(100);
                    }
                    Err(error) => tracing::warn!(%subjects, %error, "online store watch interrupted; it resumes"),
                }
            },
            Err(error) => tracing::warn!(%subjects, %error, "cannot watch the online store; retrying"),
        }
        if let Some(r) = replica.upgrade() {
            r.state.write().expect("not poisoned").current = false;
            r.report(false, r.len());
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_keep_numbers_categories_and_missing_values_apart() {
        let mut state = State::default();
        let values = serde_json::json!([1.5, -0.0, 1e308, "retail", null, "retail", 42]);
        let cells: Vec<Cell> = values.as_array().unwrap().iter().map(|v| state.cell(v)).collect();
        assert_eq!(cells[3], cells[5], "one index per category");
        assert_eq!(state.categories.len(), 1);
        let back: Vec<serde_json::Value> = cells.iter().map(|c| state.value(*c)).collect();
        // Numbers come back as f64 (42 as 42.0), as the bucket's entries read.
        assert_eq!(
            serde_json::Value::from(back),
            serde_json::json!([1.5, -0.0, 1e308, "retail", null, "retail", 42.0])
        );
    }
}
