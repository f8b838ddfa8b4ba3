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
use crate::{importance, measure};

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
    /// Permutation importance per feature, and the features whose importance fell sharply.
    pub importance: Vec<pb::FeatureImportance>,
    pub warnings: Vec<String>,
}

/// Scores the candidate (and the champion) and applies the spec's gates and serving limits.
pub fn judge(i: &Inputs) -> Result<Judgement, EvaluatorError> {
    let unreadable = |e: mlops_data::DatasetError| EvaluatorError::BadData(e.to_string());
    let m = i.candidate.manifest();
    let task = i.spec.target.task;
    let measures = measure::Measures::new(&i.spec, m, i.champion.as_ref().map(|c| c.manifest()));
    let (frame, counts) = mlops_data::read_datasets_counted(&i.spec, &i.window).map_err(unreadable)?;
    let (_, holdout_idx) = holdout_split(frame.rows, m.holdout_share, m.seed);
    let holdout = frame.take(&holdout_idx);
    let labels = holdout.target.clone().unwrap_or_default();
    let amounts = i.spec.amounts(&holdout);
    let rows = Rows { spec: &i.spec, datasets: &i.window, frame: &frame, at: &holdout_idx, taken: &holdout };
    let candidate = rows.scores(&i.candidate)?;
    let (production, champion_blind) = champion_scores(i, &rows)?;
    let newest = match &i.newest {
        None => None,
        Some(Newest::InWindow { index, .. }) => {
            let at = measure::rows_of(&holdout_idx, &counts, *index);
            let pick = |scores: &[f64]| at.iter().map(|&r| scores[r]).collect::<Vec<_>>();
            let (production, amounts) = (production.as_deref().map(pick), amounts.as_deref().map(pick));
            Some(measures.score(&pick(&labels), &pick(&candidate), production.as_deref(), amounts.as_deref()))
        }
        Some(Newest::After(id, bytes)) => Some(score_newest(i, &measures, &[(id.clone(), bytes.clone())])?),
    };
    let (production, amounts) = (production.as_deref(), amounts.as_deref());
    let measured = Measured {
        holdout: measures.score(&labels, &candidate, production, amounts),
        newest,
        slices: measure::slices(&measures, &i.spec, &holdout, &labels, &candidate, production, amounts),
        min_slice_rows: i.spec.evaluation.min_slice_rows as usize,
    };
    let (mut passed, mut checks) = gate::judge(task, &i.spec.gates, &measured);
    if let Some(check) = champion_blind.and_then(|why| blind_check(i, why)) {
        passed = false;
        checks.push(check);
    }
    if let Some(limits) = &i.spec.serving_limits {
        let (p99_ms, timed) = single_row_p99(&i.candidate, &holdout);
        let infra = gate::serving_checks(limits, p99_ms, timed, i.artifact_size);
        passed &= infra.iter().all(|c| c.passed);
        checks.extend(infra);
    }
    let (importance, warnings) = importance_of(i, &holdout)?;
    Ok(Judgement { passed, checks, measured, rows: holdout.rows as u64, importance, warnings })
}

/// Each feature's permutation importance for the candidate and, when it reads the same features,
/// production, on the same rows and shuffles; and the features that fell sharply.
fn importance_of(i: &Inputs, holdout: &Frame) -> Result<(Vec<pb::FeatureImportance>, Vec<String>), EvaluatorError> {
    let (task, m) = (i.spec.target.task, i.candidate.manifest());
    // The holdout's columns are the current spec's features: a candidate trained on others (judged
    // after a newer apply) is not measured.
    if m.features != i.spec.model_inputs() {
        return Ok((Vec::new(), Vec::new()));
    }
    let rows = importance::rows(holdout);
    let labels = rows.target.clone().unwrap_or_default();
    let candidate = importance::permutation(task, &i.candidate, &rows, &labels, m.seed)?;
    let same_inputs = i.champion.as_ref().filter(|c| c.manifest().features == m.features);
    // Production's importance is a comparison, not the verdict: a champion that cannot answer
    // here leaves it out rather than failing the judgement.
    let production = same_inputs.and_then(|c| importance::permutation(task, c, &rows, &labels, m.seed).ok());
    let names: Vec<String> = m.features.iter().map(|f| f.name.clone()).collect();
    let report = importance::report(&names, &candidate, production.as_deref());
    let warnings = importance::warnings(&report, task.default_metric());
    Ok((report, warnings))
}

