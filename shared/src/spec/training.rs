//! The `training` section: the algorithm and its hyper-parameters, the holdout, the data window,
//! what starts a run, and the hyper-parameter search.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::code::{CodeSpec, EnvironmentSpec, MAX_MEMORY_MB, MAX_TIMEOUT_SECS};
use super::{Origin, SpecError, Task, bad};

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Hyper-parameters by name; each algorithm documents the ones it reads.
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// Share of rows held out for evaluation, in (0, 1).
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Which accepted training versions a run trains on (the newest one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    /// What starts a run besides a manual request (new data, drift and degradation alerts, at
    /// once, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<TriggerSpec>,
    /// Hyper-parameter candidates tried on validation rows before the final fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSpec>,
    /// The team's own training program, run instead of `algorithm`; its params may have any
    /// names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSpec>,
    /// The environment the program runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentSpec>,
    /// How long one run of the program may take before it is killed (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// The most memory (address space) the program may take, in MiB (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::default(),
            params: BTreeMap::new(),
            holdout: default_holdout(),
            seed: default_seed(),
            window: None,
            triggers: None,
            search: None,
            code: None,
            environment: None,
            timeout_secs: None,
            memory_mb: None,
        }
    }
}

impl TrainingSpec {
    /// Checks that `training.algorithm` learns `task` (a code step learns what its program does).
    pub(super) fn check_algorithm(&self, task: Task) -> Result<(), SpecError> {
        if self.code.is_none() && !self.algorithm.supports(task) {
            return bad(format!(
                "`training.algorithm` {} does not learn {} (`target.task`)",
                self.algorithm.as_str(),
                task.as_str()
            ));
        }
        Ok(())
    }

    /// Checks the window, the holdout, the parameters, the triggers and the search, for `task`.
    pub(super) fn check(&self, task: Task) -> Result<(), SpecError> {
        if let Some(w) = &self.window {
            w.check()?;
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return bad(format!("`training.holdout` must be in (0, 1), got {}", self.holdout));
        }
        let algorithm = self.code.is_none().then_some(self.algorithm);
        for (k, v) in &self.params {
            check_param(algorithm, &format!("training.params.{k}"), k, *v).map_err(SpecError::Invalid)?;
        }
        if let Some(t) = &self.triggers {
            t.check()?;
        }
        if let Some(search) = &self.search {
            search.check(algorithm, task)?;
        }
        self.check_code()
    }

    /// Checks the code step: its program, its environment and its limits, which only a code
    /// step may have.
    fn check_code(&self) -> Result<(), SpecError> {
        let Some(code) = &self.code else {
            for (key, set) in [
                ("environment", self.environment.is_some()),
                ("timeout_secs", self.timeout_secs.is_some()),
                ("memory_mb", self.memory_mb.is_some()),
            ] {
                if set {
                    return bad(format!("`training.{key}` needs `training.code` (a training program to run)"));
                }
            }
            return Ok(());
        };
        code.check()?;
        let requirements =
            self.environment.as_ref().and_then(|e| e.python.as_ref()).and_then(|p| p.requirements.as_ref());
        if let Some(r) = requirements
            && code.in_bundle(r).is_none()
        {
            return bad(format!(
                "`training.environment.python.requirements` {r:?} is not inside `training.code.path` {:?}: \
                 the bundle holds only that directory",
                code.path
            ));
        }
        if self.timeout_secs == Some(0) {
            return bad("`training.timeout_secs` must be at least 1".into());
        }
        if self.timeout_secs.is_some_and(|t| t > MAX_TIMEOUT_SECS) {
            return bad(format!("`training.timeout_secs` must be at most {MAX_TIMEOUT_SECS} (30 days)"));
        }
        if self.memory_mb.is_some_and(|m| m < 64) {
            return bad("`training.memory_mb` must be at least 64".into());
        }
        if self.memory_mb.is_some_and(|m| m > MAX_MEMORY_MB) {
            return bad(format!("`training.memory_mb` must be at most {MAX_MEMORY_MB}"));
        }
        Ok(())
    }
}

