//! Answering one request: pick the model (stable, canary or both in a shadow release), lay the
//! inputs out for it, score, record the release's figures, keep the answers for their labels,
//! and offer the sampled predictions to the log.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mlops_shared::model::ModelError;
use mlops_shared::spec::Task;
use mlops_shared::table::Value;

use super::inputs::{Column, rows};
use super::models::{Models, Picked, Served};
use super::pending_labels::Answer;
use super::prediction_log::PredictionLog;
use super::rand_unit;
use crate::error::DeployerError;

/// Answers one request of `pipeline` (at `version` when given): picks the model, lays `inputs`
/// out for it, scores, records the release figures, and mirrors the request in a shadow release.
/// Fails when the pipeline or the version is not served, or when the inputs do not fit the model.
pub fn infer(
    models: &Models,
    log: &PredictionLog,
    pipeline: &str,
    version: Option<&str>,
    inputs: Vec<(String, Column)>,
) -> Result<(Arc<Served>, Scored), DeployerError> {
    infer_picked(models.pick(pipeline, version)?, log, inputs)
}

/// [`infer`] with the model already picked (so that its looked-up features can be fetched first).
pub fn infer_picked(
    picked: Picked,
    log: &PredictionLog,
    inputs: Vec<(String, Column)>,
) -> Result<(Arc<Served>, Scored), DeployerError> {
    let mirrored = picked.shadow.as_ref().map(|_| inputs.clone());
    let laid_out = rows(&*picked.model.artifact, inputs)?;
    let started = std::time::Instant::now();
    let scored = score(&picked.model, &laid_out, Some(log)).inspect_err(|_| {
        // A release's figures count a model that could not answer as an error.
        if let Some(stats) = &picked.stats {
            stats.record(started.elapsed(), &[f64::NAN], picked.model.is_classifier());
        }
    })?;
    if let Some(stats) = &picked.stats {
        stats.record(started.elapsed(), &scored.scores, picked.model.is_classifier());
    }
    let mut mirror = None;
    if let (Some((shadow, stats)), Some(inputs)) = (&picked.shadow, mirrored) {
        // The mirror is judged, never returned or logged; inputs it cannot take count as errors.
        let started = std::time::Instant::now();
        match rows(&*shadow.artifact, inputs).and_then(|r| score(shadow, &r, None)) {
            Ok(s) => {
                stats.record(started.elapsed(), &s.scores, shadow.is_classifier());
                mirror = Some((shadow, stats, s.scores));
            }
            Err(_) => stats.record(started.elapsed(), &[f64::NAN], shadow.is_classifier()),
        }
    }
    if let (Some(pending), Some(stats)) = (&picked.pending, &picked.stats) {
        // Both answers of a mirrored row wait under the id the caller got: its label judges both.
        for (i, (id, &s)) in scored.ids.iter().zip(&scored.scores).enumerate() {
            let mut answers = vec![Answer { model: picked.model.clone(), stats: stats.clone(), score: s }];
            if let Some((shadow, stats, scores)) = &mirror {
                answers.push(Answer { model: (*shadow).clone(), stats: (*stats).clone(), score: scores[i] });
            }
            pending.insert(id.clone(), answers);
        }
    }
    Ok((picked.model, scored))
}

/// The outputs of one inference call.
pub struct Scored {
    /// Probabilities of the positive class (classification) or predicted values (regression).
    pub scores: Vec<f64>,
    /// The predicted class labels (classification only).
    pub labels: Vec<String>,
    pub ids: Vec<String>,
    /// The OIP name of `scores`: `probability` or `prediction`.
    pub scores_name: &'static str,
}

/// The OIP outputs of `model` (name, datatype): `probability`, `label` and `prediction_id` for a
/// classifier; `prediction` and `prediction_id` for a regression model.
pub fn outputs(model: &Served) -> &'static [(&'static str, &'static str)] {
    match model.artifact.manifest().target.task {
        Task::BinaryClassification => &[("probability", "FP64"), ("label", "BYTES"), ("prediction_id", "BYTES")],
        Task::Regression => &[("prediction", "FP64"), ("prediction_id", "BYTES")],
    }
}

/// Scores `rows` with `model` and, given a log, queues the sampled prediction logs.
pub fn score(model: &Served, rows: &[Vec<Value>], log: Option<&PredictionLog>) -> Result<Scored, DeployerError> {
    let t = &model.artifact.manifest().target;
    let classifier = t.task == Task::BinaryClassification;
    let mut out = Scored {
        scores: Vec::with_capacity(rows.len()),
        labels: Vec::with_capacity(if classifier { rows.len() } else { 0 }),
        ids: Vec::with_capacity(rows.len()),
        scores_name: outputs(model)[0].0,
    };
    let predictions = model.artifact.predict_rows(rows).map_err(|e| match e {
        ModelError::BadInput(m) => DeployerError::BadInput(m),
        ModelError::Engine(reason) => {
            DeployerError::Inference { pipeline: model.pipeline.clone(), version: model.version, reason }
        }
    })?;
    for (row, p) in rows.iter().zip(predictions) {
        // Version 7: the id names the time it was made, which finds its hour in the archive.
        let id = uuid::Uuid::now_v7().to_string();
        let label = match (classifier, p.positive) {
            (false, _) => "",
            (true, true) => t.positive.as_str(),
            (true, false) => t.negative.as_str(),
        };
        if let Some(log) = log
            && (model.log_sample >= 1.0 || (model.log_sample > 0.0 && rand_unit() < model.log_sample))
        {
            log.offer(model, row, p.score, label, &id);
        }
        out.scores.push(p.score);
        if classifier {
            out.labels.push(label.to_owned());
        }
        out.ids.push(id);
    }
    model.predictions.fetch_add(rows.len() as u64, Ordering::Relaxed);
    metrics::counter!("mlops_predictions_total", "pipeline" => model.pipeline.clone()).increment(rows.len() as u64);
    Ok(out)
}
