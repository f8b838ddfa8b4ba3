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

/// One typed column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Numeric(Vec<Option<f64>>),
    Categorical(Vec<Option<String>>),
}

impl Column {
    fn take(&self, idx: &[usize]) -> Self {
        match self {
            Self::Numeric(v) => Self::Numeric(idx.iter().map(|&i| v[i]).collect()),
            Self::Categorical(v) => Self::Categorical(idx.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    fn value(&self, row: usize) -> Value {
        match self {
            Self::Numeric(v) => v[row].map_or(Value::Missing, Value::Num),
            Self::Categorical(v) => v[row].clone().map_or(Value::Missing, Value::Cat),
        }
    }
}

/// Parses a numeric cell: empty is missing; anything else must be a finite number.
pub fn parse_number(cell: &str) -> Result<Option<f64>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(_) => Err(format!("{cell:?} is not a number")),
    }
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

    /// Row `row` as feature values in spec order.
    pub fn row(&self, row: usize) -> Vec<Value> {
        self.columns.iter().map(|c| c.value(row)).collect()
    }

    /// Appends `other`'s rows (same spec).
    pub fn append(&mut self, other: Frame) {
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            match (mine, theirs) {
                (Column::Numeric(a), Column::Numeric(b)) => a.extend(b),
                (Column::Categorical(a), Column::Categorical(b)) => a.extend(b),
                _ => unreachable!("frames from the same spec have the same column types"),
            }
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

    #[test]
    fn rows_take_and_append() {
        let f = frame();
        assert_eq!(f.row(0), vec![Value::Num(3.0), Value::Cat("monthly".into())]);
        assert_eq!(f.row(1), vec![Value::Num(40.0), Value::Missing]);
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
    }
}