/// What starts a training run, and how bursts are tamed. A manual request (`mlops train`) and a
/// schedule slot always start a run at once; the automatic triggers wait for the debounce window
/// and the cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The events that start a run (default: all three).
    #[serde(default = "all_trigger_events")]
    pub on: Vec<TriggerEvent>,
    /// New data waits this long after the first new version for more, then one run trains on
    /// all of it: a hundred small batches inside the window make one run.
    #[serde(default)]
    pub debounce_secs: f64,
    /// After a run is queued, automatic triggers wait until this long has passed.
    #[serde(default)]
    pub cooldown_secs: f64,
    /// A cron expression in UTC: five fields (minute granularity), or six with seconds first;
    /// also `@hourly`, `@daily` and the like. Each slot queues a run on the training window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

impl Default for TriggerSpec {
    fn default() -> Self {
        Self { on: all_trigger_events(), debounce_secs: 0.0, cooldown_secs: 0.0, schedule: None }
    }
}

impl TriggerSpec {
    /// Whether `event` starts runs.
    pub fn fires_on(&self, event: TriggerEvent) -> bool {
        self.on.contains(&event)
    }

    /// The parsed schedule, if any.
    pub fn cron(&self) -> Option<Result<croner::Cron, String>> {
        self.schedule.as_deref().map(|s| {
            s.parse::<croner::Cron>()
                .map_err(|e| format!("`training.triggers.schedule` {s:?} is not a cron expression: {e}"))
        })
    }

    /// Checks the debounce window, the cooldown and the schedule.
    fn check(&self) -> Result<(), SpecError> {
        for (key, secs) in [("debounce_secs", self.debounce_secs), ("cooldown_secs", self.cooldown_secs)] {
            if !(secs.is_finite() && (0.0..=30.0 * 86_400.0).contains(&secs)) {
                return bad(format!("`training.triggers.{key}` must be in [0, 2592000] seconds, got {secs}"));
            }
        }
        if let Some(Err(e)) = self.cron() {
            return bad(e);
        }
        Ok(())
    }
}

/// An event that may start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEvent {
    /// A training version passed validation.
    NewData,
    /// The monitor raised a drift alert.
    Drift,
    /// The monitor found label-based quality under its floor.
    Degradation,
    /// A spec (or code bundle) whose model-shaping parts changed was applied.
    SpecChanged,
    /// Data the last model was trained on was erased (`mlops data erase`): retrain on the window
    /// without it once the versions written in its place are accepted.
    Erasure,
}

fn all_trigger_events() -> Vec<TriggerEvent> {
    vec![
        TriggerEvent::NewData,
        TriggerEvent::Drift,
        TriggerEvent::Degradation,
        TriggerEvent::SpecChanged,
        TriggerEvent::Erasure,
    ]
}

/// Hyper-parameter search: every combination of the listed values (a grid) is trained on part of
/// the training rows and scored on the rest; the best is refitted on all training rows. Every
/// candidate and its score is kept in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// Values to try, by parameter name; the other parameters come from `training.params`.
    pub params: BTreeMap<String, Vec<f64>>,
    /// k-fold cross-validation with this many folds; absent, one validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<u32>,
    /// The share of training rows held for validation when there are no folds.
    #[serde(default = "default_validation_share")]
    pub validation: f64,
    /// The metric that ranks candidates: one of the task's (`roc_auc` by default for
    /// classification, `rmse` for regression); lower is better for losses and errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// The largest grid a search may hold.
pub const MAX_CANDIDATES: usize = 256;

fn default_validation_share() -> f64 {
    0.2
}

