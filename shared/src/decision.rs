//! Decisions priced by the spec's `business.value`: the mean value of one decision at a threshold,
//! the threshold that maximises it on a model's holdout (kept in the artifact, used by the served
//! label), and the value over thresholds for the model card's chart.

use serde::{Deserialize, Serialize};

use crate::spec::ValueMatrix;

/// The threshold a classifier decides by when its artifact names none.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Thresholds 0, 1/STEPS, …, 1 make the value curve.
pub const STEPS: usize = 100;

/// The threshold chosen on the holdout, what a decision is worth there on average, and the
/// curve: the mean value at threshold `k / STEPS` for `k` in `0..=STEPS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub threshold: f64,
    pub value: f64,
    pub curve: Vec<f64>,
}

impl From<&Decision> for mlops_proto::BusinessDecision {
    fn from(d: &Decision) -> Self {
        Self { threshold: d.threshold, value: d.value, curve: d.curve.clone() }
    }
}

impl From<mlops_proto::BusinessDecision> for Decision {
    fn from(d: mlops_proto::BusinessDecision) -> Self {
        Self { threshold: d.threshold, value: d.value, curve: d.curve }
    }
}

/// Row `i`'s amount: a decision on it is worth the matrix's value times this. 1 without amounts
/// (`business.amount`); a missing or non-finite amount counts as 0.
fn amount(amounts: Option<&[f64]>, i: usize) -> f64 {
    amounts.map_or(1.0, |a| a.get(i).copied().filter(|v| v.is_finite()).unwrap_or(0.0))
}

/// The mean value of one decision on `labels` (1 positive, 0 negative), a row decided positive
/// when its score is at least `threshold`, each row's value times its amount (when there are
/// amounts). NaN with no rows.
pub fn mean_value(
    matrix: &ValueMatrix,
    labels: &[f64],
    scores: &[f64],
    threshold: f64,
    amounts: Option<&[f64]>,
) -> f64 {
    mean_of(matrix, scores.iter().map(|s| *s >= threshold), labels, amounts)
}

/// The mean value of the decisions `positive` (one per label, in order) on `labels`, each row's
/// value times its amount (when there are amounts). NaN with no rows.
pub fn mean_of(
    matrix: &ValueMatrix,
    positive: impl Iterator<Item = bool>,
    labels: &[f64],
    amounts: Option<&[f64]>,
) -> f64 {
    let total: f64 =
        positive.zip(labels).enumerate().map(|(i, (p, y))| matrix.of(p, *y >= 0.5) * amount(amounts, i)).sum();
    // `+ 0.0` turns the empty sum's -0.0 into 0.
    total / labels.len() as f64 + 0.0
}

/// Rows to price: their labels and, with `business.amount`, their amounts.
#[derive(Clone, Copy)]
struct Priced<'a> {
    matrix: &'a ValueMatrix,
    labels: &'a [f64],
    amounts: Option<&'a [f64]>,
}

impl Priced<'_> {
    /// What turning row `i`'s decision from negative to positive changes.
    fn gain(&self, i: usize) -> f64 {
        let actual = self.labels[i] >= 0.5;
        (self.matrix.of(true, actual) - self.matrix.of(false, actual)) * amount(self.amounts, i)
    }

    /// The value of every row of `order` decided negative: where the sweeps start.
    fn all_negative(&self, order: &[usize]) -> f64 {
        order.iter().map(|&i| self.matrix.of(false, self.labels[i] >= 0.5) * amount(self.amounts, i)).sum()
    }
}

