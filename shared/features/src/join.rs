//! The point-in-time join: for each entity row, the record of a view that was visible at the
//! row's time (see the crate's documentation), without leaking values written later.

use std::collections::BTreeMap;

use foldhash::HashMap;
use foldhash::HashMapExt as _;

use mlops_shared::table::Column;

use crate::ViewRows;

/// What a join found, for the report and the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Rows that got a record.
    pub matched: u64,
    /// Rows whose entity the view has never seen.
    pub unknown: u64,
    /// Rows whose entity is known but had no value visible then (none yet, or past the TTL).
    pub absent: u64,
}

/// What a join found in each view, by view name.
pub type ViewStats = Vec<(String, JoinStats)>;

/// For each entity row (`keys[i]` as of `at_ms[i]`), the index in `log` of the record visible
/// then, within `ttl_ms` of it.
///
/// The rows' keys are numbered; the log's records of those keys and the rows are grouped by key
/// (a counting sort, no allocation per key), each key's records in write order and its rows in
/// time order; a sweep adds each record once it has been written, keyed by event time, so the
/// answer for a row is the newest event time present. O(rows + records + Σ k log k) time for k
/// records or rows per key (see [`Visible`]).
pub fn as_of(log: &ViewRows, ttl_ms: i64, keys: &[String], at_ms: &[i64]) -> (Vec<Option<u32>>, JoinStats) {
    let mut ids: HashMap<&str, u32> = HashMap::with_capacity(keys.len());
    let row_ids: Vec<u32> = keys
        .iter()
        .map(|k| {
            let next = ids.len() as u32;
            *ids.entry(k.as_str()).or_insert(next)
        })
        .collect();
    let record_ids = number_records(log, &ids);
    let (record_start, mut records) = group(&record_ids, ids.len());
    let (row_start, mut rows) = group(&row_ids, ids.len());
    let mut found = vec![None; keys.len()];
    let mut stats = JoinStats::default();
    let mut visible = Visible::default();
    for id in 0..ids.len() {
        let key_records = &mut records[record_start[id]..record_start[id + 1]];
        let key_rows = &mut rows[row_start[id]..row_start[id + 1]];
        if key_records.is_empty() {
            stats.unknown += key_rows.len() as u64;
            continue;
        }
        key_records.sort_unstable_by_key(|&r| (log.written_ms[r as usize], r));
        key_rows.sort_unstable_by_key(|&r| at_ms[r as usize]);
        visible.clear(key_records.len());
        let mut next = key_records.iter().peekable();
        for &row in key_rows.iter() {
            let at = at_ms[row as usize];
            while let Some(&&r) = next.peek() {
                if log.written_ms[r as usize] > at {
                    break;
                }
                visible.insert(log.event_ms[r as usize], r);
                next.next();
            }
            match visible.newest_at(at).filter(|&(event, _)| at - event <= ttl_ms) {
                Some((_, r)) => {
                    found[row as usize] = Some(r);
                    stats.matched += 1;
                }
                None => stats.absent += 1,
            }
        }
    }
    (found, stats)
}

/// One key's records visible so far, by event time; a later write of the same event time
/// replaces an earlier one. A sorted `Vec` for the usual few records (no allocation per key), a
/// `BTreeMap` for a key with many, where inserting out of event order (a backfill, a file sorted
/// newest first) would shift the `Vec` each time.
#[derive(Default)]
struct Visible {
    few: Vec<(i64, u32)>,
    many: Option<BTreeMap<i64, u32>>,
}

/// Records of one key above which [`Visible`] keeps a tree.
const FEW_RECORDS: usize = 64;

impl Visible {
    /// Empty, for a key of `records` records.
    fn clear(&mut self, records: usize) {
        self.few.clear();
        self.many = (records > FEW_RECORDS).then(BTreeMap::new);
    }

    fn insert(&mut self, event: i64, record: u32) {
        if let Some(tree) = &mut self.many {
            tree.insert(event, record);
            return;
        }
        match self.few.binary_search_by_key(&event, |v| v.0) {
            Ok(i) => self.few[i].1 = record,
            Err(i) => self.few.insert(i, (event, record)),
        }
    }

