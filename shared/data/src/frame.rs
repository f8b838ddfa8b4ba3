//! Batches into the typed [`Frame`] that training and evaluation use, laid out by the spec.

use mlops_shared::spec::{FeatureKind, PipelineSpec, Task};
use mlops_shared::table::{Column, Frame, parse_number};

use crate::cell::{Cell, text, view};
use crate::read::{Batches, DataError};

/// Reads every batch into a frame of the spec's features (and target). The first bad cell is an
/// error naming its row and column; the validator has reported every one before this runs.
pub fn read_frame(batches: Batches, spec: &PipelineSpec, with_target: bool) -> Result<Frame, DataError> {
    let mut columns: Vec<Column> = spec
        .features
        .iter()
        .map(|f| match f.kind {
            FeatureKind::Numeric => Column::Numeric(Vec::new()),
            FeatureKind::Categorical => Column::Categorical(Vec::new()),
        })
        .collect();
    let mut target = with_target.then(Vec::new);
    let mut rows = 0usize;
    let schema = batches.schema.clone();
    let index = |name: &str| schema.index_of(name).map_err(|_| DataError::MissingColumn(name.to_owned()));
    let feature_idx: Vec<usize> = spec.features.iter().map(|f| index(&f.name)).collect::<Result<_, _>>()?;
    let target_idx = if with_target { Some(index(&spec.target.name)?) } else { None };
    for batch in batches {
        let batch = batch?;
        for (f, (col, &i)) in spec.features.iter().zip(columns.iter_mut().zip(&feature_idx)) {
            let column = view(batch.column(i));
            let bad =
                |row: usize, message: String| DataError::Cell { row: rows + row + 1, column: f.name.clone(), message };
            match col {
                Column::Numeric(values) => {
                    for row in 0..batch.num_rows() {
                        values.push(match column.get(row) {
                            Cell::Null => None,
                            Cell::Str(s) => parse_number(s).map_err(|m| bad(row, m))?,
                            Cell::Num(v) if v.is_finite() => Some(v),
                            Cell::Num(v) => return Err(bad(row, format!("{v} is not a finite number"))),
                            Cell::Bool(_) => return Err(bad(row, "a boolean is not a number".into())),
                            Cell::Other(t) => return Err(bad(row, format!("a {t} value is not a number"))),
                        });
                    }
                }
                Column::Categorical(values) => {
                    for row in 0..batch.num_rows() {
                        values.push(match column.get(row) {
                            Cell::Other(t) => return Err(bad(row, format!("a {t} value is not a category"))),
                            c => Some(text(c)).filter(|s| !s.is_empty()).map(|s| s.into_owned()),
                        });
                    }
                }
            }
        }
        if let (Some(t), Some(i)) = (&mut target, target_idx) {
            let spec_t = &spec.target;
            let classes = spec_t.classes();
            let column = view(batch.column(i));
            for row in 0..batch.num_rows() {
                if spec_t.task == Task::Regression {
                    let bad =
                        |message: String| DataError::Cell { row: rows + row + 1, column: spec_t.name.clone(), message };
                    t.push(match column.get(row) {
                        Cell::Num(v) if v.is_finite() => v,
                        Cell::Str(s) => {
                            parse_number(s).map_err(bad)?.ok_or_else(|| bad("the label is empty".into()))?
                        }
                        Cell::Null => return Err(bad("the label is empty".into())),
                        other => return Err(bad(format!("label {:?} is not a finite number", text(other)))),
                    });
                    continue;
                }
                let cell = column.get(row);
                let class = match cell {
                    Cell::Num(v) => classes.of_number(v),
                    other => classes.of(&text(other)),
                };
                match class {
                    Some(positive) => t.push(f64::from(u8::from(positive))),
                    None => {
                        return Err(DataError::Cell {
                            row: rows + row + 1,
                            column: spec_t.name.clone(),
                            message: format!(
                                "label {:?} is neither {:?} nor {:?}",
                                text(cell),
                                spec_t.positive,
                                spec_t.negative
                            ),
                        });
                    }
                }
            }
        }
        rows += batch.num_rows();
    }
    Ok(Frame { columns, target, rows })
}

/// A dataset that could not be read into a frame.
#[derive(Debug, thiserror::Error)]
#[error("dataset {id}: {source}")]
pub struct DatasetError {
    pub id: String,
    pub source: DataError,
}

/// Reads `datasets` (id, bytes in any supported format) into one labelled frame, in the given
/// order: the order a model's manifest lists them, so trainer and evaluator see the same rows.
pub fn read_datasets(spec: &PipelineSpec, datasets: &[(String, Vec<u8>)]) -> Result<Frame, DatasetError> {
    read_datasets_counted(spec, datasets).map(|(frame, _)| frame)
}

/// [`read_datasets`], with how many rows each dataset gave, in order.
pub fn read_datasets_counted(
    spec: &PipelineSpec,
    datasets: &[(String, Vec<u8>)],
) -> Result<(Frame, Vec<usize>), DatasetError> {
    let mut frame: Option<Frame> = None;
    let mut counts = Vec::with_capacity(datasets.len());
    let numeric = spec.numeric_features();
    for (id, bytes) in datasets {
        let err = |source| DatasetError { id: id.clone(), source };
        let batches = crate::read::open_typed(
            crate::read::Source::Bytes(bytes.clone().into()),
            "",
            &Default::default(),
            &numeric,
        )
        .map_err(err)?;
        let f = read_frame(batches, spec, true).map_err(err)?;
        counts.push(f.rows);
        match &mut frame {
            None => frame = Some(f),
            Some(all) => all.append(f),
        }
    }
    Ok((frame.unwrap_or(Frame { columns: vec![], target: Some(vec![]), rows: 0 }), counts))
}
