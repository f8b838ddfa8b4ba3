//! Boosted trees trained on datasets read in passes, never held decoded. A frame of 1M rows × 19
//! features takes about 470 MB (a 16-byte `Option<f64>` per number, a `String` per category); its
//! bins take 19 MB (a byte per input and row). So the datasets are read four times, one batch at a
//! time: to count the rows (the seeded holdout split needs the count), to take an evenly spaced
//! sample of the training rows, to bin every training row, and to score the holdout rows
//! ([`holdout_scores`], once the artifact is made).
//!
//! The sample — every training row up to [`SAMPLE`] of them, else every k-th — fits the
//! preprocessing, the reference profile and the bin edges. Up to [`SAMPLE`] training rows it is
//! all of them, and the artifact is the one training on the whole frame gives, byte for byte.

use mlops_data::{DatasetError, FrameChunks, Limits, Source, open_typed};
use mlops_shared::model::{Preprocessor, ReferenceProfile, holdout_split};
use mlops_shared::spec::{PipelineSpec, Task};
use mlops_shared::table::Frame;

use crate::gbt::{self, Binned, Binner};
use crate::train::{Progress, TrainError};

/// Training rows (at most) that the preprocessing, the reference profile and the bin edges are
/// fitted on.
pub const SAMPLE: usize = 50_000;

/// Rows per decoded batch: small, so that a batch decoded as a frame stays a few megabytes.
const BATCH_ROWS: usize = 8 * 1024;
/// Bytes of CSV parsed at once by one thread: a few such blocks are in flight.
const BLOCK_BYTES: usize = 1 << 20;

/// What the passes leave for the fit and the artifact.
pub(crate) struct Streamed {
    pub preprocessing: Preprocessor,
    pub reference: ReferenceProfile,
    pub fit: gbt::Fit,
    pub training_rows: usize,
    /// Whether each row is held out.
    pub held: Vec<bool>,
}

/// The datasets, readable as often as needed, in order.
pub(crate) struct Datasets<'a> {
    pub spec: &'a PipelineSpec,
    pub sources: &'a [(String, Source)],
}

impl Datasets<'_> {
    /// Calls `each` with every batch as a frame, and the index of its first row among all the
    /// datasets' rows.
    fn pass(&self, mut each: impl FnMut(usize, Frame) -> Result<(), TrainError>) -> Result<usize, TrainError> {
        let numeric = self.spec.numeric_features();
        let limits = Limits { batch_rows: BATCH_ROWS, block_bytes: BLOCK_BYTES, ..Limits::default() };
        let mut first = 0;
        for (id, source) in self.sources {
            let err = |source| TrainError::Data(DatasetError { id: id.clone(), source });
            let batches = open_typed(source.again().map_err(err)?, "", &limits, &numeric).map_err(err)?;
            for chunk in FrameChunks::new(batches, self.spec, true).map_err(err)? {
                let chunk = chunk.map_err(err)?;
                let rows = chunk.rows;
                each(first, chunk)?;
                first += rows;
            }
        }
        Ok(first)
    }
}

/// Reads `data` in passes and fits boosted trees with `params` on its training rows; `holdout` and
/// `seed` split the rows as [`holdout_split`] does for a whole frame.
pub(crate) fn train(
    data: &Datasets,
    params: gbt::Params,
    (holdout_share, seed): (f64, u64),
    progress: &mut dyn FnMut(Progress),
) -> Result<Streamed, TrainError> {
    let features = &data.spec.features;
    let n = data.pass(|_, _| Ok(()))?;
    if n < 10 {
        return Err(TrainError::TooFew(n));
    }
    let held = {
        let (_, holdout_idx) = holdout_split(n, holdout_share, seed);
        let mut held = vec![false; n];
        holdout_idx.into_iter().for_each(|i| held[i] = true);
        held
    };
    let training_rows = held.iter().filter(|h| !**h).count();
    progress(Progress { stage: "sampling the training rows".into(), fraction: 0.05 });
    let sample = sample(data, &held, training_rows)?;
    let preprocessing = Preprocessor::fit(features, &sample);
    let mut reference = ReferenceProfile::fit(features, &sample);
    reference.rows = training_rows as u64;
    let d = preprocessing.width();
    let one_hot = preprocessing.one_hot_groups();
    let row = |i: usize, out: &mut Vec<f64>| {
        preprocessing.transform_values(sample.columns.iter().map(|c| c.value_ref(i)), out)
    };
    let binner = Binner::new(&row, sample.rows, d, &one_hot, params.max_bins);
    drop(sample);
    progress(Progress { stage: "binning the training rows".into(), fraction: 0.1 });
    let (codes, y) = bin(data, &held, training_rows, &preprocessing, &binner)?;
    let bins = Binned::from_codes(binner, codes);
    let fit = gbt::fit_binned(&bins, &y, params, |t| {
        progress(Progress { stage: "training".into(), fraction: 0.15 + 0.8 * f64::from(t) / f64::from(params.trees) })
    });
    Ok(Streamed { preprocessing, reference, fit, training_rows, held })
}

