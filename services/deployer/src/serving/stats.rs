//! A model's live figures during a release: requests, failed predictions, latency and predicted
//! probability histograms, and the losses of labelled predictions. Counters on the request path,
//! so recording never blocks; snapshots are what replicas share and sum.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets: upper bounds growing by a quarter from 1 µs (the last one catches the rest).
const LATENCY_BUCKETS: usize = 64;
/// Bins of predicted probabilities (classification).
pub const SCORE_BINS: usize = 10;

/// One model's live figures in a release: requests, failed predictions (not a finite number),
/// latency and predicted-probability histograms. Counters only, so recording never blocks.
pub struct LiveStats {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
    scores: [AtomicU64; SCORE_BINS],
    /// Losses of labelled predictions: count, sum, sum of squares. Labels arrive off the request
    /// path, so a lock costs no request anything.
    labelled: Mutex<(u64, f64, f64)>,
}

impl Default for LiveStats {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            scores: std::array::from_fn(|_| AtomicU64::new(0)),
            labelled: Mutex::new((0, 0.0, 0.0)),
        }
    }
}

/// The upper bound of latency bucket `i`, in seconds.
pub fn latency_bound(i: usize) -> f64 {
    1e-6 * 1.25f64.powi(i as i32)
}

impl LiveStats {
    /// Records one request that took `elapsed` and predicted `scores`.
    pub fn record(&self, elapsed: std::time::Duration, scores: &[f64], classifier: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if scores.iter().any(|s| !s.is_finite()) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = (0..LATENCY_BUCKETS - 1).find(|&i| secs <= latency_bound(i)).unwrap_or(LATENCY_BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        if classifier {
            for s in scores.iter().filter(|s| s.is_finite()) {
                let bin = ((s.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
                self.scores[bin].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records the loss of one labelled prediction: 0 or 1 for a class, the absolute error for
    /// a value.
    pub fn record_label(&self, loss: f64) {
        let mut l = self.labelled.lock().expect("lock is never poisoned: no panics while held");
        l.0 += 1;
        l.1 += loss;
        l.2 += loss * loss;
    }

    /// The figures so far.
    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (labelled, loss_sum, loss_squares) =
            *self.labelled.lock().expect("lock is never poisoned: no panics while held");
        Snapshot {
            requests: load(&self.requests),
            errors: load(&self.errors),
            latency: self.latency.iter().map(load).collect(),
            scores: self.scores.iter().map(load).collect(),
            labelled,
            loss_sum,
            loss_squares,
        }
    }
}

/// [`LiveStats`] as numbers, summed over replicas.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub requests: u64,
    pub errors: u64,
    pub latency: Vec<u64>,
    pub scores: Vec<u64>,
    /// Predictions whose label arrived, and the sum and sum of squares of their losses.
    #[serde(default)]
    pub labelled: u64,
    #[serde(default)]
    pub loss_sum: f64,
    #[serde(default)]
    pub loss_squares: f64,
}

/// Adds histogram `theirs` into `mine`, bin by bin, growing `mine` to fit.
fn add_bins(mine: &mut Vec<u64>, theirs: &[u64]) {
    if mine.len() < theirs.len() {
        mine.resize(theirs.len(), 0);
    }
    for (m, t) in mine.iter_mut().zip(theirs) {
        *m += t;
    }
}

impl Snapshot {
    /// Adds another replica's figures.
    pub fn merge(&mut self, other: &Snapshot) {
        self.requests += other.requests;
        self.errors += other.errors;
        add_bins(&mut self.latency, &other.latency);
        add_bins(&mut self.scores, &other.scores);
        self.labelled += other.labelled;
        self.loss_sum += other.loss_sum;
        self.loss_squares += other.loss_squares;
    }

    /// The mean loss of the labelled predictions (error rate, or mean absolute error).
    pub fn mean_loss(&self) -> f64 {
        if self.labelled == 0 { 0.0 } else { self.loss_sum / self.labelled as f64 }
    }

    /// Failed predictions per request.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }

    /// The 99th percentile latency in seconds (the upper bound of its bucket).
    pub fn p99(&self) -> f64 {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.latency.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return latency_bound(i);
            }
        }
        latency_bound(self.latency.len().saturating_sub(1))
    }
}

/// A snapshot of `requests` requests, `errors` of them failed, every one in latency bucket
/// `latency_bucket`, with the score histogram `scores`: what the release tests judge.
#[cfg(test)]
pub(crate) fn snap(requests: u64, errors: u64, latency_bucket: usize, scores: &[u64]) -> Snapshot {
    let mut latency = vec![0; 64];
    latency[latency_bucket] = requests;
    Snapshot { requests, errors, latency, scores: scores.to_vec(), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_merge_and_give_a_p99() {
        let mut a = snap(99, 1, 10, &[1, 2]);
        a.merge(&snap(1, 0, 40, &[3, 4, 5]));
        assert_eq!((a.requests, a.errors, a.scores.clone()), (100, 1, vec![4, 6, 5]));
        assert_eq!(a.p99(), latency_bound(10));
        a.merge(&snap(10, 0, 40, &[]));
        assert_eq!(a.p99(), latency_bound(40));
        assert!((a.error_rate() - 1.0 / 110.0).abs() < 1e-12);
    }
}
