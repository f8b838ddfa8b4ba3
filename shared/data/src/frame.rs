//! Batches into the typed [`Frame`] that training and evaluation use, laid out by the spec.

use mlops_shared::spec::{FeatureKind, FeatureSpec, PipelineSpec, TargetSpec, Task};
use mlops_shared::table::{Column, Frame, parse_number};

use arrow_array::RecordBatch;

use crate::cell::{Cell, ColumnView, finite_doubles, text, view};
use crate::read::{Batches, DataError, Source};

/// Reads every batch into a frame of the spec's features (and target). The first bad cell is an
/// error naming its row and column; the validator has reported every one before this runs.
pub fn read_frame(batches: Batches, spec: &PipelineSpec, with_target: bool) -> Result<Frame, DataError> {
    let mut frame = empty(&spec.features, with_target);
    for chunk in FrameChunks::new(batches, spec, with_target)? {
        frame.append(chunk?);
    }
    Ok(frame)
}

/// A frame of no rows with the columns of `features`.
fn empty(features: &[FeatureSpec], with_target: bool) -> Frame {
    let columns = features
        .iter()
        .map(|f| match f.kind {
            FeatureKind::Numeric => Column::Numeric(Vec::new()),
            FeatureKind::Categorical => Column::Categorical(Vec::new()),
        })
        .collect();
    Frame { columns, target: with_target.then(Vec::new), rows: 0 }
}

/// The batches of a dataset as frames, one per batch, for readers that must not hold the whole
/// dataset decoded: each batch's rows are read as [`read_frame`] reads them, and a bad cell's
/// error names its row in the whole dataset.
pub struct FrameChunks<'s> {
    batches: Batches,
    features: &'s [FeatureSpec],
    target: Option<&'s TargetSpec>,
    feature_idx: Vec<usize>,
    target_idx: Option<usize>,
    rows: usize,
}

impl<'s> FrameChunks<'s> {
    pub fn new(batches: Batches, spec: &'s PipelineSpec, with_target: bool) -> Result<Self, DataError> {
        Self::of(batches, &spec.features, with_target.then_some(&spec.target))
    }

    /// Frames of `features` (and `target`, if given) only.
    pub fn of(
        batches: Batches,
        features: &'s [FeatureSpec],
        target: Option<&'s TargetSpec>,
    ) -> Result<Self, DataError> {
        let schema = batches.schema.clone();
        let index = |name: &str| schema.index_of(name).map_err(|_| DataError::MissingColumn(name.to_owned()));
        let feature_idx: Vec<usize> = features.iter().map(|f| index(&f.name)).collect::<Result<_, _>>()?;
        let target_idx = target.map(|t| index(&t.name)).transpose()?;
        Ok(Self { batches, features, target, feature_idx, target_idx, rows: 0 })
    }

    /// The next batch as it was read, and its rows as a frame.
    pub fn next_with_batch(&mut self) -> Option<Result<(RecordBatch, Frame), DataError>> {
        let batch = match self.batches.next()? {
            Ok(batch) => batch,
            Err(e) => return Some(Err(e)),
        };
        let chunk = self.chunk(&batch);
        self.rows += batch.num_rows();
        Some(chunk.map(|frame| (batch, frame)))
    }

    /// One batch's rows as a frame.
    fn chunk(&self, batch: &RecordBatch) -> Result<Frame, DataError> {
        let rows = self.rows;
        let mut frame = empty(self.features, self.target_idx.is_some());
        for (f, (col, &i)) in self.features.iter().zip(frame.columns.iter_mut().zip(&self.feature_idx)) {
            let column = view(batch.column(i));
            let bad =
                |row: usize, message: String| DataError::Cell { row: rows + row + 1, column: f.name.clone(), message };
            match col {
                Column::Numeric(values) => {
                    values.reserve(batch.num_rows());
                    // Doubles (Parquet's usual numeric column) taken as they are.
                    if let Some(doubles) = finite_doubles(batch.column(i)) {
                        let doubles = doubles.map_err(|(row, v)| bad(row, format!("{v} is not a finite number")))?;
                        values.extend(doubles);
                        continue;
                    }
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
                    values.reserve(batch.num_rows());
                    for row in 0..batch.num_rows() {
                        values.push(match column.get(row) {
                            Cell::Other(t) => return Err(bad(row, format!("a {t} value is not a category"))),
                            c => Some(text(c)).filter(|s| !s.is_empty()).map(|s| s.into_owned()),
                        });
                    }
                }
            }
        }
        if let (Some(t), Some(i), Some(target)) = (&mut frame.target, self.target_idx, self.target) {
            read_target(target, view(batch.column(i)), batch.num_rows(), rows, t)?;
        }
        frame.rows = batch.num_rows();
        Ok(frame)
    }
}

impl Iterator for FrameChunks<'_> {
    type Item = Result<Frame, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_batch().map(|chunk| chunk.map(|(_, frame)| frame))
    }
}

/// Appends a batch's labels to `t`: numbers for regression, 0/1 for the positive class.
fn read_target(
    spec_t: &TargetSpec,
    column: ColumnView,
    n: usize,
    rows: usize,
    t: &mut Vec<f64>,
) -> Result<(), DataError> {
    let classes = spec_t.classes();
    for row in 0..n {
        if spec_t.task == Task::Regression {
            let bad = |message: String| DataError::Cell { row: rows + row + 1, column: spec_t.name.clone(), message };
            t.push(match column.get(row) {
                Cell::Num(v) if v.is_finite() => v,
                Cell::Str(s) => parse_number(s).map_err(bad)?.ok_or_else(|| bad("the label is empty".into()))?,
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
    Ok(())
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
    let sources: Vec<(String, Source)> =
        datasets.iter().map(|(id, bytes)| (id.clone(), Source::Bytes(bytes.clone().into()))).collect();
    read_sources_counted(spec, &sources)
}

/// [`read_datasets_counted`] on datasets in memory or in files.
pub fn read_sources_counted(
    spec: &PipelineSpec,
    datasets: &[(String, Source)],
) -> Result<(Frame, Vec<usize>), DatasetError> {
    let mut frame: Option<Frame> = None;
    let mut counts = Vec::with_capacity(datasets.len());
    let numeric = spec.numeric_features();
    for (id, source) in datasets {
        let err = |source| DatasetError { id: id.clone(), source };
        let batches =
            crate::read::open_typed(source.again().map_err(err)?, "", &Default::default(), &numeric).map_err(err)?;
        let f = read_frame(batches, spec, true).map_err(err)?;
        counts.push(f.rows);
        match &mut frame {
            None => frame = Some(f),
            Some(all) => all.append(f),
        }
    }
    Ok((frame.unwrap_or(Frame { columns: vec![], target: Some(vec![]), rows: 0 }), counts))
}
