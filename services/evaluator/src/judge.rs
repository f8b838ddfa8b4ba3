//! A candidate's judgement, computed on the blocking pool from inputs fetched beforehand: its
//! scores on the holdout and on the newest data beside production's, per slice, against the gates
//! and the serving limits. Nothing here awaits.

use mlops_proto as pb;
use std::sync::Arc;

use mlops_shared::model::{Model, holdout_split};
use mlops_shared::spec::PipelineSpec;
use mlops_shared::table::Frame;

use crate::error::EvaluatorError;
use crate::gate::{self, Measured, Scored};
use crate::measure;

/// Everything the judgement reads, fetched and verified before it starts.
pub struct Inputs {
    pub spec: PipelineSpec,
    pub candidate: Arc<dyn Model>,
    pub artifact_size: u64,
    /// The serving model, when there is one, and its version (0 when none).
    pub champion: Option<Arc<dyn Model>>,
    pub production_version: u64,
    /// The candidate's training window, as (dataset id, bytes).
    pub window: Vec<(String, Vec<u8>)>,
    /// The newest validated dataset, when the pipeline has one.
    pub newest: Option<Newest>,
}

/// The newest validated dataset: one of the candidate's window (judged on its share of the
/// holdout), or one that arrived after the window was chosen (judged whole).
pub enum Newest {
    /// The dataset `id`, at `index` in the candidate's window.
    InWindow {
        id: String,
        index: usize,
    },
    After(String, Vec<u8>),
}

impl Newest {
    pub fn id(&self) -> &str {
        match self {
            Self::InWindow { id, .. } | Self::After(id, _) => id,
        }
    }
}

/// The verdict and the measurements behind it.
pub struct Judgement {
    pub passed: bool,
    pub checks: Vec<pb::GateCheck>,
    pub measured: Measured,
    /// Holdout rows.
    pub rows: u64,
}

/// Scores the candidate (and the champion) and applies the spec's gates and serving limits.
pub fn judge(i: &Inputs) -> Result<Judgement, EvaluatorError> {
    let unreadable = |e: mlops_data::DatasetError| EvaluatorError::BadData(e.to_string());
    let m = i.candidate.manifest();
    let task = i.spec.target.task;
    let (frame, counts) = mlops_data::read_datasets_counted(&i.spec, &i.window).map_err(unreadable)?;
    let (_, holdout_idx) = holdout_split(frame.rows, m.holdout_share, m.seed);
    let holdout = frame.take(&holdout_idx);
    let labels = holdout.target.clone().unwrap_or_default();
    let candidate = scores(&i.candidate, &holdout)?;
    let production = i.champion.as_ref().map(|c| scores_of(c, &i.spec, &i.window, &frame, &holdout_idx)).transpose()?;
    let newest = match &i.newest {
        None => None,
        Some(Newest::InWindow { index, .. }) => {
            let at = measure::rows_of(&holdout_idx, &counts, *index);
            let pick = |scores: &[f64]| at.iter().map(|&r| scores[r]).collect::<Vec<_>>();
            let production = production.as_deref().map(pick);
            Some(measure::score(task, &pick(&labels), &pick(&candidate), production.as_deref()))
        }
        Some(Newest::After(id, bytes)) => Some(score_newest(i, &[(id.clone(), bytes.clone())])?),
    };
    let measured = Measured {
        holdout: measure::score(task, &labels, &candidate, production.as_deref()),
        newest,
        slices: measure::slices(&i.spec, &holdout, &labels, &candidate, production.as_deref()),
        min_slice_rows: i.spec.evaluation.min_slice_rows as usize,
    };
    let (mut passed, mut checks) = gate::judge(task, &i.spec.gates, &measured);
    if let Some(limits) = &i.spec.serving_limits {
        let (p99_ms, timed) = single_row_p99(&i.candidate, &holdout);
        let infra = gate::serving_checks(limits, p99_ms, timed, i.artifact_size);
        passed &= infra.iter().all(|c| c.passed);
        checks.extend(infra);
    }
    Ok(Judgement { passed, checks, measured, rows: holdout.rows as u64 })
}

/// The candidate's and the champion's scores on every row of `newest`.
fn score_newest(i: &Inputs, newest: &[(String, Vec<u8>)]) -> Result<Scored, EvaluatorError> {
    let frame = mlops_data::read_datasets(&i.spec, newest).map_err(|e| EvaluatorError::BadData(e.to_string()))?;
    let labels = frame.target.clone().unwrap_or_default();
    let all: Vec<usize> = (0..frame.rows).collect();
    let production = i.champion.as_ref().map(|c| scores_of(c, &i.spec, newest, &frame, &all)).transpose()?;
    Ok(measure::score(i.spec.target.task, &labels, &scores(&i.candidate, &frame)?, production.as_deref()))
}

/// `model`'s scores of `rows` of `datasets` (read under `spec` as `frame`). A model takes a
/// row's values by position, so one trained under an earlier spec with other features (a
/// champion, a version compared for staleness) reads the datasets again under its own features.
pub(crate) fn scores_of(
    model: &Arc<dyn Model>,
    spec: &PipelineSpec,
    datasets: &[(String, Vec<u8>)],
    frame: &Frame,
    rows: &[usize],
) -> Result<Vec<f64>, EvaluatorError> {
    let features = &model.manifest().features;
    if *features == spec.features {
        return scores(model, &frame.take(rows));
    }
    let own = PipelineSpec { features: features.clone(), ..spec.clone() };
    let theirs = mlops_data::read_datasets(&own, datasets).map_err(|e| EvaluatorError::BadData(e.to_string()))?;
    if theirs.rows != frame.rows {
        return Err(EvaluatorError::BadData(format!(
            "a model trained on other features reads {} rows of the data, the current spec {}",
            theirs.rows, frame.rows
        )));
    }
    scores(model, &theirs.take(rows))
}

/// `model`'s score of every row of `frame`; a model that cannot answer is not judged.
pub fn scores(model: &Arc<dyn Model>, frame: &Frame) -> Result<Vec<f64>, EvaluatorError> {
    model.predict_frame(frame).map_err(|e| EvaluatorError::BadArtifact(e.to_string()))
}

/// Times single-row predictions (preprocessing included) on up to 2,000 holdout rows, cycling
/// through them when there are fewer than 200: the p99 in milliseconds, and how many were timed.
fn single_row_p99(model: &Arc<dyn Model>, holdout: &Frame) -> (f64, usize) {
    if holdout.rows == 0 {
        return (f64::NAN, 0);
    }
    let rows: Vec<_> = (0..holdout.rows.min(2_000)).map(|i| holdout.row(i)).collect();
    let n = rows.len().max(200);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let row = &rows[i % rows.len()];
        let started = std::time::Instant::now();
        let _ = std::hint::black_box(model.predict_rows(std::hint::black_box(std::slice::from_ref(row))));
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (gate::p99(&mut samples), n)
}
