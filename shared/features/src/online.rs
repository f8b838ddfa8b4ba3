//! The online store's layout in its key-value bucket: one entry per view and entity holding the
//! newest value, its event time and its write time. Reading applies the view's TTL: an entry past
//! it is absent.

use foldhash::HashMap;
use mlops_shared::table::Value;
use serde::{Deserialize, Serialize};

use crate::{KEY_SEPARATOR, ViewRows};

/// The bucket's key of `view`'s entity `key` (a composite key's parts as separate tokens). Key
/// values that are not plain (`[A-Za-z0-9_-]`) are written as `=` and their bytes in hex, since
/// NATS keys admit only a few characters.
pub fn entry_key(view: &str, key: &str) -> String {
    let mut out = String::with_capacity(view.len() + key.len() + 2);
    out.push_str(view);
    for part in key.split(KEY_SEPARATOR) {
        out.push('.');
        let plain = !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if plain {
            out.push_str(part);
        } else {
            out.push('=');
            for b in part.bytes() {
                out.push_str(&format!("{b:02x}"));
            }
        }
    }
    out
}

/// One online entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Event time (Unix ms).
    #[serde(rename = "e")]
    pub event_ms: i64,
    /// Write time (Unix ms).
    #[serde(rename = "w")]
    pub written_ms: i64,
    /// The features in the view's order: a number, a category, or null.
    #[serde(rename = "v")]
    pub values: Vec<serde_json::Value>,
}

impl Entry {
    /// Row `row` of `rows`.
    pub fn of(rows: &ViewRows, row: usize) -> Self {
        let values = rows
            .values(row)
            .into_iter()
            .map(|v| match v {
                Value::Num(x) => serde_json::Value::from(x),
                Value::Cat(c) => serde_json::Value::String(c),
                Value::Missing => serde_json::Value::Null,
            })
            .collect();
        Self { event_ms: rows.event_ms[row], written_ms: rows.written_ms[row], values }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("online entry: {e}"))
    }

    /// Whether this entry replaces `other`: a newer event, or the same event written later.
    pub fn newer_than(&self, other: &Self) -> bool {
        (self.event_ms, self.written_ms) > (other.event_ms, other.written_ms)
    }

    /// Whether the entry is still valid at `now_ms` under a TTL of `ttl_ms`.
    pub fn live(&self, now_ms: i64, ttl_ms: i64) -> bool {
        now_ms.saturating_sub(self.event_ms) <= ttl_ms
    }

    /// The features as model inputs.
    pub fn feature_values(&self) -> Vec<Value> {
        self.values
            .iter()
            .map(|v| match v {
                serde_json::Value::Number(n) => n.as_f64().map_or(Value::Missing, Value::Num),
                serde_json::Value::String(s) => Value::Cat(s.clone()),
                _ => Value::Missing,
            })
            .collect()
    }
}

/// Each entity's newest row in `rows` (newest event, then latest write, then last in the batch),
/// as the online store keeps it.
pub fn newest_per_key(rows: &ViewRows) -> Vec<usize> {
    let mut best: HashMap<&str, usize> = HashMap::default();
    for (i, key) in rows.keys.iter().enumerate() {
        let rank = |r: usize| (rows.event_ms[r], rows.written_ms[r], r);
        best.entry(key.as_str())
            .and_modify(|b| {
                if rank(i) > rank(*b) {
                    *b = i
                }
            })
            .or_insert(i);
    }
    let mut rows: Vec<usize> = best.into_values().collect();
    rows.sort_unstable();
    rows
}

#[cfg(test)]
mod tests {
    use mlops_shared::table::Column;

    use super::*;

    #[test]
    fn keys_are_nats_safe_and_distinct() {
        assert_eq!(entry_key("stats", "c42"), "stats.c42");
        assert_eq!(entry_key("stats", &format!("s1{KEY_SEPARATOR}c 2")), "stats.s1.=632032");
        assert_eq!(entry_key("stats", "a.b"), "stats.=612e62");
        assert_ne!(entry_key("stats", "=61"), entry_key("stats", "a"));
        assert_eq!(entry_key("stats", ""), "stats.=");
    }

    #[test]
    fn the_newest_row_per_key_wins_and_entries_expire() {
        let rows = ViewRows {
            keys: ["a", "b", "a", "a"].map(String::from).to_vec(),
            event_ms: vec![10, 10, 20, 20],
            written_ms: vec![11, 11, 21, 30],
            columns: vec![Column::Numeric(vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)])],
        };
        assert_eq!(newest_per_key(&rows), [1, 3]);
        let e = Entry::of(&rows, 3);
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        assert_eq!(e.feature_values(), [Value::Num(4.0)]);
        assert!(e.newer_than(&Entry::of(&rows, 2)) && !Entry::of(&rows, 2).newer_than(&e));
        assert!(e.live(25, 5) && !e.live(26, 5));
    }
}