impl SearchSpec {
    /// Every candidate: the grid's combinations in a fixed order (the last parameter varies
    /// fastest), each merged over `base`.
    pub fn candidates(&self, base: &BTreeMap<String, f64>) -> Vec<BTreeMap<String, f64>> {
        let mut out = vec![base.clone()];
        for (name, values) in &self.params {
            out = out
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(name.clone(), *v);
                        c
                    })
                })
                .collect();
        }
        out
    }

    /// The metric that ranks candidates for `task`, and whether higher is better.
    pub fn ranking(&self, task: Task) -> (&str, bool) {
        let metric = self.metric.as_deref().unwrap_or(task.default_metric());
        (metric, task.higher_is_better(metric).unwrap_or(true))
    }

    /// Checks the grid (each value for `algorithm`, any finite number for a code step, and its
    /// size), the folds, the validation share and the metric (one of `task`'s).
    fn check(&self, algorithm: Option<Algorithm>, task: Task) -> Result<(), SpecError> {
        if self.params.is_empty() {
            return bad("`training.search.params` lists no parameter to search".into());
        }
        for (k, values) in &self.params {
            if values.is_empty() {
                return bad(format!("`training.search.params.{k}` lists no value"));
            }
            for v in values {
                check_param(algorithm, &format!("training.search.params.{k}"), k, *v).map_err(SpecError::Invalid)?;
            }
        }
        let n: usize = self.params.values().map(Vec::len).product();
        if n > MAX_CANDIDATES {
            return bad(format!("`training.search` makes {n} candidates; at most {MAX_CANDIDATES} are allowed"));
        }
        if self.folds.is_some_and(|k| !(2..=20).contains(&k)) {
            return bad("`training.search.folds` must be in [2, 20]".into());
        }
        if !(self.validation > 0.0 && self.validation < 1.0) {
            return bad(format!("`training.search.validation` must be in (0, 1), got {}", self.validation));
        }
        if let Some(metric) = &self.metric
            && task.higher_is_better(metric).is_none()
        {
            return bad(format!(
                "`training.search.metric` `{metric}` is not a {} metric (known: {})",
                task.as_str(),
                task.metric_names()
            ));
        }
        Ok(())
    }
}

/// Checks one hyper-parameter value, found at `at` in the spec: one of `algorithm`'s, or for a
/// code step (no algorithm) any finite number.
fn check_param(algorithm: Option<Algorithm>, at: &str, name: &str, v: f64) -> Result<(), String> {
    match algorithm {
        Some(a) => a.check_param(at, name, v),
        None if v.is_finite() => Ok(()),
        None => Err(format!("`{at}` must be a finite number")),
    }
}

/// One accepted training version, as training windows choose among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "AcceptedWire", into = "AcceptedWire")]
pub struct Accepted {
    pub id: String,
    /// When its content first arrived (Unix ms).
    pub arrived_ms: i64,
    pub origin: Origin,
}

impl Accepted {
    pub fn new(id: impl Into<String>, arrived_ms: i64, origin: Origin) -> Self {
        Self { id: id.into(), arrived_ms, origin }
    }
}

/// How a history entry is kept: `[id, ms, origin]`, or `[id, ms]` as written before origins.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AcceptedWire {
    Now(String, i64, Origin),
    Before(String, i64),
}

impl From<AcceptedWire> for Accepted {
    fn from(w: AcceptedWire) -> Self {
        match w {
            AcceptedWire::Now(id, ms, origin) => Self::new(id, ms, origin),
            AcceptedWire::Before(id, ms) => Self::new(id, ms, Origin::Upload),
        }
    }
}

impl From<Accepted> for AcceptedWire {
    fn from(a: Accepted) -> Self {
        Self::Now(a.id, a.arrived_ms, a.origin)
    }
}

/// The data a run trains on: one window, or the union of several (`[{sources: [upload],
/// versions: 1}, {sources: [feedback], days: 30}]`: the curated base set and a month of
/// production truth).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WindowSpec {
    One(TrainingWindow),
    Union(Vec<TrainingWindow>),
}

impl<'de> Deserialize<'de> for WindowSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WindowSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a window (`{versions: N}`, `{days: D}`, `{sources: [...], ...}`) or a list of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<WindowSpec, A::Error> {
                TrainingWindow::deserialize(MapAccessDeserializer::new(map)).map(WindowSpec::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<WindowSpec, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(WindowSpec::Union)
            }
        }
        d.deserialize_any(V)
    }
}