/// The candidate's and the champion's scores on every row of `newest` (none for a champion that
/// cannot read it).
fn score_newest(
    i: &Inputs,
    measures: &measure::Measures,
    newest: &[(String, Vec<u8>)],
) -> Result<Scored, EvaluatorError> {
    let frame = mlops_data::read_datasets(&i.spec, newest).map_err(|e| EvaluatorError::BadData(e.to_string()))?;
    let labels = frame.target.clone().unwrap_or_default();
    let all: Vec<usize> = (0..frame.rows).collect();
    let rows = Rows { spec: &i.spec, datasets: newest, frame: &frame, at: &all, taken: &frame };
    let (production, _) = champion_scores(i, &rows)?;
    let amounts = i.spec.amounts(&frame);
    Ok(measures.score(&labels, &rows.scores(&i.candidate)?, production.as_deref(), amounts.as_deref()))
}

/// Rows to score: `at` of `datasets`, read under `spec` as `frame` (`taken`: those rows of it).
pub(crate) struct Rows<'a> {
    pub spec: &'a PipelineSpec,
    pub datasets: &'a [(String, Vec<u8>)],
    pub frame: &'a Frame,
    pub at: &'a [usize],
    pub taken: &'a Frame,
}

impl Rows<'_> {
    /// `model`'s scores of the rows. A model takes a row's values by position, so one trained
    /// under another spec's features (a champion, a version compared for staleness, a candidate
    /// judged after a newer apply) reads the datasets again under its own features.
    pub(crate) fn scores(&self, model: &Arc<dyn Model>) -> Result<Vec<f64>, EvaluatorError> {
        let features = &model.manifest().features;
        if *features == self.spec.model_inputs() {
            return scores(model, self.taken);
        }
        let own = PipelineSpec { features: features.clone(), ..self.spec.clone() };
        let theirs =
            mlops_data::read_datasets(&own, self.datasets).map_err(|e| EvaluatorError::BadData(e.to_string()))?;
        if theirs.rows != self.frame.rows {
            return Err(EvaluatorError::BadData(format!(
                "a model trained on other features reads {} rows of the data, the current spec {}",
                theirs.rows, self.frame.rows
            )));
        }
        scores(model, &theirs.take(self.at))
    }
}

/// The champion's scores of `rows`, or, when it cannot read them (a column it was trained on is
/// gone), none and why.
fn champion_scores(i: &Inputs, rows: &Rows<'_>) -> Result<(Option<Vec<f64>>, Option<String>), EvaluatorError> {
    match i.champion.as_ref().map(|c| rows.scores(c)) {
        None => Ok((None, None)),
        Some(Ok(s)) => Ok((Some(s), None)),
        Some(Err(EvaluatorError::BadData(why))) => Ok((None, Some(why))),
        Some(Err(e)) => Err(e),
    }
}

/// A failed check for a candidate whose relative gates could not compare it with a champion
/// that cannot read the data; none when the spec has no relative gate.
fn blind_check(i: &Inputs, why: String) -> Option<pb::GateCheck> {
    let relative = i.spec.gates.iter().any(|g| g.max_drop.is_some() || g.max_relative_drop.is_some());
    relative.then(|| pb::GateCheck {
        name: format!("compared with production v{}", i.production_version),
        passed: false,
        detail: format!(
            "the production model cannot read these rows ({why}), so the relative gates cannot compare: \
             approve the candidate (`mlops models approve`) to replace it"
        ),
    })
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
