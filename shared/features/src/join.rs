//! The point-in-time join: for each entity row, the record of a view that was visible at the
//! row's time (see the crate's documentation), without leaking values written later.
//!
//! The log is read once, in write order, a chunk at a time ([`AsOf`]): memory holds the entity
//! rows, each row's best record so far and its values, and one chunk of the log, however long
//! the log is.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray as _;
use arrow_array::types::Float64Type;
use arrow_array::{Array as _, RecordBatch};
use foldhash::HashMap;
use foldhash::HashMapExt as _;
use mlops_data::view;
use mlops_shared::spec::{FeatureKind, FeatureViewSpec};
use mlops_shared::table::Column;

use crate::keys::{KeyIds, NONE, key_ids};
use crate::rows::{Written, categorical, number, times};
use crate::training::LogBatch;
use crate::{FeatureError, ViewRows};

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

/// What a join found for one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Matched,
    Unknown,
    Absent,
}

impl JoinStats {
    /// The counts of `outcomes`.
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut s = Self::default();
        for o in outcomes {
            *match o {
                Outcome::Matched => &mut s.matched,
                Outcome::Unknown => &mut s.unknown,
                Outcome::Absent => &mut s.absent,
            } += 1;
        }
        s
    }
}

/// The entity rows of a join: each row's key numbered, and each key's rows in time order.
pub struct EntityRows {
    ids: KeyIds,
    row_ids: Vec<u32>,
    at_ms: Vec<i64>,
    /// Row numbers grouped by key (`grouped[starts[id]..starts[id + 1]]`), each group by time.
    starts: Vec<usize>,
    grouped: Vec<u32>,
}

impl EntityRows {
    /// Rows whose entity is `keys[i]` as of `at_ms[i]`.
    pub fn new(keys: Vec<String>, at_ms: Vec<i64>) -> Self {
        let mut ids = KeyIds::with_capacity(keys.len());
        let row_ids: Vec<u32> = keys.into_iter().map(|k| ids.number(k)).collect();
        let (starts, mut grouped) = group(&row_ids, ids.len());
        for id in 0..ids.len() {
            grouped[starts[id]..starts[id + 1]].sort_unstable_by_key(|&r| at_ms[r as usize]);
        }
        Self { ids, row_ids, at_ms, starts, grouped }
    }

    pub fn len(&self) -> usize {
        self.at_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at_ms.is_empty()
    }

    fn rows_of(&self, id: u32) -> &[u32] {
        &self.grouped[self.starts[id as usize]..self.starts[id as usize + 1]]
    }
}

/// Log records per chunk: the sweep's cost per chunk is the chunk plus the rows of the keys it
/// holds, so a chunk is large enough that rows are revisited a few times, small enough to keep.
const CHUNK_RECORDS: usize = 1 << 20;

/// The best record a row has seen: its event time, write time and position in the log, the
/// order in which a record wins.
type Best = (i64, i64, u64);

/// The join of [`EntityRows`] against one view's log, fed the log's batches in write order.
pub struct AsOf<'a> {
    rows: &'a EntityRows,
    view: &'a FeatureViewSpec,
    written: Written<'a>,
    /// The features taken, by name and kind, and each row's value of them so far.
    features: Vec<(&'a str, FeatureKind)>,
    values: Vec<Column>,
    best: Vec<Option<Best>>,
    /// Keys the log has held so far.
    known: Vec<bool>,
    chunk: Chunk,
    chunk_records: usize,
    /// Records of a chunk (or rows changed by one) from which the work is split over two threads.
    parallel_from: usize,
    /// Records of the log before the chunk.
    read: u64,
}

/// Part of the log: its batches and, for each record, its key's number among the rows' keys
/// ([`NONE`] for a key no row asks for), event and write time.
#[derive(Default)]
struct Chunk {
    batches: Vec<RecordBatch>,
    /// Each batch's file, and the row of the file its first record is.
    origins: Vec<(Arc<str>, usize)>,
    /// Where each batch's first record is in the chunk.
    firsts: Vec<usize>,
    ids: Vec<u32>,
    event_ms: Vec<i64>,
    written_ms: Vec<i64>,
}