/// The threshold that maximises the mean value on these rows (each row's value times its amount,
/// when there are amounts), found exactly: every cut between two distinct scores is tried, and of
/// equal values the higher threshold (fewer positive decisions) wins. The threshold lies halfway
/// between the last score decided positive and the next, so that a new row's score is judged by
/// the nearer side. `None` with no rows.
pub fn best(matrix: &ValueMatrix, labels: &[f64], scores: &[f64], amounts: Option<&[f64]>) -> Option<Decision> {
    let priced = Priced { matrix, labels, amounts };
    let mut order: Vec<usize> = (0..labels.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let top = scores[*order.first()?];
    // Every row negative first, then the rows from the highest score down turn positive.
    let mut total = priced.all_negative(&order);
    let above_all = if top < 1.0 { f64::midpoint(top, 1.0) } else { top.next_up() };
    let (mut best_total, mut threshold) = (total, above_all);
    let mut k = 0;
    while k < order.len() {
        let score = scores[order[k]];
        while k < order.len() && scores[order[k]] == score {
            total += priced.gain(order[k]);
            k += 1;
        }
        if total > best_total {
            let next = order.get(k).map(|&i| scores[i]);
            let halfway = next.map(|n| f64::midpoint(score, n)).filter(|&t| next.is_some_and(|n| t > n));
            (best_total, threshold) = (total, halfway.unwrap_or(score));
        }
    }
    let n = order.len() as f64;
    Some(Decision { threshold, value: best_total / n + 0.0, curve: curve(priced, scores, &order) })
}

/// The mean value at thresholds `k / STEPS`, from the rows in descending order of score.
fn curve(priced: Priced, scores: &[f64], descending: &[usize]) -> Vec<f64> {
    let mut total = priced.all_negative(descending);
    let mut values = vec![0.0; STEPS + 1];
    let mut k = 0;
    for step in (0..=STEPS).rev() {
        let t = step as f64 / STEPS as f64;
        while k < descending.len() && scores[descending[k]] >= t {
            total += priced.gain(descending[k]);
            k += 1;
        }
        values[step] = total / descending.len() as f64 + 0.0;
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: ValueMatrix = ValueMatrix { tp: 100.0, fp: -20.0, fn_: -100.0, tn: 0.0 };

    /// The value at every threshold tried one by one, for comparison with the sweep.
    fn brute_force(labels: &[f64], scores: &[f64]) -> f64 {
        let mut cuts: Vec<f64> = scores.to_vec();
        cuts.push(f64::INFINITY);
        cuts.iter().map(|&t| mean_value(&MATRIX, labels, scores, t, None)).fold(f64::NEG_INFINITY, f64::max)
    }

    #[test]
    fn the_best_threshold_is_the_exact_maximum_and_decides_as_it_was_measured() {
        // Ties, a positive with a low score and a negative with a high one.
        let labels = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        let scores = [0.9, 0.8, 0.8, 0.6, 0.4, 0.35, 0.35, 0.2, 0.1, 0.05];
        let d = best(&MATRIX, &labels, &scores, None).unwrap();
        assert_eq!(d.value, brute_force(&labels, &scores));
        assert_eq!(mean_value(&MATRIX, &labels, &scores, d.threshold, None), d.value, "{d:?}");
        // A miss costs 200 against a correct positive, a false alarm 20: even the positive at 0.1
        // is worth the false alarms above it, the negative at 0.05 below it is left out.
        assert!(d.threshold > 0.05 && d.threshold < 0.1, "{d:?}");
        assert!(d.value > mean_value(&MATRIX, &labels, &scores, 0.5, None));
        assert_eq!(d.curve.len(), STEPS + 1);
        for (k, v) in d.curve.iter().enumerate() {
            assert_eq!(*v, mean_value(&MATRIX, &labels, &scores, k as f64 / STEPS as f64, None), "step {k}");
        }
    }

    #[test]
    fn costly_false_positives_push_the_threshold_above_every_score_and_no_rows_decide_nothing() {
        let strict = ValueMatrix { tp: 1.0, fp: -50.0, fn_: 0.0, tn: 0.0 };
        let d = best(&strict, &[0.0, 1.0, 0.0], &[0.7, 0.6, 0.2], None).unwrap();
        assert!(d.threshold > 0.7 && d.threshold <= 1.0 && d.value == 0.0, "{d:?}");
        let d = best(&strict, &[0.0], &[1.0], None).unwrap();
        assert!(d.threshold > 1.0 && d.value == 0.0, "{d:?}");
        assert!(best(&MATRIX, &[], &[], None).is_none());
        assert!(mean_value(&MATRIX, &[], &[], 0.5, None).is_nan());
    }

    #[test]
    fn amounts_weigh_each_rows_decision_and_move_the_threshold_to_the_rows_worth_most() {
        // A positive worth 1,000 at a low score and many cheap negatives above it: by count the
        // threshold stays high, weighed by amount it comes down to catch the costly positive.
        let matrix = ValueMatrix { tp: 1.0, fp: -0.8, fn_: -1.0, tn: 0.0 };
        let labels = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let scores = [0.9, 0.8, 0.7, 0.6, 0.3, 0.1];
        let amounts = [10.0, 10.0, 10.0, 10.0, 1000.0, 10.0];
        let by_count = best(&matrix, &labels, &scores, None).unwrap();
        let by_amount = best(&matrix, &labels, &scores, Some(&amounts)).unwrap();
        assert!(
            by_count.threshold > 0.6 && by_amount.threshold < 0.3 && by_amount.threshold > 0.1,
            "{by_count:?} {by_amount:?}"
        );
        let at = mean_value(&matrix, &labels, &scores, by_amount.threshold, Some(&amounts));
        assert!((at - by_amount.value).abs() < 1e-9, "{at} {by_amount:?}");
        // (10 - 3 x 8 + 1000) / 6 rows, and a missing amount is worth nothing.
        assert!((by_amount.value - 986.0 / 6.0).abs() < 1e-9, "{by_amount:?}");
        let unknown = [10.0, 10.0, 10.0, 10.0, f64::NAN, 10.0];
        assert!((mean_value(&matrix, &labels, &scores, 0.2, Some(&unknown)) + 14.0 / 6.0).abs() < 1e-9);
    }
}
