//! The models being served, one per pipeline, swapped atomically: a request holds the model it
//! started with, so a swap never fails a request. Also the conversion from named input columns
//! (as both OIP transports deliver them) to rows in the model's feature order, and the prediction
//! log, which never blocks a request: a bounded queue, and a count of what was dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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

/// A release in progress: the new model, how it is exposed, and both models' live figures
/// since it started.
pub struct Release {
    pub model: Arc<Served>,
    pub mode: ReleaseMode,
    /// Percent of requests the new model answers (canary) or sees mirrored (shadow).
    pub percent: f64,
    pub started_ms: i64,
    pub champion_stats: Arc<LiveStats>,
    pub candidate_stats: Arc<LiveStats>,
    /// This replica's predictions in the release, awaiting their labels.
    pub pending: Arc<PendingLabels>,
}

/// How a release meets traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseMode {
    Canary,
    Shadow,
}

impl ReleaseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canary => "canary",
            Self::Shadow => "shadow",
        }
    }
}

/// What one pipeline serves: the stable model, and a release when one runs.
pub struct Route {
    pub stable: Arc<Served>,
    pub release: Option<Release>,
}

/// The model chosen for one request, with where to record its figures, and the model to mirror
/// the request to (shadow).
pub struct Picked {
    pub model: Arc<Served>,
    pub stats: Option<Arc<LiveStats>>,
    pub shadow: Option<(Arc<Served>, Arc<LiveStats>)>,
    /// Where the release keeps predictions for their labels.
    pub pending: Option<Arc<PendingLabels>>,
}

/// Every served route, by pipeline; swapped whole, so a request keeps the models it started with.
#[derive(Default)]
pub struct Models {
    by_pipeline: RwLock<HashMap<String, Arc<Route>>>,
}

impl Models {
    /// The stable model serving `pipeline`.
    pub fn get(&self, pipeline: &str) -> Option<Arc<Served>> {
        self.route(pipeline).map(|r| r.stable.clone())
    }

    /// The route of `pipeline`.
    pub fn route(&self, pipeline: &str) -> Option<Arc<Route>> {
        self.by_pipeline.read().expect("lock is never poisoned: no panics while held").get(pipeline).cloned()
    }

    /// Serves `model` alone for its pipeline from now on; returns the route it replaced.
    pub fn swap(&self, model: Served) -> Option<Arc<Route>> {
        self.set(Route { stable: Arc::new(model), release: None })
    }

    /// Serves `route` for its pipeline from now on; returns the one it replaced.
    pub fn set(&self, route: Route) -> Option<Arc<Route>> {
        let mut map = self.by_pipeline.write().expect("lock is never poisoned: no panics while held");
        map.insert(route.stable.pipeline.clone(), Arc::new(route))
    }

    /// Stops serving `pipeline`.
    pub fn remove(&self, pipeline: &str) -> Option<Arc<Route>> {
        self.by_pipeline.write().expect("lock is never poisoned: no panics while held").remove(pipeline)
    }

    /// Stops serving `pipeline` if it serves `version`; returns whether it did.
    pub fn remove_version(&self, pipeline: &str, version: u64) -> bool {
        let mut map = self.by_pipeline.write().expect("lock is never poisoned: no panics while held");
        if map.get(pipeline).is_some_and(|m| m.stable.version == version) {
            map.remove(pipeline);
            return true;
        }
        false
    }

    /// Every served stable model, by pipeline name.
    pub fn all(&self) -> Vec<Arc<Served>> {
        self.routes().into_iter().map(|r| r.stable.clone()).collect()
    }

    /// Every route, by pipeline name.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        let mut v: Vec<_> =
            self.by_pipeline.read().expect("lock is never poisoned: no panics while held").values().cloned().collect();
        v.sort_by(|a, b| a.stable.pipeline.cmp(&b.stable.pipeline));
        v
    }

    /// Chooses the model for one request of `pipeline`; `version`, when given, must be one of
    /// the models served. During a canary the new model answers its percent of the requests;
    /// during a shadow release the stable model answers and the new one sees a mirror.
    pub fn pick(&self, pipeline: &str, version: Option<&str>) -> Result<Picked, String> {
        let route = self.route(pipeline).ok_or_else(|| format!("model `{pipeline}` is not served"))?;
        let release = route.release.as_ref();
        if let Some(v) = version.filter(|v| !v.is_empty()) {
            if v == route.stable.version.to_string() {
                let stats = release.map(|r| r.champion_stats.clone());
                let pending = release.map(|r| r.pending.clone());
                return Ok(Picked { model: route.stable.clone(), stats, shadow: None, pending });
            }
            if let Some(r) = release.filter(|r| v == r.model.version.to_string()) {
                return Ok(Picked {
                    model: r.model.clone(),
                    stats: Some(r.candidate_stats.clone()),
                    shadow: None,
                    pending: Some(r.pending.clone()),
                });
            }
            return Err(format!(
                "version {v} of model `{pipeline}` is not served (serving version {}{})",
                route.stable.version,
                release.map_or(String::new(), |r| format!(", {} {}", r.mode.as_str(), r.model.version))
            ));
        }
        let Some(r) = release else {
            return Ok(Picked { model: route.stable.clone(), stats: None, shadow: None, pending: None });
        };
        let chosen = rand_unit() * 100.0 < r.percent;
        let pending = Some(r.pending.clone());
        Ok(match (r.mode, chosen) {
            (ReleaseMode::Canary, true) => {
                Picked { model: r.model.clone(), stats: Some(r.candidate_stats.clone()), shadow: None, pending }
            }
            (ReleaseMode::Shadow, true) => Picked {
                model: route.stable.clone(),
                stats: Some(r.champion_stats.clone()),
                shadow: Some((r.model.clone(), r.candidate_stats.clone())),
                pending,
            },
            (_, false) => {
                Picked { model: route.stable.clone(), stats: Some(r.champion_stats.clone()), shadow: None, pending }
            }
        })
    }
}

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

