//! A view's rows decoded from record batches: the composite entity key, event and write times,
//! and the features typed as the view declares them.

use arrow_array::cast::AsArray as _;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use mlops_data::{Cell, text, view};
use mlops_shared::spec::{FeatureKind, FeatureViewSpec};
use mlops_shared::table::{Column, Value, parse_number};

use crate::FeatureError;
use crate::time::{parse_ms, secs_to_ms};

/// Joins the values of a multi-column entity key (a character no key holds in practice).
pub const KEY_SEPARATOR: char = '\u{1f}';

/// The key of an entity whose key columns hold `parts`.
pub fn composite_key<S: AsRef<str>>(parts: &[S]) -> String {
    match parts {
        [one] => one.as_ref().to_owned(),
        _ => parts.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(&KEY_SEPARATOR.to_string()),
    }
}

/// Rows of one feature view, column by column.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRows {
    pub keys: Vec<String>,
    pub event_ms: Vec<i64>,
    pub written_ms: Vec<i64>,
    /// One column per feature, in the view's order.
    pub columns: Vec<Column>,
}

impl ViewRows {
    /// No rows, typed for `view`.
    pub fn empty(view: &FeatureViewSpec) -> Self {
        let columns = view
            .features
            .iter()
            .map(|f| match f.kind {
                FeatureKind::Numeric => Column::Numeric(Vec::new()),
                FeatureKind::Categorical => Column::Categorical(Vec::new()),
            })
            .collect();
        Self { keys: Vec::new(), event_ms: Vec::new(), written_ms: Vec::new(), columns }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Row `row`'s features.
    pub fn values(&self, row: usize) -> Vec<Value> {
        self.columns.iter().map(|c| c.value(row)).collect()
    }

    /// Appends `other`'s rows (same view).
    pub fn append(&mut self, other: Self) {
        self.keys.extend(other.keys);
        self.event_ms.extend(other.event_ms);
        self.written_ms.extend(other.written_ms);
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            mine.extend(theirs);
        }
    }

