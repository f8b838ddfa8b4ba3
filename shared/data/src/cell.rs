//! One view of a cell whatever the column's Arrow type: CSV yields strings, Parquet typed values,
//! JSON Lines either. A column is downcast once per batch ([`view`]); reading a cell is then a
//! predictable branch, not a type dispatch.

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, BooleanArray, LargeStringArray, PrimitiveArray, StringArray, StringViewArray};
use arrow_schema::DataType;

/// A cell's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    Num(f64),
    Bool(bool),
    /// A type no check understands (lists, structs, binary …), named.
    Other(&'static str),
}

/// A column downcast to its concrete Arrow type.
pub enum ColumnView<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    F64(&'a PrimitiveArray<Float64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I8(&'a PrimitiveArray<Int8Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    Bool(&'a BooleanArray),
    Other(&'a dyn Array, &'static str),
}

/// A column of doubles (Parquet's usual numeric column), to be taken whole rather than cell by
/// cell: its values (missing where null), or the first row holding a value that is not finite and
/// that value. `None` for a column of another type.
pub fn finite_doubles(array: &ArrayRef) -> Option<Result<impl Iterator<Item = Option<f64>> + '_, (usize, f64)>> {
    let doubles = array.as_primitive_opt::<arrow_array::types::Float64Type>()?;
    Some(match doubles.iter().position(|v| v.is_some_and(|v| !v.is_finite())) {
        Some(row) => Err((row, doubles.value(row))),
        None => Ok(doubles.iter()),
    })
}

/// Downcasts `array` once.
pub fn view(array: &ArrayRef) -> ColumnView<'_> {
    match array.data_type() {
        DataType::Utf8 => ColumnView::Utf8(array.as_string::<i32>()),
        DataType::LargeUtf8 => ColumnView::LargeUtf8(array.as_string::<i64>()),
        DataType::Utf8View => ColumnView::Utf8View(array.as_string_view()),
        DataType::Float64 => ColumnView::F64(array.as_primitive()),
        DataType::Float32 => ColumnView::F32(array.as_primitive()),
        DataType::Int64 => ColumnView::I64(array.as_primitive()),
        DataType::Int32 => ColumnView::I32(array.as_primitive()),
        DataType::Int16 => ColumnView::I16(array.as_primitive()),
        DataType::Int8 => ColumnView::I8(array.as_primitive()),
        DataType::UInt64 => ColumnView::U64(array.as_primitive()),
        DataType::UInt32 => ColumnView::U32(array.as_primitive()),
        DataType::UInt16 => ColumnView::U16(array.as_primitive()),
        DataType::UInt8 => ColumnView::U8(array.as_primitive()),
        DataType::Boolean => ColumnView::Bool(array.as_boolean()),
        DataType::Dictionary(_, _) => ColumnView::Other(array.as_ref(), "dictionary"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ColumnView::Other(array.as_ref(), "binary"),
        DataType::List(_) | DataType::LargeList(_) => ColumnView::Other(array.as_ref(), "list"),
        DataType::Struct(_) => ColumnView::Other(array.as_ref(), "struct"),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            ColumnView::Other(array.as_ref(), "date/time")
        }
        _ => ColumnView::Other(array.as_ref(), "unsupported type"),
    }
}

impl<'a> ColumnView<'a> {
    /// Row `row`.
    #[inline]
    pub fn get(&self, row: usize) -> Cell<'a> {
        macro_rules! num {
            ($a:expr, $conv:expr) => {
                if $a.is_null(row) { Cell::Null } else { Cell::Num($conv($a.value(row))) }
            };
        }
        match self {
            Self::Utf8(a) => {
                if a.is_null(row) {
                    Cell::Null
                } else {
                    Cell::Str(a.value(row))
                }
            }
            Self::LargeUtf8(a) => {
                if a.is_null(row) {
                    Cell::Null
                } else {
                    Cell::Str(a.value(row))
                }
            }
            Self::Utf8View(a) => {
                if a.is_null(row) {
                    Cell::Null
                } else {
                    Cell::Str(a.value(row))
                }
            }
            Self::F64(a) => num!(a, |v: f64| v),
            Self::F32(a) => num!(a, f64::from),
            Self::I64(a) => num!(a, |v: i64| v as f64),
            Self::I32(a) => num!(a, f64::from),
            Self::I16(a) => num!(a, f64::from),
            Self::I8(a) => num!(a, f64::from),
            Self::U64(a) => num!(a, |v: u64| v as f64),
            Self::U32(a) => num!(a, f64::from),
            Self::U16(a) => num!(a, f64::from),
            Self::U8(a) => num!(a, f64::from),
            Self::Bool(a) => {
                if a.is_null(row) {
                    Cell::Null
                } else {
                    Cell::Bool(a.value(row))
                }
            }
            Self::Other(a, t) => {
                if a.is_null(row) {
                    Cell::Null
                } else {
                    Cell::Other(t)
                }
            }
        }
    }
}

/// A cell as the text a CSV would hold (`1`, not `1.0`; trimmed), borrowed when it already is
/// text; empty for a null or an unsupported value. Categories and labels are compared as this text
/// whatever the file's format.
pub fn text(c: Cell<'_>) -> Cow<'_, str> {
    match c {
        Cell::Str(s) => Cow::Borrowed(mlops_shared::table::trim_cell(s)),
        Cell::Num(v) => Cow::Owned(mlops_shared::table::number_text(v)),
        Cell::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Cell::Null | Cell::Other(_) => Cow::Borrowed(""),
    }
}