/// One named input column, decoded from either transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Num(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Self::Num(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// Splits one 2-D input tensor of shape `[rows, features]` (row-major, one column per feature in
/// the model's order, as `GET /v2/models/{name}` lists them) into the named columns. Numbers
/// for categorical features are taken as their text; text for numeric features must parse.
/// `None` when the request is not one such tensor (named inputs are the usual form).
pub fn matrix_columns(
    models: &Models,
    pipeline: &str,
    inputs: &[(String, Vec<i64>, Column)],
) -> Option<Result<Vec<(String, Column)>, String>> {
    let [(name, shape, col)] = inputs else { return None };
    let model = models.get(pipeline)?;
    let features = &model.artifact.manifest.features;
    if shape.len() != 2 || features.iter().any(|f| &f.name == name) {
        return None;
    }
    let width = features.len();
    if shape[1] != width as i64 || shape[0] < 0 || shape[0] * shape[1] != col.len() as i64 {
        return Some(Err(format!(
            "input `{name}`: a 2-D tensor must be [rows, {width}] (one column per feature: {}) holding rows × {width} values; got shape {shape:?} with {} values",
            features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
            col.len()
        )));
    }
    let rows = shape[0] as usize;
    let out = features
        .iter()
        .enumerate()
        .map(|(j, f)| {
            let at = (0..rows).map(move |i| i * width + j);
            let column = match (f.kind, col) {
                (FeatureKind::Numeric, Column::Num(v)) => Column::Num(at.map(|k| v[k]).collect()),
                (FeatureKind::Categorical, Column::Num(v)) => {
                    Column::Str(at.map(|k| v[k].map(|x| x.to_string())).collect())
                }
                (FeatureKind::Categorical, Column::Str(v)) => Column::Str(at.map(|k| v[k].clone()).collect()),
                (FeatureKind::Numeric, Column::Str(v)) => Column::Num(
                    at.map(|k| match v[k].as_deref().map(str::trim) {
                        None | Some("") => Ok(None),
                        Some(text) => text
                            .parse()
                            .map(Some)
                            .map_err(|_| format!("input `{name}` column {j} (`{}`): {text:?} is not a number", f.name)),
                    })
                    .collect::<Result<_, _>>()?,
                ),
            };
            Ok((f.name.clone(), column))
        })
        .collect();
    Some(out)
}

/// Answers one request of `pipeline` (at `version` when given): picks the model, lays `inputs`
/// out for it, scores, records the release figures, and mirrors the request in a shadow release.
/// Errors are (not found, message) or (bad request, message).
pub fn infer(
    models: &Models,
    log: &PredictionLog,
    pipeline: &str,
    version: Option<&str>,
    inputs: Vec<(String, Column)>,
) -> Result<(Arc<Served>, Scored), (bool, String)> {
    let picked = models.pick(pipeline, version).map_err(|e| (true, e))?;
    let mirrored = picked.shadow.as_ref().map(|_| inputs.clone());
    let laid_out = rows(&picked.model.artifact, inputs).map_err(|e| (false, e))?;
    let started = std::time::Instant::now();
    let scored = score(&picked.model, &laid_out, Some(log));
    if let Some(stats) = &picked.stats {
        stats.record(started.elapsed(), &scored.scores, picked.model.is_classifier());
    }
    let mut mirror = None;
    if let (Some((shadow, stats)), Some(inputs)) = (&picked.shadow, mirrored) {
        // The mirror is judged, never returned or logged; inputs it cannot take count as errors.
        let started = std::time::Instant::now();
        match rows(&shadow.artifact, inputs) {
            Ok(r) => {
                let s = score(shadow, &r, None);
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
        let t = &self.model.artifact.manifest.target;
        let truth = t.read_label(label)?;
        Some(match t.task {
            // The rule the served label follows (`Artifact::predict_vector`).
            Task::BinaryClassification => f64::from(u8::from((self.score >= 0.5) != (truth == 1.0))),
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

    fn insert(&self, id: String, answers: Vec<Answer>) {
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

impl Served {
    pub fn is_classifier(&self) -> bool {
        self.artifact.manifest.target.task == Task::BinaryClassification
    }
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

/// Scores `rows` with `model` and, given a log, queues the sampled prediction logs.
pub fn score(model: &Served, rows: &[Vec<Value>], log: Option<&PredictionLog>) -> Scored {
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
    out
}

fn rand_unit() -> f64 {
    // A v4 uuid is 122 random bits; bytes 6 and 8 hold the version and variant, so leave them out.
    let b = *uuid::Uuid::new_v4().as_bytes();
    let bits = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[7], b[9]]);
    (bits >> 11) as f64 / (1u64 << 53) as f64
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

#[cfg(test)]
mod tests {
    #[test]
    fn rand_unit_covers_the_unit_interval_evenly() {
        let mut bins = [0u32; 10];
        for _ in 0..20_000 {
            let u = super::rand_unit();
            assert!((0.0..1.0).contains(&u));
            bins[(u * 10.0) as usize] += 1;
        }
        // 2,000 expected per bin; a fair generator stays well within ±300.
        assert!(bins.iter().all(|&c| (1_700..2_300).contains(&c)), "{bins:?}");
    }
}