    /// Refuses event (and write) times later than `arrived_ms` plus the view's clock skew: a
    /// wrong clock or a unit mistaken, which would otherwise shadow every true value.
    pub fn check_times(&self, view: &FeatureViewSpec, arrived_ms: i64) -> Result<(), FeatureError> {
        let limit = arrived_ms.saturating_add(i64::try_from(view.max_clock_skew.saturating_mul(1000)).unwrap_or(0));
        for (row, (&e, &w)) in self.event_ms.iter().zip(&self.written_ms).enumerate() {
            for (what, column, t) in [("event time", view.event_time.as_str(), e), ("write time", "", w)] {
                if t > limit {
                    let column = view.ingestion_time.as_deref().filter(|_| column.is_empty()).unwrap_or(column);
                    return Err(FeatureError::Row {
                        row,
                        message: format!(
                            "{what} `{column}` {} is {} s in the future (`max_clock_skew` {} s)",
                            crate::time::format_ms(t),
                            (t - arrived_ms) / 1000,
                            view.max_clock_skew
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// When rows were written: a column of the batch, or the time the whole batch arrived.
#[derive(Debug, Clone, Copy)]
pub enum Written<'a> {
    Column(&'a str),
    At(i64),
}

/// Decodes `batch` (rows numbered from `first_row` in messages) of `view` onto `into`.
pub fn read_batch(
    view: &FeatureViewSpec,
    batch: &RecordBatch,
    first_row: usize,
    written: Written<'_>,
    into: &mut ViewRows,
) -> Result<(), FeatureError> {
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| FeatureError::MissingColumn(name.to_owned()));
    let at = |row: usize, message: String| FeatureError::Row { row: first_row + row, message };
    let key_columns: Vec<&ArrayRef> = view.entities.iter().map(|k| column(k)).collect::<Result<_, _>>()?;
    let key_views: Vec<_> = key_columns.iter().map(|a| view_of(a)).collect();
    let mut parts = Vec::with_capacity(key_views.len());
    for row in 0..batch.num_rows() {
        if let [single] = key_views.as_slice() {
            // One key column (the usual case): the cell's text is the key, copied at most once.
            let key = text(single.get(row));
            if key.is_empty() {
                return Err(at(row, format!("entity key `{}` is missing", view.entities[0])));
            }
            into.keys.push(key.into_owned());
            continue;
        }
        parts.clear();
        for (name, v) in view.entities.iter().zip(&key_views) {
            let part = text(v.get(row));
            if part.is_empty() {
                return Err(at(row, format!("entity key `{name}` is missing")));
            }
            parts.push(part);
        }
        into.keys.push(composite_key(&parts));
    }
    let events = times(column(&view.event_time)?, &view.event_time).map_err(|(r, m)| at(r, m))?;
    into.event_ms.extend(events);
    match written {
        Written::At(ms) => into.written_ms.extend(std::iter::repeat_n(ms, batch.num_rows())),
        Written::Column(name) => into.written_ms.extend(times(column(name)?, name).map_err(|(r, m)| at(r, m))?),
    }
    for (f, out) in view.features.iter().zip(&mut into.columns) {
        let array = column(&f.name)?;
        // Doubles (the usual Parquet numeric column) taken as they are, without a cell per value.
        if let (Column::Numeric(v), Some(doubles)) = (&mut *out, mlops_data::finite_doubles(array)) {
            v.extend(doubles.map_err(|(row, x)| at(row, format!("feature `{}`: {x} is not a number", f.name)))?);
            continue;
        }
        let cells = view_of(array);
        for row in 0..batch.num_rows() {
            match &mut *out {
                Column::Numeric(v) => {
                    v.push(number(cells.get(row)).map_err(|e| at(row, format!("feature `{}`: {e}", f.name)))?)
                }
                Column::Categorical(v) => v.push(categorical(cells.get(row))),
            }
        }
    }
    Ok(())
}

/// A numeric feature's cell: a finite number, a number as text, or missing.
pub(crate) fn number(cell: Cell<'_>) -> Result<Option<f64>, String> {
    match cell {
        Cell::Num(x) if x.is_finite() => Ok(Some(x)),
        Cell::Num(x) => Err(format!("{x} is not a number")),
        Cell::Null => Ok(None),
        Cell::Str(s) => parse_number(s),
        other => Err(format!("{other:?} is not a number")),
    }
}

/// A categorical feature's cell: its text, or missing when empty.
pub(crate) fn categorical(cell: Cell<'_>) -> Option<String> {
    let t = text(cell);
    (!t.is_empty()).then(|| t.into_owned())
}

fn view_of(array: &ArrayRef) -> mlops_data::ColumnView<'_> {
    view(array)
}

/// A time column as milliseconds; the error is the row and what is wrong.
pub(crate) fn times(array: &ArrayRef, name: &str) -> Result<Vec<i64>, (usize, String)> {
    let missing = |row: usize| (row, format!("time `{name}` is missing"));
    if let DataType::Timestamp(unit, _) = array.data_type() {
        let per_ms = |v: i64| match unit {
            TimeUnit::Second => v.saturating_mul(1000),
            TimeUnit::Millisecond => v,
            TimeUnit::Microsecond => v.div_euclid(1000),
            TimeUnit::Nanosecond => v.div_euclid(1_000_000),
        };
        let raw = |row: usize| -> Option<i64> {
            if array.is_null(row) {
                return None;
            }
            Some(match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            })
        };
        return (0..array.len()).map(|row| raw(row).map(per_ms).ok_or_else(|| missing(row))).collect();
    }
    let cells = view(array);
    (0..array.len())
        .map(|row| match cells.get(row) {
            Cell::Num(secs) => secs_to_ms(secs).map_err(|m| (row, format!("time `{name}`: {m}"))),
            Cell::Str(s) if !s.trim().is_empty() => parse_ms(s).map_err(|m| (row, format!("time `{name}`: {m}"))),
            Cell::Null | Cell::Str(_) => Err(missing(row)),
            other => Err((row, format!("time `{name}`: {other:?} is not a time"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};

    use super::*;

    fn view() -> FeatureViewSpec {
        FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: stats\nentities: [id]\nevent_time: ts\nfeatures:\n\
             - {name: spend, type: numeric, nullable: true}\n",
        )
        .unwrap()
    }

    fn batch(spend: Vec<Option<f64>>) -> RecordBatch {
        let n = spend.len();
        RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("k{i}")))) as ArrayRef),
            ("ts", Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| 1_700_000_000 + i))) as ArrayRef),
            ("spend", Arc::new(Float64Array::from(spend)) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn double_columns_are_taken_whole_and_a_value_that_is_not_a_number_is_refused() {
        let view = view();
        let mut rows = ViewRows::empty(&view);
        read_batch(&view, &batch(vec![Some(1.5), None, Some(-2.0)]), 0, Written::At(5), &mut rows).unwrap();
        assert_eq!(rows.columns, [Column::Numeric(vec![Some(1.5), None, Some(-2.0)])]);
        assert_eq!((rows.keys.len(), rows.event_ms[2], rows.written_ms[0]), (3, 1_700_000_002_000, 5));
        let err = read_batch(&view, &batch(vec![Some(1.0), Some(f64::NAN)]), 10, Written::At(5), &mut rows);
        assert_eq!(err.unwrap_err().to_string(), "row 11: feature `spend`: NaN is not a number");
    }
}
