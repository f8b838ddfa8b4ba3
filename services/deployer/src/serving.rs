//! The models being served, one per pipeline, swapped atomically: a request holds the model it
//! started with, so a swap never fails a request. Also the conversion from named input columns
//! (as both OIP transports deliver them) to rows in the model's feature order, and the prediction
//! log, which never blocks a request: a bounded queue, and a count of what was dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mlops_proto as pb;
use mlops_shared::ids::Sha256;
use mlops_shared::model::Artifact;
use mlops_shared::spec::{FeatureKind, Task};
use mlops_shared::table::Value;
use tokio::sync::mpsc;

/// A model in service.
pub struct Served {
    pub pipeline: String,
    pub version: u64,
    pub sha: Sha256,
    pub artifact: Artifact,
    pub since_unix_ms: i64,
    pub predictions: AtomicU64,
    /// Share of predictions logged for monitoring.
    pub log_sample: f64,
}

/// Every served model, by pipeline.
#[derive(Default)]
pub struct Models {
    by_pipeline: RwLock<HashMap<String, Arc<Served>>>,
}

impl Models {
    /// The model serving `pipeline`.
    pub fn get(&self, pipeline: &str) -> Option<Arc<Served>> {
        self.by_pipeline.read().expect("lock is never poisoned: no panics while held").get(pipeline).cloned()
    }

    /// Serves `model` for its pipeline from now on; returns the one it replaced.
    pub fn swap(&self, model: Served) -> Option<Arc<Served>> {
        let mut map = self.by_pipeline.write().expect("lock is never poisoned: no panics while held");
        map.insert(model.pipeline.clone(), Arc::new(model))
    }

    /// Stops serving `pipeline` if it serves `version`; returns whether it did.
    pub fn remove_version(&self, pipeline: &str, version: u64) -> bool {
        let mut map = self.by_pipeline.write().expect("lock is never poisoned: no panics while held");
        if map.get(pipeline).is_some_and(|m| m.version == version) {
            map.remove(pipeline);
            return true;
        }
        false
    }

    /// Every served model, by pipeline name.
    pub fn all(&self) -> Vec<Arc<Served>> {
        let mut v: Vec<_> =
            self.by_pipeline.read().expect("lock is never poisoned: no panics while held").values().cloned().collect();
        v.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        v
    }
}

/// One named input column, decoded from either transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Num(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Self::Num(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }
}

/// Lays named `inputs` out as rows in the model's feature order. Errors name the input.
pub fn rows(artifact: &Artifact, inputs: Vec<(String, Column)>) -> Result<Vec<Vec<Value>>, String> {
    let mut by_name: HashMap<String, Column> = HashMap::with_capacity(inputs.len());
    let mut n: Option<usize> = None;
    for (name, col) in inputs {
        if artifact.manifest.features.iter().all(|f| f.name != name) {
            let known: Vec<&str> = artifact.manifest.features.iter().map(|f| f.name.as_str()).collect();
            return Err(format!("unknown input `{name}` (the model's inputs: {})", known.join(", ")));
        }
        match n {
            None => n = Some(col.len()),
            Some(len) if len != col.len() => {
                return Err(format!("input `{name}` has {} values where another input has {len}", col.len()));
            }
            _ => {}
        }
        if by_name.insert(name.clone(), col).is_some() {
            return Err(format!("input `{name}` is given twice"));
        }
    }
    let n = n.ok_or("the request has no inputs")?;
    let mut out = vec![Vec::with_capacity(artifact.manifest.features.len()); n];
    for f in &artifact.manifest.features {
        let col = by_name.remove(&f.name).ok_or_else(|| format!("input `{}` is missing", f.name))?;
        match (f.kind, col) {
            (FeatureKind::Numeric, Column::Num(v)) => {
                for (row, x) in out.iter_mut().zip(v) {
                    row.push(x.map_or(Value::Missing, Value::Num));
                }
            }
            (FeatureKind::Categorical, Column::Str(v)) => {
                for (row, x) in out.iter_mut().zip(v) {
                    row.push(x.map_or(Value::Missing, Value::Cat));
                }
            }
            (FeatureKind::Numeric, Column::Str(_)) => {
                return Err(format!("input `{}` must be numeric (FP32, FP64, INT64)", f.name));
            }
            (FeatureKind::Categorical, Column::Num(_)) => {
                return Err(format!("input `{}` must be BYTES (strings)", f.name));
            }
        }
    }
    Ok(out)
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
    match model.artifact.manifest.target.task {
        Task::BinaryClassification => &[("probability", "FP64"), ("label", "BYTES"), ("prediction_id", "BYTES")],
        Task::Regression => &[("prediction", "FP64"), ("prediction_id", "BYTES")],
    }
}

/// Scores `rows` with `model` and queues the sampled prediction logs.
pub fn score(model: &Served, rows: &[Vec<Value>], log: &PredictionLog) -> Scored {
    let t = &model.artifact.manifest.target;
    let classifier = t.task == Task::BinaryClassification;
    let mut out = Scored {
        scores: Vec::with_capacity(rows.len()),
        labels: Vec::with_capacity(if classifier { rows.len() } else { 0 }),
        ids: Vec::with_capacity(rows.len()),
        scores_name: outputs(model)[0].0,
    };
    for row in rows {
        let p = model.artifact.predict(row);
        let id = uuid::Uuid::new_v4().to_string();
        let label = match (classifier, p.positive) {
            (false, _) => "",
            (true, true) => t.positive.as_str(),
            (true, false) => t.negative.as_str(),
        };
        if model.log_sample >= 1.0 || (model.log_sample > 0.0 && rand_unit() < model.log_sample) {
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
    out
}

fn rand_unit() -> f64 {
    // The low bits of a v4 uuid are random; sampling needs nothing stronger.
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

/// The sending side of the prediction log queue.
#[derive(Clone)]
pub struct PredictionLog {
    tx: mpsc::Sender<pb::PredictionLogged>,
}

impl PredictionLog {
    /// A queue holding at most `capacity` logs.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<pb::PredictionLogged>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    fn offer(&self, model: &Served, row: &[Value], score: f64, label: &str, id: &str) {
        let mut numeric = HashMap::new();
        let mut categorical = HashMap::new();
        for (f, v) in model.artifact.manifest.features.iter().zip(row) {
            match v {
                Value::Num(x) => {
                    numeric.insert(f.name.clone(), *x);
                }
                Value::Cat(c) => {
                    categorical.insert(f.name.clone(), c.clone());
                }
                Value::Missing => {}
            }
        }
        let log = pb::PredictionLogged {
            pipeline: model.pipeline.clone(),
            prediction_id: id.to_owned(),
            version: model.version,
            artifact_sha256: model.sha.to_string(),
            numeric,
            categorical,
            score,
            label: label.to_owned(),
            time_unix_ms: mlops_shared::now_unix_ms(),
        };
        if self.tx.try_send(log).is_err() {
            metrics::counter!("mlops_prediction_log_dropped_total").increment(1);
        }
    }
}
