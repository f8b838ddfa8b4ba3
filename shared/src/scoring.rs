//! Classification and regression metrics, shared by the trainer (holdout metrics in the manifest)
//! and the evaluator (candidate against production on the same rows). Each matches scikit-learn's
//! function of the same name; the tests hold golden values from it.

use std::collections::BTreeMap;

/// Share of rows whose thresholded score (>= 0.5) equals the 0/1 label.
pub fn accuracy(labels: &[f64], scores: &[f64]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let hits = labels.iter().zip(scores).filter(|(y, s)| (**s >= 0.5) == (**y >= 0.5)).count();
    hits as f64 / labels.len() as f64
}

/// Area under the ROC curve by the rank-sum (Mann-Whitney U) formula, ties sharing their average
/// rank. NaN when only one class is present.
pub fn roc_auc(labels: &[f64], scores: &[f64]) -> f64 {
    let n = labels.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] >= 0.5 {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&y| y >= 0.5).count() as f64;
    let neg = n as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Mean negative log-likelihood, scores clipped to [1e-15, 1 - 1e-15] as scikit-learn does.
pub fn log_loss(labels: &[f64], scores: &[f64]) -> f64 {
    let eps = 1e-15;
    let total: f64 = labels
        .iter()
        .zip(scores)
        .map(|(y, s)| {
            let p = s.clamp(eps, 1.0 - eps);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// Every classification metric by name.
pub fn classification(labels: &[f64], scores: &[f64]) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("accuracy".to_owned(), accuracy(labels, scores)),
        ("roc_auc".to_owned(), roc_auc(labels, scores)),
        ("log_loss".to_owned(), log_loss(labels, scores)),
    ])
}

/// Every regression metric by name: `rmse`, `mae`, `r2`, `mape`.
pub fn regression(labels: &[f64], predictions: &[f64]) -> BTreeMap<String, f64> {
    let n = labels.len() as f64;
    if labels.is_empty() {
        return BTreeMap::new();
    }
    let (mut se, mut ae, mut ape) = (0.0, 0.0, 0.0);
    for (y, p) in labels.iter().zip(predictions) {
        se += (y - p) * (y - p);
        ae += (y - p).abs();
        // scikit-learn's mean_absolute_percentage_error: |y - p| / max(|y|, eps).
        ape += (y - p).abs() / y.abs().max(f64::EPSILON);
    }
    let mean = labels.iter().sum::<f64>() / n;
    let total: f64 = labels.iter().map(|y| (y - mean) * (y - mean)).sum();
    // r2_score of constant labels: 1 for a perfect fit, else 0 (scikit-learn's convention).
    let r2 = if total == 0.0 { if se == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - se / total };
    BTreeMap::from([
        ("rmse".to_owned(), (se / n).sqrt()),
        ("mae".to_owned(), ae / n),
        ("r2".to_owned(), r2),
        ("mape".to_owned(), ape / n),
    ])
}

/// The one metric shown when there is room for one: ROC AUC for a classifier, RMSE for a
/// regression model (whichever `get` knows), with its name.
pub fn headline(get: impl Fn(&str) -> Option<f64>) -> Option<(&'static str, f64)> {
    ["roc_auc", "rmse"].into_iter().find_map(|m| get(m).map(|v| (m, v)))
}

/// The metrics of `task`: classification scores are probabilities of the positive class,
/// regression ones predicted values.
pub fn for_task(task: crate::spec::Task, labels: &[f64], scores: &[f64]) -> BTreeMap<String, f64> {
    match task {
        crate::spec::Task::BinaryClassification => classification(labels, scores),
        crate::spec::Task::Regression => regression(labels, scores),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden values from scikit-learn 1.5: mean_squared_error(...) ** 0.5, mean_absolute_error,
    // r2_score and mean_absolute_percentage_error on these rows.
    #[test]
    fn regression_matches_scikit_learn() {
        let y = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        let m = regression(&y, &p);
        assert!((m["rmse"] - 0.612_372_435_695_794_5).abs() < 1e-12, "{m:?}");
        assert!((m["mae"] - 0.5).abs() < 1e-12);
        assert!((m["r2"] - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert!((m["mape"] - 0.327_380_952_380_952_4).abs() < 1e-12);
        // A zero label divides by epsilon, as scikit-learn does.
        assert!(regression(&[0.0], &[1.0])["mape"] > 1e15);
        assert_eq!(regression(&[2.0, 2.0], &[2.0, 2.0])["r2"], 1.0);
        assert_eq!(regression(&[2.0, 2.0], &[1.0, 2.0])["r2"], 0.0);
        assert!(regression(&[], &[]).is_empty());
    }

    // Golden values from scikit-learn's roc_auc_score, accuracy_score and log_loss.
    #[test]
    fn match_scikit_learn() {
        let y = [0.0, 0.0, 1.0, 1.0];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert!((roc_auc(&y, &s) - 0.75).abs() < 1e-12);
        assert!((accuracy(&y, &s) - 0.75).abs() < 1e-12);
        assert!((log_loss(&y, &s) - 0.472_287_953_809_176_15).abs() < 1e-12);
        // Ties share ranks: sklearn gives 0.5 for constant scores.
        assert!((roc_auc(&y, &[0.5; 4]) - 0.5).abs() < 1e-12);
        let y2 = [1.0, 0.0, 1.0, 0.0, 1.0];
        let s2 = [0.9, 0.9, 0.2, 0.1, 0.6];
        assert!((roc_auc(&y2, &s2) - 0.583_333_333_333_333_4).abs() < 1e-12);
        assert!(roc_auc(&[1.0, 1.0], &[0.1, 0.2]).is_nan());
    }
}
