//! Each feature's predictive power on labelled data, alone: for a classifier, how well the
//! feature alone ranks the classes (|2·AUC − 1|, the Gini coefficient: 0 for no signal, 1 for a
//! perfect split; a categorical feature ranks by each category's positive rate); for regression,
//! the share of the label's variance it explains (R² of a line, or of the category means); and
//! for both, the mutual information with the label in bits (numbers in ten quantile bins). Measured
//! on a sample of at most `2 × SAMPLE` rows (the standard error of an AUC on 8,192 rows is under
//! 0.01), thinned evenly as the data streams by, so the cost does not grow with the file.
//! `features[].min_power` turns a weak feature into an anomaly.

use std::collections::HashMap;

use mlops_data::{Cell, RecordBatch, text, view};
use mlops_proto as pb;
use mlops_shared::spec::{Classes, FeatureKind, FeatureSpec, TargetSpec, Task};

use super::anomalies::{AnomalyKind, Findings};
use super::labels;

/// Rows kept at least, once the data has as many (at most twice as many).
pub(super) const SAMPLE: usize = 8_192;
/// Fewer labelled rows than this measure nothing.
pub(super) const MIN_ROWS: usize = 50;
/// Bins of a number, for mutual information.
const BINS: usize = 10;

/// The sampled values of one feature.
enum Sampled {
    /// NaN for a missing value.
    Numbers(Vec<f64>),
    /// A code per distinct value (`u32::MAX` for a missing one).
    Categories(Vec<u32>, HashMap<String, u32>),
}

/// The rows sampled so far: each one's label and its features' values.
pub(super) struct Power<'s> {
    features: Vec<(&'s FeatureSpec, usize, Sampled)>,
    task: Task,
    target: usize,
    classes: Classes<'s>,
    labels: Vec<f64>,
    /// Every `stride`-th row is sampled; doubled (and the sample halved) when it is full.
    stride: usize,
}

/// One feature's measured power.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Measured {
    pub power: f64,
    pub mutual_information: f64,
}

