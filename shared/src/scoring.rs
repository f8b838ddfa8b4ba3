//! Classification metrics, shared by the trainer (holdout metrics in the manifest) and the
//! evaluator (candidate against production on the same rows).

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

#[cfg(test)]
mod tests {
    use super::*;

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
