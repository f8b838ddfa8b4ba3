//! One view of a cell whatever the column's Arrow type: CSV yields strings, Parquet typed values,
//! JSON Lines either.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
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

/// Row `row` of `array`.
pub fn cell(array: &ArrayRef, row: usize) -> Cell<'_> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Cell::Str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Cell::Str(array.as_string_view().value(row)),
        DataType::Float64 => Cell::Num(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Cell::Num(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Int64 => Cell::Num(array.as_primitive::<Int64Type>().value(row) as f64),
        DataType::Int32 => Cell::Num(f64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int16 => Cell::Num(f64::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int8 => Cell::Num(f64::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::UInt64 => Cell::Num(array.as_primitive::<UInt64Type>().value(row) as f64),
        DataType::UInt32 => Cell::Num(f64::from(array.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt16 => Cell::Num(f64::from(array.as_primitive::<UInt16Type>().value(row))),
        DataType::UInt8 => Cell::Num(f64::from(array.as_primitive::<UInt8Type>().value(row))),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Dictionary(_, _) => Cell::Other("dictionary"),
        DataType::Binary | DataType::LargeBinary => Cell::Other("binary"),
        DataType::List(_) | DataType::LargeList(_) => Cell::Other("list"),
        DataType::Struct(_) => Cell::Other("struct"),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => Cell::Other("date/time"),
        _ => Cell::Other("unsupported type"),
    }
}