impl<'s> Power<'s> {
    /// Samples `features` (with their column index) and the label at column `target`.
    pub(super) fn new(features: Vec<(&'s FeatureSpec, usize)>, target: &'s TargetSpec, index: usize) -> Self {
        let features = features
            .into_iter()
            .map(|(f, i)| {
                let sampled = match f.kind {
                    FeatureKind::Numeric => Sampled::Numbers(Vec::new()),
                    FeatureKind::Categorical => Sampled::Categories(Vec::new(), HashMap::new()),
                };
                (f, i, sampled)
            })
            .collect();
        Self { features, task: target.task, target: index, classes: target.classes(), labels: Vec::new(), stride: 1 }
    }

    /// Samples a batch; `offset` is the number of rows before it.
    pub(super) fn add_batch(&mut self, batch: &RecordBatch, offset: usize) {
        let labels = view(batch.column(self.target));
        let columns: Vec<_> = self.features.iter().map(|(_, i, _)| view(batch.column(*i))).collect();
        let first = (offset.div_ceil(self.stride) * self.stride).saturating_sub(offset);
        for r in (first..batch.num_rows()).step_by(self.stride) {
            let Some(y) = self.label(labels.get(r)) else { continue };
            self.labels.push(y);
            for ((_, _, sampled), column) in self.features.iter_mut().zip(&columns) {
                match sampled {
                    Sampled::Numbers(v) => v.push(labels::number(column.get(r)).unwrap_or(f64::NAN)),
                    Sampled::Categories(codes, names) => {
                        let value = text(column.get(r));
                        let value = value.trim();
                        let code = if value.is_empty() {
                            u32::MAX
                        } else {
                            let next = names.len() as u32;
                            *names.entry(value.to_owned()).or_insert(next)
                        };
                        codes.push(code);
                    }
                }
            }
            if self.labels.len() >= 2 * SAMPLE {
                self.thin();
            }
        }
    }

    /// The label of a cell as a number (a class as 1 or 0), read as the label checks read it;
    /// `None` when it is not one.
    fn label(&self, cell: Cell<'_>) -> Option<f64> {
        match self.task {
            Task::Regression => labels::number(cell),
            Task::BinaryClassification => labels::class(&self.classes, cell).map(|p| f64::from(u8::from(p))),
        }
    }

    /// Keeps every other sampled row and doubles the stride.
    fn thin(&mut self) {
        fn halve<T: Copy>(v: &mut Vec<T>) {
            let kept: Vec<T> = v.iter().step_by(2).copied().collect();
            *v = kept;
        }
        halve(&mut self.labels);
        for (_, _, sampled) in &mut self.features {
            match sampled {
                Sampled::Numbers(v) => halve(v),
                Sampled::Categories(codes, _) => halve(codes),
            }
        }
        self.stride *= 2;
    }

    /// Each feature's power (none with fewer than [`MIN_ROWS`] labelled rows), and anomalies for
    /// those under their `min_power`.
    pub(super) fn finish(self, found: &mut Findings) -> Vec<(&'s str, Measured)> {
        if self.labels.len() < MIN_ROWS {
            return Vec::new();
        }
        let rows = self.labels.len();
        let y_bins = label_codes(self.task, &self.labels);
        let measures = measure_all(self.task, &self.labels, &y_bins, &self.features);
        let mut out = Vec::with_capacity(self.features.len());
        for ((f, _, _), measured) in self.features.iter().zip(measures) {
            if let Some(min) = f.min_power
                && measured.power < min
            {
                found.add(&f.name, AnomalyKind::LowPower, None, true, || {
                    format!(
                        "`{}` alone explains little of the label: power {:.4} (mutual information {:.4} bits) on \
                         {rows} sampled rows, under `min_power` {min}",
                        f.name, measured.power, measured.mutual_information
                    )
                });
            }
            out.push((f.name.as_str(), measured));
        }
        out
    }
}

/// The profile's record of a measure.
pub(super) fn record(profile: &mut pb::ColumnProfile, measured: Measured) {
    profile.power = Some(measured.power);
    profile.mutual_information = Some(measured.mutual_information);
}

/// The labels as discrete codes, for mutual information: the class, or a value's quantile bin.
fn label_codes(task: Task, labels: &[f64]) -> Vec<u32> {
    match task {
        Task::BinaryClassification => labels.iter().map(|&y| y as u32).collect(),
        Task::Regression => quantile_bins(labels),
    }
}

/// Every feature's measures, the features split over two threads.
fn measure_all(
    task: Task,
    labels: &[f64],
    y_bins: &[u32],
    features: &[(&FeatureSpec, usize, Sampled)],
) -> Vec<Measured> {
    let each = |part: &[(&FeatureSpec, usize, Sampled)]| -> Vec<Measured> {
        part.iter().map(|(_, _, s)| measure(task, labels, y_bins, s)).collect()
    };
    let (left, right) = features.split_at(features.len() / 2);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| each(left));
        let mut right = each(right);
        // A panic on the other thread is the same panic here.
        let mut all = worker.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        all.append(&mut right);
        all
    })
}

/// One feature's power and mutual information with `labels` (`y_bins`: them as discrete codes).
fn measure(task: Task, labels: &[f64], y_bins: &[u32], sampled: &Sampled) -> Measured {
    match sampled {
        Sampled::Numbers(x) => {
            let present: Vec<usize> = (0..x.len()).filter(|&i| !x[i].is_nan()).collect();
            let (xs, ys): (Vec<f64>, Vec<f64>) = present.iter().map(|&i| (x[i], labels[i])).unzip();
            let power = match task {
                Task::BinaryClassification => gini(&ys, &xs),
                Task::Regression => correlation(&xs, &ys).powi(2),
            };
            let x_bins = quantile_bins(x);
            Measured { power: finite_or_zero(power), mutual_information: mutual_information(&x_bins, y_bins) }
        }
        Sampled::Categories(codes, _) => {
            let means = group_means(codes, labels);
            let fitted: Vec<f64> = codes.iter().map(|c| means[c]).collect();
            let power = match task {
                Task::BinaryClassification => gini(labels, &fitted),
                Task::Regression => correlation(&fitted, labels).powi(2),
            };
            Measured { power: finite_or_zero(power), mutual_information: mutual_information(codes, y_bins) }
        }
    }
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// |2·AUC − 1| of `scores` for 0/1 `labels`: how well they rank the classes, either way round.
fn gini(labels: &[f64], scores: &[f64]) -> f64 {
    (2.0 * mlops_shared::scoring::roc_auc(labels, scores) - 1.0).abs()
}

/// Pearson's correlation; NaN when either side is constant.
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// The mean label of each category code (the share of positives, for classes).
fn group_means(codes: &[u32], labels: &[f64]) -> HashMap<u32, f64> {
    let mut sums: HashMap<u32, (f64, f64)> = HashMap::new();
    for (c, y) in codes.iter().zip(labels) {
        let s = sums.entry(*c).or_default();
        *s = (s.0 + y, s.1 + 1.0);
    }
    sums.into_iter().map(|(c, (sum, n))| (c, sum / n)).collect()
}

/// Each value's bin among [`BINS`] of equal counts (ties share a bin; NaN its own bin).
fn quantile_bins(values: &[f64]) -> Vec<u32> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    mlops_shared::stats::sort_floats(&mut sorted);
    let edges: Vec<f64> = (1..BINS).filter_map(|k| sorted.get(k * sorted.len() / BINS).copied()).collect();
    values.iter().map(|v| if v.is_nan() { BINS as u32 } else { edges.partition_point(|e| e <= v) as u32 }).collect()
}