/// Every k-th training row, k such that at most [`SAMPLE`] are taken (all of them when there are
/// no more); a classifier's rows must hold both classes.
fn sample(data: &Datasets, held: &[bool], training_rows: usize) -> Result<Frame, TrainError> {
    let every = training_rows.div_ceil(SAMPLE).max(1);
    let mut seen = 0usize;
    let mut classes = [false; 2];
    let binary = data.spec.target.task == Task::BinaryClassification;
    let mut sample: Option<Frame> = None;
    data.pass(|first, chunk| {
        let labels = chunk.target.as_deref().unwrap_or_default();
        let mut picked = Vec::new();
        for (i, label) in labels.iter().enumerate().filter(|(i, _)| !held[first + i]) {
            if binary {
                classes[usize::from(*label == 1.0)] = true;
            }
            if seen.is_multiple_of(every) {
                picked.push(i);
            }
            seen += 1;
        }
        let part = chunk.take(&picked);
        match &mut sample {
            None => sample = Some(part),
            Some(all) => all.append(part),
        }
        Ok(())
    })?;
    if binary && classes != [true, true] {
        return Err(TrainError::OneClass);
    }
    sample.ok_or(TrainError::TooFew(0))
}

/// Every training row's bin codes, row-major, and its label.
fn bin(
    data: &Datasets,
    held: &[bool],
    training_rows: usize,
    preprocessing: &Preprocessor,
    binner: &Binner,
) -> Result<(Vec<u8>, Vec<f64>), TrainError> {
    let u = binner.units();
    let (mut codes, mut y) = (vec![0u8; training_rows * u], Vec::with_capacity(training_rows));
    let mut values = Vec::with_capacity(preprocessing.width());
    data.pass(|first, chunk| {
        let labels = chunk.target.as_deref().unwrap_or_default();
        for (i, label) in labels.iter().enumerate().filter(|(i, _)| !held[first + i]) {
            values.clear();
            preprocessing.transform_values(chunk.columns.iter().map(|c| c.value_ref(i)), &mut values);
            let at = y.len() * u;
            binner.code(&values, &mut codes[at..at + u]);
            y.push(*label);
        }
        Ok(())
    })?;
    Ok((codes, y))
}

/// The holdout as scored: each row's label, score and, with `business.amount`, amount.
pub(crate) struct Held {
    pub labels: Vec<f64>,
    pub scores: Vec<f64>,
    pub amounts: Option<Vec<f64>>,
}

/// The labels of the rows `held` marks, what `score` gives them and their amounts, batch by batch.
pub(crate) fn holdout_scores(
    data: &Datasets,
    held: &[bool],
    mut score: impl FnMut(&Frame) -> Vec<f64>,
) -> Result<Held, TrainError> {
    let mut out = Held { labels: Vec::new(), scores: Vec::new(), amounts: None };
    data.pass(|first, chunk| {
        let picked: Vec<usize> = (0..chunk.rows).filter(|i| held[first + i]).collect();
        let part = chunk.take(&picked);
        out.labels.extend(part.target.as_deref().unwrap_or_default());
        out.scores.extend(score(&part));
        if let Some(a) = data.spec.amounts(&part) {
            out.amounts.get_or_insert_with(Vec::new).extend(a);
        }
        Ok(())
    })?;
    Ok(out)
}
