//! Tabular data: CSV read into raw string records (for validation, which must see every cell), and
//! typed frames laid out by the pipeline spec (for training, evaluation and serving).

use crate::spec::{FeatureKind, PipelineSpec};

/// Why data could not be read. The message names the row and column when there is one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TableError {
    #[error("the data is empty: no header row")]
    Empty,
    #[error("malformed CSV: {0}")]
    Csv(String),
    #[error("column `{0}` is missing")]
    MissingColumn(String),
    #[error("row {row}, column `{column}`: {message}")]
    Cell { row: usize, column: String, message: String },
}

/// A dataset that could not be read into a frame.
#[derive(Debug, thiserror::Error)]
#[error("dataset {id}: {source}")]
pub struct DataError {
    pub id: String,
    pub source: TableError,
}

/// CSV as read: a header and string records of equal length.
#[derive(Debug, Clone)]
pub struct RawTable {
    pub headers: Vec<String>,
    pub records: Vec<csv::StringRecord>,
}

impl RawTable {
    /// Reads CSV with a header row. Ragged rows and bytes that are not UTF-8 are errors that name
    /// the line.
    pub fn from_csv(bytes: &[u8]) -> Result<Self, TableError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(TableError::Empty);
        }
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| TableError::Csv(describe_csv_error(&e)))?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        let mut records = Vec::new();
        for record in reader.records() {
            records.push(record.map_err(|e| TableError::Csv(describe_csv_error(&e)))?);
        }
        Ok(Self { headers, records })
    }

    /// The index of column `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }
}

fn describe_csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            format!("line {}: {len} fields where the header has {expected_len}", pos.as_ref().map_or(0, |p| p.line()))
        }
        csv::ErrorKind::Utf8 { pos, err } => {
            format!("line {}: field {} is not valid UTF-8", pos.as_ref().map_or(0, |p| p.line()), err.field() + 1)
        }
        _ => e.to_string(),
    }
}

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
    /// Types the columns the spec declares. Every cell must parse; the validator has already
    /// reported the detail, so the first problem is enough here.
    pub fn from_raw(raw: &RawTable, spec: &PipelineSpec, with_target: bool) -> Result<Self, TableError> {
        let index = |name: &str| raw.column_index(name).ok_or_else(|| TableError::MissingColumn(name.into()));
        let cell_err = |row: usize, column: &str, message: String| TableError::Cell {
            row: row + 1,
            column: column.into(),
            message,
        };
        let mut columns = Vec::with_capacity(spec.features.len());
        for f in &spec.features {
            let i = index(&f.name)?;
            let cells = raw.records.iter().map(|r| r.get(i).unwrap_or(""));
            columns.push(match f.kind {
                FeatureKind::Numeric => Column::Numeric(
                    cells
                        .enumerate()
                        .map(|(row, c)| parse_number(c).map_err(|m| cell_err(row, &f.name, m)))
                        .collect::<Result<_, _>>()?,
                ),
                FeatureKind::Categorical => Column::Categorical(
                    cells.map(|c| Some(c.trim()).filter(|c| !c.is_empty()).map(str::to_owned)).collect(),
                ),
            });
        }
        let target = if with_target {
            let t = &spec.target;
            let i = index(&t.name)?;
            let labels = raw.records.iter().enumerate().map(|(row, r)| {
                let cell = r.get(i).unwrap_or("").trim();
                if cell == t.positive {
                    Ok(1.0)
                } else if cell == t.negative {
                    Ok(0.0)
                } else {
                    Err(cell_err(
                        row,
                        &t.name,
                        format!("label {cell:?} is neither {:?} nor {:?}", t.positive, t.negative),
                    ))
                }
            });
            Some(labels.collect::<Result<Vec<f64>, _>>()?)
        } else {
            None
        };
        Ok(Self { columns, target, rows: raw.records.len() })
    }

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

    /// Reads `datasets` (id, CSV bytes) into one labelled frame, in the given order: the order a
    /// model's manifest lists them, so trainer and evaluator see the same rows.
    pub fn read_datasets(spec: &PipelineSpec, datasets: &[(String, Vec<u8>)]) -> Result<Self, DataError> {
        let mut frame: Option<Frame> = None;
        for (id, bytes) in datasets {
            let data_err = |source| DataError { id: id.clone(), source };
            let raw = RawTable::from_csv(bytes).map_err(data_err)?;
            let f = Frame::from_raw(&raw, spec, true).map_err(data_err)?;
            match &mut frame {
                None => frame = Some(f),
                Some(all) => all.append(f),
            }
        }
        Ok(frame.unwrap_or(Frame { columns: vec![], target: Some(vec![]), rows: 0 }))
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
    use crate::spec::tests::SPEC;

    fn spec() -> PipelineSpec {
        PipelineSpec::from_yaml(SPEC).unwrap()
    }

    #[test]
    fn reads_and_types_columns_by_spec_order() {
        let csv = "churned,contract,charges,tenure\n1,monthly,,3\n0,yearly,20.5,40\n";
        let raw = RawTable::from_csv(csv.as_bytes()).unwrap();
        let f = Frame::from_raw(&raw, &spec(), true).unwrap();
        assert_eq!(f.rows, 2);
        assert_eq!(f.columns[0], Column::Numeric(vec![Some(3.0), Some(40.0)]));
        assert_eq!(f.columns[1], Column::Numeric(vec![None, Some(20.5)]));
        assert_eq!(f.target, Some(vec![1.0, 0.0]));
        assert_eq!(f.row(0), vec![Value::Num(3.0), Value::Missing, Value::Cat("monthly".into())]);
        let t = f.take(&[1]);
        assert_eq!(t.target, Some(vec![0.0]));
    }

    #[test]
    fn bad_input_names_the_problem() {
        assert_eq!(RawTable::from_csv(b"").unwrap_err(), TableError::Empty);
        let ragged = RawTable::from_csv(b"a,b\n1,2\n3\n").unwrap_err().to_string();
        assert!(ragged.contains("line 3") && ragged.contains("1 fields"), "{ragged}");
        let utf8 = RawTable::from_csv(b"a,b\n1,\xff\xfe\n").unwrap_err().to_string();
        assert!(utf8.contains("not valid UTF-8"), "{utf8}");
        let raw = RawTable::from_csv(b"churned,contract,charges,tenure\n1,monthly,abc,3\n").unwrap();
        let err = Frame::from_raw(&raw, &spec(), true).unwrap_err().to_string();
        assert_eq!(err, "row 1, column `charges`: \"abc\" is not a number");
        let raw = RawTable::from_csv(b"churned,contract,tenure\n1,monthly,3\n").unwrap();
        assert_eq!(Frame::from_raw(&raw, &spec(), true).unwrap_err(), TableError::MissingColumn("charges".into()));
        assert!(parse_number("inf").is_err() && parse_number("NaN").is_err());
    }
}
