//! Typed tabular data laid out by the pipeline spec, as training, evaluation and serving see it.
//! Reading files into frames is `mlops-data`'s job (Arrow), so services that only serve never link
//! a file reader.

/// One feature value of one row, as serving receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Cat(String),
    Missing,
}

/// A [`Value`] seen where it is, without copying a category.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Num(f64),
    Cat(&'a str),
    Missing,
}

impl Value {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Self::Num(x) => ValueRef::Num(*x),
            Self::Cat(c) => ValueRef::Cat(c),
            Self::Missing => ValueRef::Missing,
        }
    }
}

/// One typed column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Numeric(Vec<Option<f64>>),
    Categorical(Vec<Option<String>>),
}

impl Column {
    /// The values at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Self {
        match self {
            Self::Numeric(v) => Self::Numeric(idx.iter().map(|&i| v[i]).collect()),
            Self::Categorical(v) => Self::Categorical(idx.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// Row `row`'s value, where it is.
    pub fn value_ref(&self, row: usize) -> ValueRef<'_> {
        match self {
            Self::Numeric(v) => v[row].map_or(ValueRef::Missing, ValueRef::Num),
            Self::Categorical(v) => v[row].as_deref().map_or(ValueRef::Missing, ValueRef::Cat),
        }
    }

    /// Row `row`'s value.
    pub fn value(&self, row: usize) -> Value {
        match self {
            Self::Numeric(v) => v[row].map_or(Value::Missing, Value::Num),
            Self::Categorical(v) => v[row].clone().map_or(Value::Missing, Value::Cat),
        }
    }

    /// Appends `other`'s values (a column of the same type).
    pub fn extend(&mut self, other: Column) {
        match (self, other) {
            (Self::Numeric(a), Self::Numeric(b)) => a.extend(b),
            (Self::Categorical(a), Self::Categorical(b)) => a.extend(b),
            _ => unreachable!("columns of one spec have one type each"),
        }
    }
}

/// Parses a numeric cell: empty is missing; anything else must be a finite number.
pub fn parse_number(cell: &str) -> Result<Option<f64>, String> {
    let cell = trim_cell(cell);
    if cell.is_empty() {
        return Ok(None);
    }
    if let Some(v) = parse_plain_decimal(cell.as_bytes()) {
        return Ok(Some(v));
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(_) => Err(format!("{cell:?} is not a number")),
    }
}

/// `s` without surrounding whitespace; the Unicode-aware scan runs only when an end is not a plain
/// printable ASCII character, which in real data is almost never.
#[inline]
pub fn trim_cell(s: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x7f);
    if plain(s.as_bytes().first()) && plain(s.as_bytes().last()) { s } else { s.trim() }
}

/// A number as a cell's text: an integer without a fraction (`42`, not `42.0`), anything else as
/// Rust prints it. Erasure compares numbers to the value asked for by this text.
pub fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { v.to_string() }
}

/// Exact powers of ten: every one up to 1e22 is representable in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses a plain decimal such as `-12.345` to the same f64 as `str::parse`, or `None` when the
/// text is not that simple form (an exponent, more than 15 digits, anything else) and needs the
/// full parser. With at most 15 digits the digits are exact as an integer, and so is the power of
/// ten; IEEE division rounds their quotient correctly, which is what `str::parse` returns too
/// (Clinger's fast path). Most numbers in real files take it.
#[inline]
pub fn parse_plain_decimal(s: &[u8]) -> Option<f64> {
    let (negative, s) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Digits accumulate with wrapping arithmetic; a count over 15 discards the result anyway.
    let mut mantissa = 0u64;
    let mut i = 0;
    while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d < 10) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let whole = i;
    if s.get(i) == Some(&b'.') {
        i += 1;
    }
    let dot = i;
    while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d < 10) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let fraction = i - dot;
    let count = whole + fraction;
    if i != s.len() || count == 0 || count > 15 {
        return None;
    }
    let v = mantissa as f64 / POW10[fraction];
    Some(if negative { -v } else { v })
}

/// Features (in spec order) and, when present, the 0/1 target.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub columns: Vec<Column>,
    pub target: Option<Vec<f64>>,
    pub rows: usize,
}