impl WindowSpec {
    /// The windows whose union it is.
    pub fn parts(&self) -> &[TrainingWindow] {
        match self {
            Self::One(w) => std::slice::from_ref(w),
            Self::Union(ws) => ws,
        }
    }

    /// The ids to train on from `history` (oldest first) at `now_ms`, oldest first: every version
    /// one of the windows selects. No window: the newest version.
    pub fn select(window: Option<&Self>, history: &[Accepted], now_ms: i64) -> Vec<String> {
        let Some(window) = window else {
            return history.last().map(|a| vec![a.id.clone()]).unwrap_or_default();
        };
        let mut chosen = vec![false; history.len()];
        for part in window.parts() {
            part.mark(history, now_ms, &mut chosen);
        }
        history.iter().zip(chosen).filter(|(_, c)| *c).map(|(a, _)| a.id.clone()).collect()
    }

    /// Checks each window, and that a union holds at least one.
    fn check(&self) -> Result<(), SpecError> {
        if self.parts().is_empty() {
            return bad("`training.window` is an empty list; give at least one window".into());
        }
        self.parts().iter().try_for_each(TrainingWindow::check)
    }
}

/// One training window: among the accepted versions from `sources` (every origin when absent),
/// the newest `versions`, or every version accepted in the last `days` days (the newest always
/// included); with both, whichever holds fewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Origin>,
}

impl TrainingWindow {
    /// Marks in `chosen` the entries of `history` this window selects at `now_ms`.
    fn mark(&self, history: &[Accepted], now_ms: i64, chosen: &mut [bool]) {
        let from_sources: Vec<usize> = (0..history.len())
            .filter(|&i| self.sources.is_empty() || self.sources.contains(&history[i].origin))
            .collect();
        let Some(newest) = from_sources.len().checked_sub(1) else { return };
        let mut from = 0;
        if let Some(n) = self.versions {
            from = from.max(from_sources.len().saturating_sub(n.max(1) as usize));
        }
        if let Some(days) = self.days {
            let since = now_ms - (days * 86_400_000.0) as i64;
            let first_recent = from_sources.iter().position(|&i| history[i].arrived_ms >= since).unwrap_or(newest);
            from = from.max(first_recent.min(newest));
        }
        for &i in &from_sources[from..] {
            chosen[i] = true;
        }
    }

    /// Checks that the window says what it holds, and that it holds something.
    fn check(&self) -> Result<(), SpecError> {
        if self.versions.is_none() && self.days.is_none() {
            return bad("`training.window` needs `versions` or `days`".into());
        }
        if self.versions == Some(0) {
            return bad("`training.window.versions` must be at least 1".into());
        }
        if self.days.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
            return bad("`training.window.days` must be a positive number".into());
        }
        Ok(())
    }
}

fn default_holdout() -> f64 {
    0.2
}
fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// L2-regularised logistic regression. Params: `l2` (default 1.0), `max_iter` (default 50),
    /// `tol` (default 1e-8).
    #[default]
    LogisticRegression,
    /// Gradient-boosted decision trees — on the log-odds for classification, on the value (squared
    /// error) for regression — grown leaf by leaf over histogram bins (as LightGBM does). Params:
    /// `trees` (100), `learning_rate` (0.1), `num_leaves` (31), `max_depth` (0: unlimited),
    /// `min_data_in_leaf` (20), `l2` (0), `max_bins` (255).
    GradientBoosting,
    /// Least squares with an optional L2 penalty on the weights (ridge; the intercept is not
    /// penalised), for regression. Params: `l2` (0: ordinary least squares).
    LinearRegression,
}

