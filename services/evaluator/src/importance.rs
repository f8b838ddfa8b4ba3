//! Permutation importance on the holdout: how much a model's headline metric (ROC AUC, or RMSE
//! for regression) worsens when one feature's values are shuffled among the rows, which breaks
//! the feature's link to the label and keeps everything else. Measured for the candidate and, when
//! it reads the same features, the production model on the same rows and shuffles; a feature
//! whose importance fell sharply against production is a warning on `model.evaluated`.

use std::sync::Arc;

use mlops_proto as pb;
use mlops_shared::model::{Model, shuffled};
use mlops_shared::spec::Task;
use mlops_shared::table::Frame;

use crate::error::EvaluatorError;

/// Holdout rows shuffled at most: the first ones of the (already random) holdout order.
pub const MAX_ROWS: usize = 5_000;
/// A feature's importance fell sharply when it is under this share of production's...
pub const SHARP_FALL: f64 = 0.5;
/// ...and production's was at least this (a change among features that barely matter is noise).
pub const NOTABLE: f64 = 0.01;

/// The importance of each feature of `frame` (in the spec's order) for `model`: its metric on the
/// rows minus its metric with the feature shuffled (the other way round for an error), so that
/// positive means the model relies on the feature. Shuffle `j` is seeded by `seed + j`, the same
/// for every model measured.
pub fn permutation(
    task: Task,
    model: &Arc<dyn Model>,
    frame: &Frame,
    labels: &[f64],
    seed: u64,
) -> Result<Vec<f64>, EvaluatorError> {
    let metric = task.default_metric();
    let higher = task.higher_is_better(metric).unwrap_or(true);
    let value = |frame: &Frame| -> Result<f64, EvaluatorError> {
        let scores = crate::judge::scores(model, frame)?;
        Ok(mlops_shared::scoring::for_task(task, labels, &scores).get(metric).copied().unwrap_or(f64::NAN))
    };
    let baseline = value(frame)?;
    let mut out = Vec::with_capacity(frame.columns.len());
    for j in 0..frame.columns.len() {
        let order = shuffled(frame.rows, seed.wrapping_add(j as u64));
        let mut permuted = frame.clone();
        permuted.columns[j] = frame.columns[j].take(&order);
        let worse = value(&permuted)?;
        let importance = if higher { baseline - worse } else { worse - baseline };
        out.push(if importance.is_finite() { importance } else { 0.0 });
    }
    Ok(out)
}

/// The rows importance is measured on: the first [`MAX_ROWS`] of the holdout.
pub fn rows(holdout: &Frame) -> Frame {
    if holdout.rows <= MAX_ROWS {
        return holdout.clone();
    }
    holdout.take(&(0..MAX_ROWS).collect::<Vec<_>>())
}

/// Each feature's importance for both models, in the spec's order.
pub fn report(features: &[String], candidate: &[f64], production: Option<&[f64]>) -> Vec<pb::FeatureImportance> {
    features
        .iter()
        .enumerate()
        .map(|(j, name)| pb::FeatureImportance {
            feature: name.clone(),
            candidate: candidate[j],
            production: production.map(|p| p[j]),
        })
        .collect()
}

/// A warning for each feature whose importance fell sharply against production's.
pub fn warnings(importance: &[pb::FeatureImportance], metric: &str) -> Vec<String> {
    importance
        .iter()
        .filter_map(|i| {
            let production = i.production?;
            (production >= NOTABLE && i.candidate < production * SHARP_FALL).then(|| {
                format!(
                    "feature `{}` matters much less to the candidate than to production: shuffling it costs {metric} \
                     {:.4}, against {production:.4} (a fall of {:.0} %); a broken or changed input is the usual cause",
                    i.feature,
                    i.candidate,
                    (1.0 - i.candidate / production) * 100.0
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharp_fall_of_a_feature_that_mattered_is_a_warning_and_noise_is_not() {
        let features = ["tenure".to_owned(), "age".to_owned(), "calls".to_owned()];
        let r = report(&features, &[0.02, 0.001, 0.15], Some(&[0.2, 0.004, 0.16]));
        assert_eq!(r[0].production, Some(0.2));
        let w = warnings(&r, "roc_auc");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("feature `tenure` matters much less"), "{}", w[0]);
        assert!(w[0].contains("costs roc_auc 0.0200, against 0.2000 (a fall of 90 %)"), "{}", w[0]);
        assert!(warnings(&report(&features, &[0.02, 0.0, 0.1], None), "roc_auc").is_empty());
    }
}