    /// The record with the newest event time at or before `at`, with that time.
    fn newest_at(&self, at: i64) -> Option<(i64, u32)> {
        match &self.many {
            Some(tree) => tree.range(..=at).next_back().map(|(&e, &r)| (e, r)),
            None => self.few.partition_point(|v| v.0 <= at).checked_sub(1).map(|i| self.few[i]),
        }
    }
}

/// Log records below which numbering them stays on one thread: a thread costs more.
const PARALLEL_RECORDS: usize = 100_000;

/// Each log record's key number in `ids`, or `u32::MAX` for a key no row asks for; the log is
/// split over two threads when it is long.
fn number_records(log: &ViewRows, ids: &HashMap<&str, u32>) -> Vec<u32> {
    let number = |keys: &[String]| -> Vec<u32> {
        keys.iter().map(|k| ids.get(k.as_str()).copied().unwrap_or(u32::MAX)).collect()
    };
    if log.keys.len() < PARALLEL_RECORDS {
        return number(&log.keys);
    }
    let (a, b) = log.keys.split_at(log.keys.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| number(b));
        let mut ids = number(a);
        ids.extend(second.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        ids
    })
}

/// The positions of `ids` grouped by id (ids of `u32::MAX` left out), each group in position
/// order, and where each id's group starts (`starts[id]..starts[id + 1]`).
fn group(ids: &[u32], count: usize) -> (Vec<usize>, Vec<u32>) {
    let mut starts = vec![0usize; count + 1];
    for &id in ids.iter().filter(|&&id| id != u32::MAX) {
        starts[id as usize + 1] += 1;
    }
    for i in 0..count {
        starts[i + 1] += starts[i];
    }
    let mut next = starts.clone();
    let mut positions = vec![0u32; starts[count]];
    for (i, &id) in ids.iter().enumerate().filter(|(_, id)| **id != u32::MAX) {
        positions[next[id as usize]] = i as u32;
        next[id as usize] += 1;
    }
    (starts, positions)
}

/// Feature `feature` (its position in the view) of each row's record; missing where none.
pub fn gather(log: &ViewRows, found: &[Option<u32>], feature: usize) -> Column {
    match &log.columns[feature] {
        Column::Numeric(v) => Column::Numeric(found.iter().map(|r| r.and_then(|r| v[r as usize])).collect()),
        Column::Categorical(v) => {
            Column::Categorical(found.iter().map(|r| r.and_then(|r| v[r as usize].clone())).collect())
        }
    }
}

