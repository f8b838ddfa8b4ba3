//! Entity keys numbered, for the join: the entity rows' keys are numbered once, and each record
//! of a view's log is looked up among them. The log holds millions of records, so a lookup must
//! not wait on memory: a short key (under 16 bytes: integers and most ids) is packed into the
//! table's slot itself, and the slots of a block of records are touched before they are read, so
//! that their reads from memory overlap instead of following one another.

use std::hash::BuildHasher as _;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use arrow_array::{Array as _, ArrayRef};
use foldhash::HashMap;
use mlops_data::{Cell, ColumnView, text};
use mlops_shared::spec::FeatureViewSpec;

use crate::{FeatureError, composite_key};

/// A key no row asks for.
pub(crate) const NONE: u32 = u32::MAX;

/// A key of under 16 bytes, its length in the last byte.
type Packed = [u8; 16];

fn pack(key: &str) -> Option<Packed> {
    let mut packed = [0u8; 16];
    packed.get_mut(..key.len()).filter(|_| key.len() < 16)?.copy_from_slice(key.as_bytes());
    packed[15] = key.len() as u8;
    Some(packed)
}

/// [`pack`] of an integer's text as [`text`] writes it, without writing the text.
fn pack_integer(v: i64) -> Option<Packed> {
    if v.unsigned_abs() >= 1_000_000_000_000_000 {
        return None;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = v.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if v < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    let len = digits.len() - at;
    if len >= 16 {
        return None;
    }
    let mut packed = [0u8; 16];
    packed[..len].copy_from_slice(&digits[at..]);
    packed[15] = len as u8;
    Some(packed)
}

/// Packed keys and their numbers: open addressing, linear probing, at most half full.
struct ShortKeys {
    slots: Vec<(Packed, u32)>,
    len: usize,
    hasher: foldhash::fast::FixedState,
}

impl ShortKeys {
    fn with_capacity(keys: usize) -> Self {
        let slots = vec![([0; 16], NONE); (keys.max(8) * 2).next_power_of_two()];
        Self { slots, len: 0, hasher: foldhash::fast::FixedState::with_seed(0x6d6c_6f70) }
    }

    /// Where `key`'s probe starts.
    fn home(&self, key: &Packed) -> usize {
        self.hasher.hash_one(key) as usize & (self.slots.len() - 1)
    }

    /// `key`'s number, probing from `at` (its [`Self::home`]).
    fn probe(&self, key: &Packed, mut at: usize) -> Option<u32> {
        loop {
            let (k, id) = &self.slots[at];
            if *id == NONE {
                return None;
            }
            if k == key {
                return Some(*id);
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }

    /// `key`'s number; `next` if it is new.
    fn number(&mut self, key: Packed, next: u32) -> u32 {
        if (self.len + 1) * 2 > self.slots.len() {
            let mut bigger = Self::with_capacity(self.slots.len());
            for (k, id) in self.slots.iter().filter(|s| s.1 != NONE) {
                bigger.number(*k, *id);
            }
            *self = bigger;
        }
        let mut at = self.home(&key);
        loop {
            let (k, id) = &mut self.slots[at];
            if *id == NONE {
                (*k, *id) = (key, next);
                self.len += 1;
                return next;
            }
            if *k == key {
                return *id;
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }
}

/// Keys numbered in the order first seen.
pub(crate) struct KeyIds {
    short: ShortKeys,
    long: HashMap<String, u32>,
}

impl KeyIds {
    pub(crate) fn with_capacity(keys: usize) -> Self {
        Self { short: ShortKeys::with_capacity(keys), long: HashMap::default() }
    }

    pub(crate) fn len(&self) -> usize {
        self.short.len + self.long.len()
    }

    /// `key`'s number, the next one if it is new.
    pub(crate) fn number(&mut self, key: String) -> u32 {
        let next = self.len() as u32;
        match pack(&key) {
            Some(packed) => self.short.number(packed, next),
            None => *self.long.entry(key).or_insert(next),
        }
    }

    #[cfg(test)]
    fn get(&self, key: &str) -> Option<u32> {
        match pack(key) {
            Some(packed) => self.short.probe(&packed, self.short.home(&packed)),
            None => self.long.get(key).copied(),
        }
    }
}

/// Records looked up per block: their slots are touched together, then read.
const BLOCK: usize = 16;

/// A record's key in a block: packed, with where its probe starts; or already numbered.
#[derive(Clone, Copy)]
enum Looked {
    At(Packed, usize),
    Is(u32),
}

/// How a record's key is read: an integer column as it is, anything else as its text.
enum KeyColumns<'a> {
    Integers(&'a arrow_array::Int64Array),
    Cells(Vec<ColumnView<'a>>),
}

impl KeyColumns<'_> {
    /// Row `row`'s key, packed, or else its number among the long keys.
    fn key(&self, row: usize, ids: &KeyIds, text_buffer: &mut String) -> Result<Packed, u32> {
        if let Self::Integers(ints) = self
            && let Some(packed) = ints.is_valid(row).then(|| pack_integer(ints.value(row))).flatten()
        {
            return Ok(packed);
        }
        let key: &str = match self {
            Self::Integers(ints) => {
                *text_buffer =
                    text(if ints.is_valid(row) { Cell::Num(ints.value(row) as f64) } else { Cell::Null }).into_owned();
                text_buffer
            }
            Self::Cells(columns) => match columns.as_slice() {
                [single] => match single.get(row) {
                    Cell::Str(s) => mlops_shared::table::trim_cell(s),
                    cell => {
                        *text_buffer = text(cell).into_owned();
                        text_buffer
                    }
                },
                _ => {
                    *text_buffer = composite_key(&columns.iter().map(|c| text(c.get(row))).collect::<Vec<_>>());
                    text_buffer
                }
            },
        };
        // A record without a key answers no row.
        if key.is_empty() {
            return Err(NONE);
        }
        pack(key).ok_or_else(|| ids.long.get(key).copied().unwrap_or(NONE))
    }
}

/// Records of a batch above which numbering their keys is split over two threads.
const PARALLEL_RECORDS: usize = 50_000;

/// The number among `ids` of each record's key in `batch` of `view` ([`NONE`] for a key no row
/// asks for), as [`text`] reads each key column.
pub(crate) fn key_ids(view: &FeatureViewSpec, batch: &RecordBatch, ids: &KeyIds) -> Result<Vec<u32>, FeatureError> {
    let arrays = view
        .entities
        .iter()
        .map(|k| batch.column_by_name(k).ok_or_else(|| FeatureError::MissingColumn(k.clone())))
        .collect::<Result<Vec<&ArrayRef>, _>>()?;
    let columns = match arrays.as_slice() {
        [one] if one.as_primitive_opt::<Int64Type>().is_some() => KeyColumns::Integers(one.as_primitive()),
        _ => KeyColumns::Cells(arrays.iter().map(|a| mlops_data::view(a)).collect()),
    };
    let number = |rows: std::ops::Range<usize>| -> Vec<u32> {
        let mut out = Vec::with_capacity(rows.len());
        let mut text_buffer = String::new();
        let mut block = [Looked::Is(NONE); BLOCK];
        for start in rows.clone().step_by(BLOCK) {
            let end = (start + BLOCK).min(rows.end);
            for (looked, row) in block.iter_mut().zip(start..end) {
                *looked = match columns.key(row, ids, &mut text_buffer) {
                    Ok(packed) => Looked::At(packed, ids.short.home(&packed)),
                    Err(id) => Looked::Is(id),
                };
            }
            let block = &block[..end - start];
            // Touched first, so that the block's reads from memory are in flight together.
            let touched = block.iter().fold(0u32, |t, l| match l {
                Looked::At(_, at) => t ^ ids.short.slots[*at].1,
                Looked::Is(_) => t,
            });
            std::hint::black_box(touched);
            out.extend(block.iter().map(|l| match l {
                Looked::At(packed, at) => ids.short.probe(packed, *at).unwrap_or(NONE),
                Looked::Is(id) => *id,
            }));
        }
        out
    };
    let n = batch.num_rows();
    if n < PARALLEL_RECORDS {
        return Ok(number(0..n));
    }
    Ok(std::thread::scope(|s| {
        let second = s.spawn(|| number(n / 2..n));
        let mut ids = number(0..n / 2);
        ids.extend(second.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        ids
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn integers_pack_as_their_text_does() {
        for v in [0i64, 7, -7, 42, 999_999_999_999_999, -99_999_999_999_999, i64::from(i32::MAX)] {
            assert_eq!(pack_integer(v), pack(&v.to_string()), "{v}");
            assert_eq!(pack(&text(Cell::Num(v as f64))), pack(&v.to_string()), "{v}");
        }
        // Sixteen characters: too long to pack, looked up as text.
        assert_eq!((pack_integer(1_000_000_000_000_000), pack_integer(-999_999_999_999_999)), (None, None));
    }

    #[test]
    fn keys_of_every_kind_are_found_and_others_are_not() {
        let long = "a key of more than sixteen bytes".to_owned();
        let mut ids = KeyIds::with_capacity(1);
        // Past the first capacity: the table grows.
        for i in 0..100 {
            assert_eq!(ids.number(format!("k{i}")), i);
        }
        assert_eq!(ids.number(long.clone()), 100);
        assert_eq!(ids.number("42".into()), 101);
        assert_eq!(ids.number("k7".into()), 7);
        assert_eq!((ids.get("k99"), ids.get(&long), ids.get("k100")), (Some(99), Some(100), None));

        let view = FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: v\nentities: [id]\nevent_time: t\nfeatures: [{name: x, type: numeric}]\n",
        )
        .unwrap();
        let strings = StringArray::from(vec![Some(" k3 "), Some(long.as_str()), None, Some("nope")]);
        let batch = RecordBatch::try_from_iter([("id", Arc::new(strings) as ArrayRef)]).unwrap();
        assert_eq!(key_ids(&view, &batch, &ids).unwrap(), [3, 100, NONE, NONE]);
        // Enough integers for two threads and many blocks.
        let ints = Int64Array::from_iter((0..60_000).map(|i| (i % 3 != 2).then_some(if i % 3 == 0 { 42 } else { 43 })));
        let batch = RecordBatch::try_from_iter([("id", Arc::new(ints) as ArrayRef)]).unwrap();
        let found = key_ids(&view, &batch, &ids).unwrap();
        assert!(found.chunks(3).all(|c| c == [101, NONE, NONE]), "{:?}", &found[..6]);
        let other = RecordBatch::try_from_iter([("key", Arc::new(StringArray::from(vec!["k1"])) as ArrayRef)]).unwrap();
        assert_eq!(key_ids(&view, &other, &ids).unwrap_err().to_string(), "column `id` is missing");
    }
}
