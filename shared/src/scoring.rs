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

/// Precision, recall and F1 of the positive class, a row predicted positive when its score is at
/// least 0.5. A ratio with nothing to divide by is 0, as scikit-learn's `zero_division` default.
pub fn precision_recall_f1(labels: &[f64], scores: &[f64]) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for (y, s) in labels.iter().zip(scores) {
        match (*s >= 0.5, *y >= 0.5) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            (false, false) => {}
        }
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fneg));
    (precision, recall, ratio(2.0 * precision * recall, precision + recall))
}

/// Area under the precision-recall curve as scikit-learn's `average_precision_score`: the sum over
/// score thresholds (ties together, highest first) of precision times the recall gained. NaN
/// without positives.
pub fn average_precision(labels: &[f64], scores: &[f64]) -> f64 {
    let positives = labels.iter().filter(|&&y| y >= 0.5).count() as f64;
    if positives == 0.0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            tp += if labels[order[j]] >= 0.5 { 1.0 } else { 0.0 };
            seen += 1.0;
            j += 1;
        }
        let recall = tp / positives;
        ap += (recall - last_recall) * (tp / seen);
        last_recall = recall;
        i = j;
    }
    ap
}

/// Mean squared difference between the score and the 0/1 label (scikit-learn's
/// `brier_score_loss`); lower is better.
pub fn brier(labels: &[f64], scores: &[f64]) -> f64 {
    labels.iter().zip(scores).map(|(y, s)| (s - y) * (s - y)).sum::<f64>() / labels.len().max(1) as f64
}

/// Every classification metric by name.
pub fn classification(labels: &[f64], scores: &[f64]) -> BTreeMap<String, f64> {
    let (precision, recall, f1) = precision_recall_f1(labels, scores);
    BTreeMap::from([
        ("accuracy".to_owned(), accuracy(labels, scores)),
        ("roc_auc".to_owned(), roc_auc(labels, scores)),
        ("log_loss".to_owned(), log_loss(labels, scores)),
        ("precision".to_owned(), precision),
        ("recall".to_owned(), recall),
        ("f1".to_owned(), f1),
        ("pr_auc".to_owned(), average_precision(labels, scores)),
        ("brier".to_owned(), brier(labels, scores)),
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

    // Golden values from scikit-learn 1.x: precision_score, recall_score, f1_score (on scores
    // thresholded at 0.5), average_precision_score and brier_score_loss.
    #[test]
    fn precision_recall_f1_pr_auc_and_brier_match_scikit_learn() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let m = classification(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8]);
        assert!(close(m["precision"], 1.0) && close(m["recall"], 0.5), "{m:?}");
        assert!(close(m["f1"], 0.666_666_666_666_666_6), "{m:?}");
        assert!(close(m["pr_auc"], 0.833_333_333_333_333_3), "{m:?}");
        assert!(close(m["brier"], 0.158_125_000_000_000_02), "{m:?}");
        let m = classification(&[1.0, 0.0, 1.0, 0.0, 1.0], &[0.9, 0.9, 0.2, 0.1, 0.6]);
        assert!(close(m["precision"], 0.666_666_666_666_666_6) && close(m["recall"], 0.666_666_666_666_666_6));
        assert!(close(m["f1"], 0.666_666_666_666_666_6), "{m:?}");
        assert!(close(m["pr_auc"], 0.638_888_888_888_888_8), "{m:?}");
        assert!(close(m["brier"], 0.326_000_000_000_000_07), "{m:?}");
        // Nothing predicted positive: precision 0 (zero_division); tied scores: one threshold.
        assert_eq!(precision_recall_f1(&[0.0, 1.0], &[0.1, 0.2]), (0.0, 0.0, 0.0));
        assert!(close(average_precision(&[0.0, 0.0, 1.0], &[0.5, 0.5, 0.5]), 0.333_333_333_333_333_3));
        assert!(average_precision(&[0.0, 0.0], &[0.1, 0.2]).is_nan());
    }
}