/// The same answer as [`as_of`] by the definition, record by record: the reference the property
/// tests hold the sweep to. O(rows × records).
pub fn as_of_brute_force(log: &ViewRows, ttl_ms: i64, keys: &[String], at_ms: &[i64]) -> Vec<Option<u32>> {
    keys.iter()
        .zip(at_ms)
        .map(|(key, &at)| {
            (0..log.len())
                .filter(|&r| &log.keys[r] == key && log.event_ms[r] <= at && log.written_ms[r] <= at)
                .max_by_key(|&r| (log.event_ms[r], log.written_ms[r], r))
                .filter(|&r| at - log.event_ms[r] <= ttl_ms)
                .map(|r| r as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A log of `(key, event, written)` records with one numeric feature: the record's position.
    fn log(records: &[(u8, i64, i64)]) -> ViewRows {
        ViewRows {
            keys: records.iter().map(|r| format!("k{}", r.0)).collect(),
            event_ms: records.iter().map(|r| r.1).collect(),
            written_ms: records.iter().map(|r| r.2).collect(),
            columns: vec![Column::Numeric((0..records.len()).map(|i| Some(i as f64)).collect())],
        }
    }

    fn rows(entities: &[(u8, i64)]) -> (Vec<String>, Vec<i64>) {
        (entities.iter().map(|e| format!("k{}", e.0)).collect(), entities.iter().map(|e| e.1).collect())
    }

    #[test]
    fn a_late_correction_is_invisible_before_it_was_written() {
        // k1's value at t=10, written at 11; corrected at 50 (same event time).
        let log = log(&[(1, 10, 11), (1, 10, 50), (1, 30, 31)]);
        let (keys, at) = rows(&[(1, 9), (1, 10), (1, 11), (1, 40), (1, 29), (1, 50), (2, 50)]);
        let (found, stats) = as_of(&log, i64::MAX, &keys, &at);
        // Before the event: nothing. At 10 it was not written yet. At 11 the first write. At 29,
        // still the first write (the correction came at 50). At 40 the newer event.
        assert_eq!(found, [None, None, Some(0), Some(2), Some(0), Some(2), None]);
        assert_eq!(stats, JoinStats { matched: 4, unknown: 1, absent: 2 });
    }

    #[test]
    fn the_ttl_edge_is_inclusive() {
        let log = log(&[(1, 100, 100)]);
        let (keys, at) = rows(&[(1, 105), (1, 106)]);
        assert_eq!(as_of(&log, 5, &keys, &at).0, [Some(0), None]);
    }

    #[test]
    fn a_long_log_numbered_on_two_threads_joins_as_the_definition_says() {
        // 120,000 records of 1,000 keys (the two-thread numbering), 60 rows of 70 keys, 30
        // of them unknown.
        let records: Vec<(u8, i64, i64)> = Vec::new();
        let mut log = log(&records);
        for i in 0..120_000i64 {
            log.keys.push(format!("k{}", i * 7919 % 1000));
            log.event_ms.push(i % 977);
            log.written_ms.push(i % 977 + i % 13);
        }
        log.columns = vec![Column::Numeric((0..120_000).map(|i| Some(f64::from(i))).collect())];
        let keys: Vec<String> = (0..60).map(|i| format!("k{}", i * 17 % 70 + 960)).collect();
        let at: Vec<i64> = (0..60).map(|i| i * 31 % 1000).collect();
        let (found, stats) = as_of(&log, 500, &keys, &at);
        assert_eq!(found, as_of_brute_force(&log, 500, &keys, &at));
        assert!(stats.unknown > 0 && stats.matched > 0, "{stats:?}");
    }

    #[test]
    fn a_key_with_many_records_out_of_event_order_joins_as_the_definition_says() {
        // One key, 5,000 records written in turn but with event times descending (a backfill
        // sorted newest first), corrections among them; the tree path of `Visible`.
        let records: Vec<(u8, i64, i64)> = (0..5_000i64).map(|i| (1, 10_000 - i % 4_000, 10_000 + i)).collect();
        let log = log(&records);
        let (keys, at) = rows(&(0..200).map(|i| (1u8, 9_000 + i * 37)).collect::<Vec<_>>());
        assert_eq!(as_of(&log, 2_000, &keys, &at).0, as_of_brute_force(&log, 2_000, &keys, &at));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn the_sweep_agrees_with_the_definition(
            // Few keys and a short clock: ties of event time, of write time and of both.
            records in prop::collection::vec((0u8..4, 0i64..20, 0i64..12), 0..40),
            entities in prop::collection::vec((0u8..5, 0i64..35), 0..40),
            ttl in prop::sample::select(vec![0i64, 1, 3, 7, i64::MAX]),
        ) {
            // A record is written at or after its event, up to 11 later (a late correction).
            let records: Vec<_> = records.into_iter().map(|(k, e, delay)| (k, e, e + delay)).collect();
            let log = log(&records);
            let (keys, at) = rows(&entities);
            let (found, stats) = as_of(&log, ttl, &keys, &at);
            prop_assert_eq!(&found, &as_of_brute_force(&log, ttl, &keys, &at));
            prop_assert_eq!(stats.matched + stats.unknown + stats.absent, entities.len() as u64);
        }

        #[test]
        fn records_written_before_their_event_still_wait_for_it(
            records in prop::collection::vec((0u8..3, 0i64..20, 0i64..20), 0..30),
            entities in prop::collection::vec((0u8..3, 0i64..25), 0..30),
        ) {
            // Written times independent of event times (a forecast is written before its time).
            let log = log(&records);
            let (keys, at) = rows(&entities);
            prop_assert_eq!(as_of(&log, 4, &keys, &at).0, as_of_brute_force(&log, 4, &keys, &at));
        }
    }
}