impl Frame {
    /// The rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Self {
        Self {
            columns: self.columns.iter().map(|c| c.take(idx)).collect(),
            target: self.target.as_ref().map(|t| idx.iter().map(|&i| t[i]).collect()),
            rows: idx.len(),
        }
    }

    /// The rows at `first` and the rows at `second` (each in its order), moved out of the frame
    /// one column at a time: at most one column is ever held twice. Each row is in at most one
    /// of the two.
    pub fn split(self, first: &[usize], second: &[usize]) -> (Self, Self) {
        let part =
            |idx: &[usize]| Self { columns: Vec::with_capacity(self.columns.len()), target: None, rows: idx.len() };
        let (mut a, mut b) = (part(first), part(second));
        for column in self.columns {
            let (x, y) = match column {
                Column::Numeric(v) => (
                    Column::Numeric(first.iter().map(|&i| v[i]).collect()),
                    Column::Numeric(second.iter().map(|&i| v[i]).collect()),
                ),
                Column::Categorical(mut v) => {
                    let mut moved = |idx: &[usize]| idx.iter().map(|&i| v[i].take()).collect();
                    (Column::Categorical(moved(first)), Column::Categorical(moved(second)))
                }
            };
            a.columns.push(x);
            b.columns.push(y);
        }
        if let Some(t) = self.target {
            a.target = Some(first.iter().map(|&i| t[i]).collect());
            b.target = Some(second.iter().map(|&i| t[i]).collect());
        }
        (a, b)
    }

    /// Row `row` as feature values in spec order.
    pub fn row(&self, row: usize) -> Vec<Value> {
        self.columns.iter().map(|c| c.value(row)).collect()
    }

    /// Appends `other`'s rows (same spec).
    pub fn append(&mut self, other: Frame) {
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            mine.extend(theirs);
        }
        match (&mut self.target, other.target) {
            (Some(a), Some(b)) => a.extend(b),
            _ => self.target = None,
        }
        self.rows += other.rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            columns: vec![
                Column::Numeric(vec![Some(3.0), Some(40.0)]),
                Column::Categorical(vec![Some("monthly".into()), None]),
            ],
            target: Some(vec![1.0, 0.0]),
            rows: 2,
        }
    }

    proptest::proptest! {
        // The fast path agrees with the standard parser to the bit, or steps aside.
        #[test]
        fn plain_decimals_parse_exactly_as_std(s in "[-+]?[0-9]{0,17}(\\.[0-9]{0,17})?") {
            if let Some(v) = parse_plain_decimal(s.as_bytes()) {
                proptest::prop_assert_eq!(Some(v.to_bits()), s.parse::<f64>().ok().map(f64::to_bits), "{}", s);
            }
            proptest::prop_assert_eq!(parse_number(&s).ok().flatten(), s.parse::<f64>().ok());
        }
    }

    #[test]
    fn rows_take_and_append() {
        let f = frame();
        assert_eq!(f.row(0), vec![Value::Num(3.0), Value::Cat("monthly".into())]);
        assert_eq!(f.row(1), vec![Value::Num(40.0), Value::Missing]);
        let (a, b) = f.clone().split(&[1], &[0]);
        assert_eq!((a, b), (f.take(&[1]), f.take(&[0])));
        let t = f.take(&[1]);
        assert_eq!((t.rows, t.target.clone()), (1, Some(vec![0.0])));
        let mut all = f.clone();
        all.append(t);
        assert_eq!(all.rows, 3);
        assert_eq!(all.row(2), vec![Value::Num(40.0), Value::Missing]);
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_number(" 2.5 "), Ok(Some(2.5)));
        assert_eq!(parse_number(""), Ok(None));
        assert_eq!(parse_number("abc"), Err("\"abc\" is not a number".into()));
        assert!(parse_number("inf").is_err() && parse_number("NaN").is_err());
        assert_eq!(parse_number("\u{a0}7\u{a0}"), Ok(Some(7.0)), "Unicode spaces are trimmed too");
        assert_eq!(parse_number("-0"), Ok(Some(-0.0)));
        assert_eq!(parse_number("1e3"), Ok(Some(1000.0)));
        assert_eq!(parse_number("0.1234567890123456789"), Ok(Some(0.123_456_789_012_345_68)));
        for bad in ["-", ".", "+", "1.2.3", "--1", "1-"] {
            assert!(parse_number(bad).is_err(), "{bad}");
        }
    }
}