impl<'a> AsOf<'a> {
    /// Joins `rows` against `view`'s log (its write time as `written` says), taking `features`.
    pub fn new(
        rows: &'a EntityRows,
        view: &'a FeatureViewSpec,
        written: Written<'a>,
        features: &[&'a str],
    ) -> Result<Self, FeatureError> {
        let features = features
            .iter()
            .map(|&name| {
                view.feature(name).map(|f| (name, f.kind)).ok_or_else(|| {
                    FeatureError::Offline(format!("feature view `{}` has no feature `{name}`", view.name))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let values = features
            .iter()
            .map(|(_, kind)| match kind {
                FeatureKind::Numeric => Column::Numeric(vec![None; rows.len()]),
                FeatureKind::Categorical => Column::Categorical(vec![None; rows.len()]),
            })
            .collect();
        Ok(Self {
            rows,
            view,
            written,
            features,
            values,
            best: vec![None; rows.len()],
            known: vec![false; rows.ids.len()],
            chunk: Chunk::default(),
            chunk_records: CHUNK_RECORDS,
            parallel_from: PARALLEL_RECORDS,
            read: 0,
        })
    }

    /// Takes the log's next batch. An error names the batch's file and the row in it.
    pub fn push(&mut self, log: LogBatch) -> Result<(), FeatureError> {
        let LogBatch { batch, file, first_row } = log;
        let in_file = |source: FeatureError| FeatureError::InFile { file: file.to_string(), error: Box::new(source) };
        let at = |(row, message): (usize, String)| in_file(FeatureError::Row { row: first_row + row, message });
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| in_file(FeatureError::MissingColumn(name.to_owned())))
        };
        // All three read before any is kept: a refused batch leaves the chunk as it was.
        let ids = key_ids(self.view, &batch, &self.rows.ids).map_err(in_file)?;
        let events = times(column(&self.view.event_time)?, &self.view.event_time).map_err(at)?;
        let written = match self.written {
            Written::At(ms) => vec![ms; batch.num_rows()],
            Written::Column(name) => times(column(name)?, name).map_err(at)?,
        };
        self.chunk.firsts.push(self.chunk.ids.len());
        self.chunk.ids.extend(ids);
        self.chunk.event_ms.extend(events);
        self.chunk.written_ms.extend(written);
        self.chunk.origins.push((file, first_row));
        self.chunk.batches.push(batch);
        if self.chunk.ids.len() >= self.chunk_records {
            self.sweep()?;
        }
        Ok(())
    }

    /// Each taken feature's value for each row (missing where none was visible), and what the
    /// join found for each row.
    pub fn finish(mut self) -> Result<(Vec<Column>, Vec<Outcome>), FeatureError> {
        self.sweep()?;
        let ttl_ms = self.view.ttl_ms();
        let outcomes: Vec<Outcome> = (0..self.rows.len())
            .map(|row| match self.best[row] {
                Some((event, _, _)) if self.rows.at_ms[row] - event <= ttl_ms => Outcome::Matched,
                _ if !self.known[self.rows.row_ids[row] as usize] => Outcome::Unknown,
                _ => Outcome::Absent,
            })
            .collect();
        // A row whose best record is past the TTL took its values: they are not visible.
        for (row, _) in outcomes.iter().enumerate().filter(|(_, o)| **o != Outcome::Matched) {
            for column in &mut self.values {
                match column {
                    Column::Numeric(v) => v[row] = None,
                    Column::Categorical(v) => v[row] = None,
                }
            }
        }
        Ok((self.values, outcomes))
    }

    /// Joins the chunk, its keys split over two threads when it is long, and the rows whose
    /// answer changed take their record's values.
    fn sweep(&mut self) -> Result<(), FeatureError> {
        let chunk = std::mem::take(&mut self.chunk);
        let keys = self.rows.ids.len();
        let (starts, mut records) = group(&chunk.ids, keys);
        for (id, known) in self.known.iter_mut().enumerate() {
            *known |= starts[id] < starts[id + 1];
        }
        let found = if records.len() < self.parallel_from {
            self.sweep_keys(&chunk, &starts, 0..keys, &mut records)
        } else {
            // Halves of about as many records each.
            let mid = starts[..keys].partition_point(|&s| s < records.len() / 2);
            let (first, second) = records.split_at_mut(starts[mid]);
            let this = &*self;
            std::thread::scope(|s| {
                let later = s.spawn(|| this.sweep_keys(&chunk, &starts, mid..keys, second));
                let mut found = this.sweep_keys(&chunk, &starts, 0..mid, first);
                found.extend(later.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
                found
            })
        };
        let mut changed = Vec::with_capacity(found.len());
        for (row, best, r) in found {
            self.best[row as usize] = Some(best);
            changed.push((row, r));
        }
        self.take_values(&chunk, &mut changed)?;
        self.read += chunk.ids.len() as u64;
        Ok(())
    }

    /// The chunk's records of each key of `ids` (`records`: theirs, grouped from
    /// `starts[ids.start]`) in write order, each added once written to the key's visible records
    /// (by event time), so that a row's answer in the chunk is the newest event time visible at
    /// its time: each row whose answer beats its best from earlier chunks, with the answer and
    /// its record in the chunk.
    fn sweep_keys(
        &self,
        chunk: &Chunk,
        starts: &[usize],
        ids: std::ops::Range<usize>,
        records: &mut [u32],
    ) -> Vec<(u32, Best, u32)> {
        let offset = starts[ids.start];
        let mut visible = Visible::default();
        let mut found = Vec::new();
        for id in ids {
            let key_records = &mut records[starts[id] - offset..starts[id + 1] - offset];
            if key_records.is_empty() {
                continue;
            }
            key_records.sort_unstable_by_key(|&r| (chunk.written_ms[r as usize], r));
            // No record is visible before both its times: rows earlier than that are skipped.
            let earliest = key_records
                .iter()
                .map(|&r| chunk.event_ms[r as usize].max(chunk.written_ms[r as usize]))
                .min()
                .unwrap_or(i64::MAX);
            let key_rows = self.rows.rows_of(id as u32);
            let key_rows = &key_rows[key_rows.partition_point(|&row| self.rows.at_ms[row as usize] < earliest)..];
            visible.clear(key_records.len());
            let mut next = key_records.iter().peekable();
            for &row in key_rows {
                let at = self.rows.at_ms[row as usize];
                while let Some(&&r) = next.peek() {
                    if chunk.written_ms[r as usize] > at {
                        break;
                    }
                    visible.insert(chunk.event_ms[r as usize], r);
                    next.next();
                }
                let Some((event, r)) = visible.newest_at(at) else { continue };
                let candidate = (event, chunk.written_ms[r as usize], self.read + u64::from(r));
                if self.best[row as usize].is_none_or(|b| candidate > b) {
                    found.push((row, candidate, r));
                }
            }
        }
        found
    }

    /// Each changed row (`(row, record in the chunk)`) takes its record's feature values, the
    /// features split over two threads when many rows changed.
    fn take_values(&mut self, chunk: &Chunk, changed: &mut [(u32, u32)]) -> Result<(), FeatureError> {
        changed.sort_unstable_by_key(|c| c.1);
        let changed = &*changed;
        let take = |features: &[(&str, FeatureKind)], values: &mut [Column]| -> Result<(), FeatureError> {
            for ((name, _), column) in features.iter().zip(values) {
                take_feature(chunk, changed, name, column).map_err(|(r, message)| {
                    // The record's file and row in it.
                    let b = chunk.firsts.partition_point(|&first| first <= r) - 1;
                    let (file, first_row) = &chunk.origins[b];
                    let row = first_row + r - chunk.firsts[b];
                    let source = FeatureError::Row { row, message: format!("feature `{name}`: {message}") };
                    FeatureError::InFile { file: file.to_string(), error: Box::new(source) }
                })?;
            }
            Ok(())
        };
        if changed.len() < self.parallel_from || self.values.len() < 2 {
            return take(&self.features, &mut self.values);
        }
        let half = self.values.len() / 2;
        let (features, later_features) = self.features.split_at(half);
        let (values, later_values) = self.values.split_at_mut(half);
        std::thread::scope(|s| {
            let later = s.spawn(|| take(later_features, later_values));
            let first = take(features, values);
            first.and(later.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        })
    }
}

/// Feature `name` of each changed row's record (`changed`, in record order) into `column`; the
/// error is the record in the chunk and what is wrong with its value.
fn take_feature(chunk: &Chunk, changed: &[(u32, u32)], name: &str, column: &mut Column) -> Result<(), (usize, String)> {
    let mut rest = changed;
    for (b, batch) in chunk.batches.iter().enumerate() {
        let end = chunk.firsts.get(b + 1).copied().unwrap_or(usize::MAX);
        let (here, later) = rest.split_at(rest.partition_point(|c| (c.1 as usize) < end));
        rest = later;
        let first = chunk.firsts[b];
        // A file written before the view gained the feature: missing (over a value an older
        // record gave).
        let Some(array) = batch.column_by_name(name) else {
            for &(row, _) in here {
                match column {
                    Column::Numeric(v) => v[row as usize] = None,
                    Column::Categorical(v) => v[row as usize] = None,
                }
            }
            continue;
        };
        match (&mut *column, array.as_primitive_opt::<Float64Type>()) {
            // Doubles (the offline files' numeric columns) taken as they are.
            (Column::Numeric(v), Some(doubles)) => {
                for &(row, r) in here {
                    let i = r as usize - first;
                    v[row as usize] = match doubles.is_valid(i).then(|| doubles.value(i)) {
                        Some(x) if !x.is_finite() => return Err((r as usize, format!("{x} is not a number"))),
                        x => x,
                    };
                }
            }
            (Column::Numeric(v), None) => {
                let cells = view(array);
                for &(row, r) in here {
                    v[row as usize] = number(cells.get(r as usize - first)).map_err(|m| (r as usize, m))?;
                }
            }
            (Column::Categorical(v), _) => {
                let cells = view(array);
                for &(row, r) in here {
                    v[row as usize] = categorical(cells.get(r as usize - first));
                }
            }
        }
    }
    Ok(())
}

/// Records of a chunk (or rows changed by one) from which sweeping it (or taking the values) is
/// split over two threads.
const PARALLEL_RECORDS: usize = 50_000;

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

/// The positions of `ids` grouped by id (ids of [`NONE`] left out), each group in position
/// order, and where each id's group starts (`starts[id]..starts[id + 1]`).
fn group(ids: &[u32], count: usize) -> (Vec<usize>, Vec<u32>) {
    let mut starts = vec![0usize; count + 1];
    for &id in ids.iter().filter(|&&id| id != NONE) {
        starts[id as usize + 1] += 1;
    }
    for i in 0..count {
        starts[i + 1] += starts[i];
    }
    let mut next = starts.clone();
    let mut positions = vec![0u32; starts[count]];
    for (i, &id) in ids.iter().enumerate().filter(|(_, id)| **id != NONE) {
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

/// For each key of `log`, the record visible at `at_ms` (the rule of [`AsOf`] for one time and
/// every key), if any.
pub fn visible_at(log: &ViewRows, ttl_ms: i64, at_ms: i64) -> Vec<Option<u32>> {
    let mut newest: HashMap<&str, Option<(i64, i64, u32)>> = HashMap::new();
    for r in 0..log.len() {
        let slot = newest.entry(log.keys[r].as_str()).or_insert(None);
        let candidate = (log.event_ms[r], log.written_ms[r], r as u32);
        if candidate.0 <= at_ms && candidate.1 <= at_ms && slot.is_none_or(|b| candidate > b) {
            *slot = Some(candidate);
        }
    }
    newest.into_values().map(|b| b.filter(|b| at_ms - b.0 <= ttl_ms).map(|b| b.2)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
    use proptest::prelude::*;

    use super::*;

    /// A record: its key, event time and write time, in seconds.
    type Record = (u8, i64, i64);

    /// A view of key `k`, event time `e`, write time `w` and one feature `n`, with `ttl` seconds.
    fn view(ttl: Option<u64>) -> FeatureViewSpec {
        let mut view = FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: v\nentities: [k]\nevent_time: e\nfeatures:\n\
             - {name: n, type: numeric, nullable: true}\n",
        )
        .unwrap();
        view.ttl = ttl;
        view
    }

    /// `records` as a batch whose feature is each record's position in the log, from `first`.
    fn batch(records: &[Record], first: usize) -> RecordBatch {
        let ms = |t: &mut dyn Iterator<Item = i64>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from_iter_values(t.map(|s| s * 1000)))
        };
        RecordBatch::try_from_iter([
            ("k", Arc::new(StringArray::from_iter_values(records.iter().map(|r| format!("k{}", r.0)))) as ArrayRef),
            ("e", ms(&mut records.iter().map(|r| r.1))),
            ("w", ms(&mut records.iter().map(|r| r.2))),
            ("n", Arc::new(Float64Array::from_iter_values((first..first + records.len()).map(|i| i as f64)))),
        ])
        .unwrap()
    }

    /// `batch` as the log's batch from row `first_row` of its one file.
    fn logged(batch: RecordBatch, first_row: usize) -> LogBatch {
        LogBatch { batch, file: "v/1.parquet".into(), first_row }
    }

    /// How the log is cut: records per batch, records per chunk, and whether every chunk is
    /// swept (and its values taken) on two threads.
    type Cut = (usize, usize, bool);

    /// Each entity row's record (by position) and the counts, the log fed and joined as `cut` says.
    fn as_of(
        records: &[Record],
        ttl: Option<u64>,
        entities: &[(u8, i64)],
        (batch_records, chunk_records, two_threads): Cut,
    ) -> (Vec<Option<u32>>, JoinStats) {
        let view = view(ttl);
        let rows = EntityRows::new(
            entities.iter().map(|e| format!("k{}", e.0)).collect(),
            entities.iter().map(|e| e.1 * 1000).collect(),
        );
        let mut join = AsOf::new(&rows, &view, Written::Column("w"), &["n"]).unwrap();
        join.chunk_records = chunk_records;
        if two_threads {
            join.parallel_from = 1;
        }
        for (i, piece) in records.chunks(batch_records.max(1)).enumerate() {
            join.push(logged(batch(piece, i * batch_records), i * batch_records)).unwrap();
        }
        let (values, outcomes) = join.finish().unwrap();
        let Column::Numeric(found) = &values[0] else { unreachable!() };
        (found.iter().map(|v| v.map(|v| v as u32)).collect(), JoinStats::of(&outcomes))
    }

    /// The answer by the definition, record by record: the reference the sweep is held to.
    fn brute_force(records: &[Record], ttl: Option<u64>, entities: &[(u8, i64)]) -> Vec<Option<u32>> {
        let ttl = ttl.map_or(i64::MAX, |t| t as i64);
        entities
            .iter()
            .map(|&(key, at)| {
                (0..records.len())
                    .filter(|&r| records[r].0 == key && records[r].1 <= at && records[r].2 <= at)
                    .max_by_key(|&r| (records[r].1, records[r].2, r))
                    .filter(|&r| at - records[r].1 <= ttl)
                    .map(|r| r as u32)
            })
            .collect()
    }

    const WHOLE: Cut = (1 << 16, CHUNK_RECORDS, false);

    #[test]
    fn a_late_correction_is_invisible_before_it_was_written() {
        // k1's value at t=10, written at 11; corrected at 50 (same event time).
        let records = [(1, 10, 11), (1, 10, 50), (1, 30, 31)];
        let rows = [(1, 9), (1, 10), (1, 11), (1, 40), (1, 29), (1, 50), (2, 50)];
        let (found, stats) = as_of(&records, None, &rows, WHOLE);
        // Before the event: nothing. At 10 it was not written yet. At 11 the first write. At 29,
        // still the first write (the correction came at 50). At 40 the newer event.
        assert_eq!(found, [None, None, Some(0), Some(2), Some(0), Some(2), None]);
        assert_eq!(stats, JoinStats { matched: 4, unknown: 1, absent: 2 });
    }

    #[test]
    fn the_ttl_edge_is_inclusive_and_a_value_past_it_is_not_taken() {
        let (found, stats) = as_of(&[(1, 100, 100)], Some(5), &[(1, 105), (1, 106)], WHOLE);
        assert_eq!(found, [Some(0), None]);
        assert_eq!(stats, JoinStats { matched: 1, unknown: 0, absent: 1 });
    }

    #[test]
    fn a_long_log_in_many_chunks_joins_as_the_definition_says() {
        // 120,000 records of 251 keys in chunks of 7,000; 60 rows of 70 keys, some of them unknown.
        let records: Vec<Record> =
            (0..120_000i64).map(|i| ((i * 7919 % 1000 % 251) as u8, i % 977, i % 977 + i % 13)).collect();
        let rows: Vec<(u8, i64)> = (0..60).map(|i| ((i * 17 % 70 + 200) as u8, i64::from(i) * 31 % 1000)).collect();
        let (found, stats) = as_of(&records, Some(500), &rows, (4_096, 7_000, false));
        assert_eq!(as_of(&records, Some(500), &rows, (4_096, 7_000, true)).0, found);
        assert_eq!(found, brute_force(&records, Some(500), &rows));
        assert!(stats.unknown > 0 && stats.matched > 0, "{stats:?}");
    }

    #[test]
    fn a_key_with_many_records_out_of_event_order_joins_as_the_definition_says() {
        // One key, 5,000 records written in turn but with event times descending (a backfill
        // sorted newest first), corrections among them; the tree path of `Visible`.
        let records: Vec<Record> = (0..5_000i64).map(|i| (1, 10_000 - i % 4_000, 10_000 + i)).collect();
        let rows: Vec<(u8, i64)> = (0..200).map(|i| (1, 9_000 + i * 37)).collect();
        assert_eq!(as_of(&records, Some(2_000), &rows, WHOLE).0, brute_force(&records, Some(2_000), &rows));
        assert_eq!(as_of(&records, Some(2_000), &rows, (300, 900, true)).0, brute_force(&records, Some(2_000), &rows));
    }

    #[test]
    fn bad_records_are_refused_naming_their_file_and_row() {
        let view = view(None);
        let rows = EntityRows::new(vec!["k1".into()], vec![5_000]);
        let mut join = AsOf::new(&rows, &view, Written::Column("w"), &["n"]).unwrap();
        join.push(logged(batch(&[(1, 1, 1), (2, 1, 1)], 0), 0)).unwrap();
        let mut bad = batch(&[(1, 2, 2)], 0);
        let nan: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN]));
        let columns = vec![bad.column(0).clone(), bad.column(1).clone(), bad.column(2).clone(), nan];
        bad = RecordBatch::try_new(bad.schema(), columns).unwrap();
        // The second file's row 7 (a batch of it from row 7).
        join.push(LogBatch { batch: bad, file: "v/2.parquet".into(), first_row: 7 }).unwrap();
        assert_eq!(join.finish().unwrap_err().to_string(), "v/2.parquet: row 7: feature `n`: NaN is not a number");

        let mut join = AsOf::new(&rows, &view, Written::Column("w"), &["n"]).unwrap();
        let timeless = batch(&[(1, 2, 2)], 0).project(&[0, 2, 3]).unwrap();
        let err = join.push(LogBatch { batch: timeless, file: "v/3.parquet".into(), first_row: 0 }).unwrap_err();
        assert_eq!(err.to_string(), "v/3.parquet: column `e` is missing");
        // A refused batch leaves the join as it was.
        join.push(logged(batch(&[(1, 3, 3)], 0), 0)).unwrap();
        let (values, _) = join.finish().unwrap();
        assert_eq!(values, [Column::Numeric(vec![Some(0.0)])]);
        let missing = AsOf::new(&rows, &view, Written::Column("w"), &["spend"]).err().unwrap();
        assert_eq!(missing.to_string(), "offline file: feature view `v` has no feature `spend`");
    }

    #[test]
    fn a_newer_record_from_a_file_without_the_feature_leaves_it_missing() {
        // The view gained `n` after the second file was written: its newer record has no value
        // for it, whatever the older record in another chunk had.
        let view = view(None);
        let rows = EntityRows::new(vec!["k1".into()], vec![10_000]);
        let mut join = AsOf::new(&rows, &view, Written::Column("w"), &["n"]).unwrap();
        join.chunk_records = 1;
        join.push(logged(batch(&[(1, 1, 1)], 5), 0)).unwrap();
        let newer = batch(&[(1, 2, 2)], 0).project(&[0, 1, 2]).unwrap();
        join.push(LogBatch { batch: newer, file: "v/2.parquet".into(), first_row: 0 }).unwrap();
        let (values, outcomes) = join.finish().unwrap();
        assert_eq!((values, outcomes), (vec![Column::Numeric(vec![None])], vec![Outcome::Matched]));
    }

    #[test]
    fn visible_at_gives_each_key_its_newest_visible_record() {
        let log = ViewRows {
            keys: ["a", "a", "a", "b", "c"].map(String::from).to_vec(),
            event_ms: vec![10, 20, 30, 10, 1],
            written_ms: vec![10, 25, 40, 10, 1],
            columns: vec![],
        };
        let mut visible = visible_at(&log, 20, 30);
        visible.sort();
        // a: record 1 (record 2 not written yet); b: record 3, at the TTL's edge; c: past it.
        assert_eq!(visible, [None, Some(1), Some(3)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn the_sweep_agrees_with_the_definition_however_the_log_is_cut(
            // Few keys and a short clock: ties of event time, of write time and of both.
            records in prop::collection::vec((0u8..4, 0i64..20, 0i64..12), 0..40),
            entities in prop::collection::vec((0u8..5, 0i64..35), 0..40),
            ttl in prop::sample::select(vec![Some(0u64), Some(1), Some(3), Some(7), None]),
            cut in (1usize..8, 1usize..20, any::<bool>()),
        ) {
            // A record is written at or after its event, up to 11 later (a late correction).
            let records: Vec<Record> = records.into_iter().map(|(k, e, delay)| (k, e, e + delay)).collect();
            let (found, stats) = as_of(&records, ttl, &entities, cut);
            prop_assert_eq!(&found, &brute_force(&records, ttl, &entities));
            prop_assert_eq!(stats.matched + stats.unknown + stats.absent, entities.len() as u64);
            prop_assert_eq!(stats.matched, found.iter().flatten().count() as u64);
            let unknown = entities.iter().filter(|e| !records.iter().any(|r| r.0 == e.0)).count();
            prop_assert_eq!(stats.unknown, unknown as u64);
        }

        #[test]
        fn records_written_before_their_event_still_wait_for_it(
            records in prop::collection::vec((0u8..3, 0i64..20, 0i64..20), 0..30),
            entities in prop::collection::vec((0u8..3, 0i64..25), 0..30),
            cut in (1usize..8, 1usize..20, any::<bool>()),
        ) {
            // Written times independent of event times (a forecast is written before its time).
            prop_assert_eq!(as_of(&records, Some(4), &entities, cut).0, brute_force(&records, Some(4), &entities));
        }
    }
}