/// The mutual information of two discrete variables, in bits. Summed in key order, so the same
/// data always gives the same bits.
fn mutual_information(x: &[u32], y: &[u32]) -> f64 {
    let n = x.len() as f64;
    let mut joint: std::collections::BTreeMap<(u32, u32), f64> = Default::default();
    let (mut px, mut py): (HashMap<u32, f64>, HashMap<u32, f64>) = Default::default();
    for (&a, &b) in x.iter().zip(y) {
        *joint.entry((a, b)).or_default() += 1.0;
        *px.entry(a).or_default() += 1.0;
        *py.entry(b).or_default() += 1.0;
    }
    let mi: f64 = joint.iter().map(|(&(a, b), &c)| c / n * (c * n / (px[&a] * py[&b])).log2()).sum();
    mi.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(task: Task, labels: &[f64], sampled: &Sampled) -> Measured {
        super::measure(task, labels, &label_codes(task, labels), sampled)
    }

    #[test]
    fn a_label_copy_has_full_power_and_noise_has_none() {
        // y alternates in blocks; x = y exactly, z is unrelated (its own cycle of 7).
        let y: Vec<f64> = (0..2000).map(|i| f64::from(u8::from(i % 3 == 0))).collect();
        let copy = Sampled::Numbers(y.clone());
        let noise = Sampled::Numbers((0..2000).map(|i| ((i * 7919) % 1000) as f64).collect());
        let c = measure(Task::BinaryClassification, &y, &copy);
        assert_eq!(c.power, 1.0);
        // H(y) for a share of 1/3: 0.918 bits, all of it shared.
        assert!((c.mutual_information - 0.9183).abs() < 1e-3, "{c:?}");
        let n = measure(Task::BinaryClassification, &y, &noise);
        assert!(n.power < 0.05 && n.mutual_information < 0.01, "{n:?}");
    }

    #[test]
    fn categories_rank_by_their_rates_and_regression_measures_explained_variance() {
        let y: Vec<f64> = (0..1000).map(|i| f64::from(u8::from(i % 4 == 0))).collect();
        // Category 0 is always positive, 1 and 2 never: a perfect split.
        let codes: Vec<u32> = (0..1000).map(|i| if i % 4 == 0 { 0 } else { 1 + (i % 2) as u32 }).collect();
        let c = measure(Task::BinaryClassification, &y, &Sampled::Categories(codes, HashMap::new()));
        assert_eq!(c.power, 1.0);
        // Regression: x explains y up to noise of a fixed pattern.
        let x: Vec<f64> = (0..1000).map(f64::from).collect();
        let y: Vec<f64> = x.iter().enumerate().map(|(i, v)| 2.0 * v + if i % 2 == 0 { 50.0 } else { -50.0 }).collect();
        let r = measure(Task::Regression, &y, &Sampled::Numbers(x));
        assert!(r.power > 0.95 && r.power < 1.0 && r.mutual_information > 1.0, "{r:?}");
        // Missing values are left out of the power and binned apart for the information.
        let mut x: Vec<f64> = (0..1000).map(f64::from).collect();
        x[..100].fill(f64::NAN);
        let m = measure(Task::Regression, &y, &Sampled::Numbers(x));
        assert!(m.power > 0.95, "{m:?}");
    }
}
