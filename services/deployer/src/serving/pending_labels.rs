//! Answers awaiting their labels: during a release each replica keeps the predictions it made,
//! both models' answers for a mirrored row, until `labels.arrived` names them (`labels.rs`) and
//! their losses count in the release's figures. Bounded: the oldest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use mlops_shared::spec::Task;

use super::models::Served;
use super::stats::LiveStats;

/// One model's answer to a request in a release, kept until its label arrives.
pub struct Answer {
    pub model: Arc<Served>,
    pub stats: Arc<LiveStats>,
    pub score: f64,
}

impl Answer {
    /// The loss of this answer against `label`: 0 or 1 for a class (the model's own threshold
    /// decides), the absolute error for a value; `None` for a label the model cannot read.
    pub fn loss(&self, label: &str) -> Option<f64> {
        let manifest = self.model.artifact.manifest();
        let t = &manifest.target;
        let truth = t.read_label(label)?;
        Some(match t.task {
            // The rule the served label follows (`Prediction::of`).
            Task::BinaryClassification => f64::from(u8::from((self.score >= manifest.threshold()) != (truth == 1.0))),
            Task::Regression => (self.score - truth).abs(),
        })
    }
}

/// Predictions made during a release, by prediction id, until their labels arrive. Bounded: only
/// the last `capacity` predictions wait (a label for an older one is not counted).
pub struct PendingLabels {
    capacity: usize,
    inner: Mutex<Waiting>,
}

/// The answers by prediction id, and the ids in the order they were made.
type Waiting = (HashMap<String, Vec<Answer>>, VecDeque<String>);

impl PendingLabels {
    /// Room for `capacity` predictions.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    /// Keeps `answers` under `id`, forgetting the oldest when full.
    pub(crate) fn insert(&self, id: String, answers: Vec<Answer>) {
        let mut guard = self.inner.lock().expect("lock is never poisoned: no panics while held");
        let (map, order) = &mut *guard;
        while order.len() >= self.capacity {
            let Some(old) = order.pop_front() else { break };
            map.remove(&old);
        }
        order.push_back(id.clone());
        map.insert(id, answers);
    }

    /// The answers made under `id`, taken (a label counts once).
    pub fn take(&self, id: &str) -> Option<Vec<Answer>> {
        // The id keeps its place in the order queue until it ages out; finding it there is O(n).
        self.inner.lock().expect("lock is never poisoned: no panics while held").0.remove(id)
    }
}