impl Algorithm {
    /// The name used in artifacts and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogisticRegression => "logistic_regression",
            Self::GradientBoosting => "gradient_boosting",
            Self::LinearRegression => "linear_regression",
        }
    }

    /// Whether it learns `task`.
    pub fn supports(self, task: Task) -> bool {
        match self {
            Self::LogisticRegression => task == Task::BinaryClassification,
            Self::LinearRegression => task == Task::Regression,
            Self::GradientBoosting => true,
        }
    }

    fn known_params(self) -> &'static [&'static str] {
        match self {
            Self::LogisticRegression => &["l2", "max_iter", "tol"],
            Self::GradientBoosting => {
                &["trees", "learning_rate", "num_leaves", "max_depth", "min_data_in_leaf", "l2", "max_bins"]
            }
            Self::LinearRegression => &["l2"],
        }
    }

    /// Checks one hyper-parameter value, found at `at` in the spec.
    fn check_param(self, at: &str, name: &str, v: f64) -> Result<(), String> {
        let known = self.known_params();
        if !known.contains(&name) {
            return Err(format!("`{at}` is not a parameter of {} (known: {})", self.as_str(), known.join(", ")));
        }
        if !v.is_finite() || v < 0.0 {
            return Err(format!("`{at}` must be a finite non-negative number"));
        }
        if let Some((_, lo, hi)) = self.integer_params().iter().find(|(n, _, _)| *n == name)
            && (v.fract() != 0.0 || v < *lo || v > *hi)
        {
            return Err(format!("`{at}` must be a whole number in [{lo}, {hi}], got {v}"));
        }
        if name == "learning_rate" && !(v > 0.0 && v <= 1.0) {
            return Err(format!("`{at}` must be in (0, 1], got {v}"));
        }
        Ok(())
    }

    /// The parameters that must be whole numbers, with their smallest and largest values.
    fn integer_params(self) -> &'static [(&'static str, f64, f64)] {
        match self {
            Self::LogisticRegression => &[("max_iter", 1.0, 10_000.0)],
            Self::LinearRegression => &[],
            Self::GradientBoosting => &[
                ("trees", 1.0, 100_000.0),
                ("num_leaves", 2.0, 65_536.0),
                ("max_depth", 0.0, 64.0),
                ("min_data_in_leaf", 1.0, 1e9),
                ("max_bins", 2.0, 256.0),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PipelineSpec;
    use crate::spec::tests::SPEC;

    #[test]
    fn training_windows_select_the_newest_versions_or_the_recent_ones() {
        let day = 86_400_000;
        let history: Vec<Accepted> = (0..5).map(|i| Accepted::new(format!("d{i}"), i * day, Origin::Upload)).collect();
        let ids = |w: Option<TrainingWindow>, now| WindowSpec::select(w.map(WindowSpec::One).as_ref(), &history, now);
        let w = |versions, days| TrainingWindow { versions, days, sources: Vec::new() };
        assert_eq!(ids(None, 10 * day), ["d4"]);
        assert_eq!(ids(Some(w(Some(2), None)), 0), ["d3", "d4"]);
        assert_eq!(ids(Some(w(Some(9), None)), 0).len(), 5);
        assert_eq!(ids(Some(w(None, Some(1.5))), 4 * day), ["d3", "d4"]);
        // Nothing recent: the newest version still.
        assert_eq!(ids(Some(w(None, Some(1.0))), 40 * day), ["d4"]);
        assert_eq!(ids(Some(w(Some(1), Some(30.0))), 4 * day), ["d4"]);
        assert!(WindowSpec::select(None, &[], 0).is_empty());
        let err =
            |w: &str| PipelineSpec::from_yaml(&format!("{SPEC}training: {{window: {w}}}\n")).unwrap_err().to_string();
        assert!(err("{}").contains("needs `versions` or `days`"));
        assert!(err("{versions: 0}").contains("at least 1"));
        assert!(err("{days: -1}").contains("positive"));
        assert!(err("[]").contains("empty list"));
        assert!(err("[{versions: 1}, {days: 0}]").contains("positive"));
        assert!(
            err("{versions: 1, sources: [lake]}").contains("unknown variant `lake`"),
            "{}",
            err("{versions: 1, sources: [lake]}")
        );
        assert!(err("{versions: 1, source: [upload]}").contains("unknown field `source`"));
    }

    #[test]
    fn windows_select_by_origin_and_unite() {
        let day = 86_400_000;
        let (u, f) = (Origin::Upload, Origin::Feedback);
        let history = [
            Accepted::new("base1", 0, u),
            Accepted::new("base2", day, u),
            Accepted::new("fb1", 2 * day, f),
            Accepted::new("fb2", 40 * day, f),
            Accepted::new("fb3", 41 * day, f),
        ];
        let pick = |yaml: &str| {
            let spec = PipelineSpec::from_yaml(&format!("{SPEC}training: {{window: {yaml}}}\n")).unwrap();
            WindowSpec::select(spec.training.window.as_ref(), &history, 42 * day)
        };
        assert_eq!(pick("{sources: [feedback], days: 30}"), ["fb2", "fb3"]);
        assert_eq!(pick("{sources: [upload], versions: 1}"), ["base2"]);
        assert_eq!(pick("{sources: [upload, feedback], versions: 2}"), ["fb2", "fb3"]);
        // The curated base set plus a month of production truth, in the history's order.
        assert_eq!(
            pick("[{sources: [upload], versions: 1}, {sources: [feedback], days: 30}]"),
            ["base2", "fb2", "fb3"]
        );
        // Overlapping windows select a version once.
        assert_eq!(pick("[{versions: 2}, {sources: [feedback], versions: 1}]"), ["fb2", "fb3"]);
        // A source with no version yet selects nothing.
        assert!(pick("{sources: [path], versions: 3}").is_empty());
        // Histories written before origins read as uploads.
        let old: Vec<Accepted> = serde_json::from_str(r#"[["a",1],["b",2,"feedback"]]"#).unwrap();
        assert_eq!(old, [Accepted::new("a", 1, u), Accepted::new("b", 2, f)]);
        assert_eq!(serde_json::to_string(&old).unwrap(), r#"[["a",1,"upload"],["b",2,"feedback"]]"#);
    }

    #[test]
    fn triggers_and_searches_are_checked_with_reasons() {
        let with = |training: &str| PipelineSpec::from_yaml(&format!("{SPEC}training: {training}\n"));
        let t = with("{triggers: {debounce_secs: 30, cooldown_secs: 600, schedule: \"0 3 * * *\", on: [new_data]}}")
            .unwrap()
            .training
            .triggers
            .unwrap();
        assert!(t.fires_on(TriggerEvent::NewData) && !t.fires_on(TriggerEvent::Drift));
        assert!(matches!(t.cron(), Some(Ok(_))));
        let defaults = with("{triggers: {schedule: \"*/5 * * * * *\"}}").unwrap().training.triggers.unwrap();
        assert!(defaults.fires_on(TriggerEvent::Degradation) && defaults.debounce_secs == 0.0);
        let err = |training: &str| with(training).unwrap_err().to_string();
        assert!(err("{triggers: {schedule: \"every day\"}}").contains("not a cron expression"));
        assert!(err("{triggers: {debounce_secs: -1}}").contains("debounce_secs"));
        assert!(err("{triggers: {on: [sunrise]}}").contains("sunrise"));
        let s = with("{search: {params: {l2: [0.1, 1, 10]}, folds: 5}}").unwrap().training.search.unwrap();
        let base = BTreeMap::from([("max_iter".to_owned(), 20.0)]);
        let c = s.candidates(&base);
        assert_eq!(c.len(), 3);
        assert_eq!((c[2]["l2"], c[2]["max_iter"]), (10.0, 20.0));
        assert!(err("{search: {params: {l2: []}}}").contains("lists no value"));
        assert!(err("{search: {params: {trees: [10]}}}").contains("`training.search.params.trees` is not a parameter"));
        assert!(err("{search: {params: {max_iter: [2.5]}}}").contains("whole number"));
        assert!(err("{search: {params: {l2: [1]}, folds: 1}}").contains("folds"));
        assert!(
            err("{search: {params: {l2: [1]}, metric: f2}}").contains("`f2` is not a binary_classification metric")
        );
        let big = format!(
            "{{search: {{params: {{l2: [{}], tol: [{}]}}}}}}",
            vec!["1"; 17].join(","),
            vec!["1"; 16].join(",")
        );
        assert!(err(&big).contains("272 candidates"));
    }
}
