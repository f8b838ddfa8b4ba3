//! Drift of live inputs and of the model's predictions. Each feature of a window is compared with
//! its reference — the serving model's training data (the artifact's reference profile), or the
//! window before — by one test, chosen as Evidently chooses it but on the smaller of the two
//! samples: when either holds at most 1,000 values a p-value test (two-sample Kolmogorov–Smirnov
//! for numbers, chi-square for categories and for numbers with at most five distinct values),
//! when both are larger a distance (Wasserstein over the reference's standard deviation,
//! Jensen–Shannon), since on large samples every test rejects at once. Evidently looks at the
//! reference alone; but a distance on a window of a hundred rows is mostly noise — unshifted
//! traffic measured Wasserstein 0.2 against a 0.1 threshold — while a test knows its sample size.
//! The spec may name the test for all features or per feature, PSI among them. A window is
//! drifted when the share of drifted features reaches `drift_share` (Evidently's dataset rule).

pub mod binned;
pub mod ks;
pub mod wasserstein;

use mlops_proto as pb;
use mlops_shared::model::{FeatureProfile, ReferenceProfile, SAMPLE_VALUES, order_statistics, population_std};
use mlops_shared::spec::{DriftMethod, MonitoringSpec};
use mlops_shared::stats::divergence::{EVIDENTLY_FLOOR, floored_shares, js_distance, psi, shares};

/// Samples of at most this many values get p-value tests; larger ones distances (Evidently's 1,000).
const SMALL_SAMPLE: u64 = 1000;
/// A numeric feature with at most this many distinct values is compared as categories.
const FEW_VALUES: usize = 5;
/// Equal-width bins for PSI, chi-square and Jensen–Shannon on numbers (Evidently's 30).
const NUMERIC_BINS: usize = 30;
/// Defaults: p-values below 0.05 are drift; distances at or above 0.1 are.
const P_THRESHOLD: f64 = 0.05;
const DISTANCE_THRESHOLD: f64 = 0.1;

/// One feature's reference distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// Sorted values (all, or order statistics of many; see `SAMPLE_VALUES`), how many values they
    /// stand for, and their standard deviation.
    Numeric { sample: Vec<f64>, values: u64, std: f64 },
    /// Shares of the declared categories and of anything else (the last bin), over `rows`.
    Categorical { categories: Vec<String>, shares: Vec<f64>, rows: u64 },
}

impl Reference {
    /// The reference a feature profile describes (`rows` training rows).
    pub fn from_profile(p: &FeatureProfile, rows: u64) -> Self {
        match p {
            FeatureProfile::Numeric { sample, values, std, edges, .. } => {
                if sample.is_empty() {
                    // An artifact from before samples were kept: its deciles stand for the values.
                    Self::Numeric { sample: edges.clone(), values: rows, std: population_std(edges) }
                } else {
                    Self::Numeric { sample: sample.clone(), values: *values, std: *std }
                }
            }
            FeatureProfile::Categorical { categories, fractions, .. } => {
                Self::Categorical { categories: categories.clone(), shares: fractions.clone(), rows }
            }
        }
    }

    /// How many rows it stands for.
    pub fn rows(&self) -> u64 {
        match self {
            Self::Numeric { values, .. } => *values,
            Self::Categorical { rows, .. } => *rows,
        }
    }

    /// The distinct values of a numeric reference, when there are at most [`FEW_VALUES`].
    fn few_values(&self) -> Option<Vec<f64>> {
        let Self::Numeric { sample, .. } = self else { return None };
        let mut distinct: Vec<f64> = Vec::new();
        for &x in sample {
            if distinct.last() != Some(&x) {
                distinct.push(x);
                if distinct.len() > FEW_VALUES {
                    return None;
                }
            }
        }
        (!distinct.is_empty()).then_some(distinct)
    }

    /// The test for this reference and a window of `current` values: Evidently's choice, made on
    /// the smaller sample.
    pub fn default_method(&self, current: u64) -> DriftMethod {
        let small = self.rows().min(current) <= SMALL_SAMPLE;
        let numeric = matches!(self, Self::Numeric { .. }) && self.few_values().is_none();
        match (numeric, small) {
            (true, true) => DriftMethod::Ks,
            (true, false) => DriftMethod::Wasserstein,
            (false, true) => DriftMethod::ChiSquare,
            (false, false) => DriftMethod::JensenShannonDistance,
        }
    }
}

/// One feature's values in a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    /// The non-missing values.
    Numeric(Vec<f64>),
    /// Counts per bin of the reference's categories (the last bin: anything else, or missing).
    Categorical(Vec<u64>),
}

impl Current {
    /// How many values it holds.
    pub fn len(&self) -> u64 {
        match self {
            Self::Numeric(v) => v.len() as u64,
            Self::Categorical(c) => c.iter().sum(),
        }
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The references of every feature, in the model's feature order, and of its predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct References {
    pub features: Vec<(String, Reference)>,
    pub prediction: Option<Reference>,
}

impl References {
    /// The serving model's training data.
    pub fn from_profile(profile: &ReferenceProfile) -> Self {
        Self {
            features: profile
                .features
                .iter()
                .map(|f| (f.name().to_owned(), Reference::from_profile(f, profile.rows)))
                .collect(),
            prediction: profile.prediction.as_ref().map(|p| Reference::from_profile(p, profile.rows)),
        }
    }

    /// A closed window, as the reference of the next one (`reference: rolling`).
    pub fn from_window(&self, window: &Window) -> Self {
        let numeric = |values: &[f64]| {
            let mut sorted = values.to_vec();
            mlops_shared::stats::sort_floats(&mut sorted);
            Reference::Numeric {
                sample: order_statistics(&sorted, SAMPLE_VALUES),
                values: sorted.len() as u64,
                std: population_std(&sorted),
            }
        };
        let features = self
            .features
            .iter()
            .zip(&window.features)
            .map(|((name, r), current)| {
                let next = match (r, current) {
                    (Reference::Categorical { categories, .. }, Current::Categorical(counts)) => {
                        Reference::Categorical {
                            categories: categories.clone(),
                            shares: shares(counts),
                            rows: window.rows,
                        }
                    }
                    (_, Current::Numeric(values)) => numeric(values),
                    (r, _) => r.clone(),
                };
                (name.clone(), next)
            })
            .collect();
        Self { features, prediction: self.prediction.as_ref().map(|_| numeric(&window.predictions)) }
    }
}

/// One window of live predictions: each feature's values and the predicted scores.
#[derive(Debug, Clone)]
pub struct Window {
    pub features: Vec<Current>,
    pub predictions: Vec<f64>,
    pub rows: u64,
    /// When its first prediction was made (Unix ms), 0 while empty.
    pub opened_ms: i64,
}

impl Window {
    /// An empty window shaped like `references`.
    pub fn new(references: &References) -> Self {
        let features = references
            .features
            .iter()
            .map(|(_, r)| match r {
                Reference::Numeric { .. } => Current::Numeric(Vec::new()),
                Reference::Categorical { categories, .. } => Current::Categorical(vec![0; categories.len() + 1]),
            })
            .collect();
        Self { features, predictions: Vec::new(), rows: 0, opened_ms: 0 }
    }

    /// Adds one prediction's inputs and score.
    pub fn add(&mut self, references: &References, log: &pb::PredictionLogged) {
        for ((name, r), current) in references.features.iter().zip(&mut self.features) {
            match (r, current) {
                (Reference::Categorical { categories, .. }, Current::Categorical(counts)) => {
                    let bin = log
                        .categorical
                        .get(name)
                        .and_then(|c| categories.iter().position(|k| k == c))
                        .unwrap_or(categories.len());
                    counts[bin] += 1;
                }
                (_, Current::Numeric(values)) => {
                    if let Some(x) = log.numeric.get(name).filter(|x| x.is_finite()) {
                        values.push(*x);
                    }
                }
                _ => {}
            }
        }
        if log.score.is_finite() {
            self.predictions.push(log.score);
        }
        if self.rows == 0 {
            self.opened_ms = log.time_unix_ms;
        }
        self.rows += 1;
    }

    /// Each feature's drift against `references`, the share of drifted features, and the drift
    /// of the predictions (reported, not counted in the share).
    pub fn drift(
        &self,
        references: &References,
        spec: &MonitoringSpec,
    ) -> (Vec<pb::FeatureDrift>, f64, Option<pb::FeatureDrift>) {
        let features: Vec<pb::FeatureDrift> = references
            .features
            .iter()
            .zip(&self.features)
            .map(|((name, r), current)| {
                let (method, threshold) = choice(spec, name, r, current.len());
                judge(name, method, threshold, r, current)
            })
            .collect();
        let share = features.iter().filter(|f| f.drifted).count() as f64 / features.len().max(1) as f64;
        let prediction = references.prediction.as_ref().filter(|_| !self.predictions.is_empty()).map(|r| {
            let method = r.default_method(self.predictions.len() as u64);
            judge("prediction", method, default_threshold(method, spec), r, &Current::Numeric(self.predictions.clone()))
        });
        (features, share, prediction)
    }
}

/// The test and threshold for feature `name`: the spec's for it, else the spec's for all, else
/// the default for its reference and a window of `current` values.
pub fn choice(spec: &MonitoringSpec, name: &str, r: &Reference, current: u64) -> (DriftMethod, f64) {
    let o = spec.features.get(name);
    let method = o.and_then(|o| o.method).or(spec.method).unwrap_or_else(|| r.default_method(current));
    let threshold = o.and_then(|o| o.threshold).unwrap_or_else(|| default_threshold(method, spec));
    (method, threshold)
}

fn default_threshold(method: DriftMethod, spec: &MonitoringSpec) -> f64 {
    match method {
        DriftMethod::Ks | DriftMethod::ChiSquare => P_THRESHOLD,
        DriftMethod::Psi => spec.psi_threshold,
        DriftMethod::Wasserstein | DriftMethod::JensenShannonDistance => DISTANCE_THRESHOLD,
    }
}

/// One feature's test: its score (a p-value or a distance) and whether it drifted.
pub fn judge(name: &str, method: DriftMethod, threshold: f64, r: &Reference, current: &Current) -> pb::FeatureDrift {
    let score = score(method, r, current);
    let drifted = if method.is_test() { score < threshold } else { score >= threshold };
    pb::FeatureDrift { feature: name.to_owned(), method: method.as_str().into(), score, threshold, drifted }
}

/// The score of `method` on one feature. A numeric-only test asked of categories falls back to
/// chi-square or Jensen–Shannon (the spec refuses that pairing; a rolling reference cannot make it).
pub fn score(method: DriftMethod, r: &Reference, current: &Current) -> f64 {
    match (method, r, current) {
        (DriftMethod::Ks, Reference::Numeric { sample, values, .. }, Current::Numeric(cur)) => {
            let cur = sorted(cur);
            ks::p_value(ks::statistic(sample, &cur), *values, cur.len() as u64)
        }
        (DriftMethod::Wasserstein, Reference::Numeric { sample, std, .. }, Current::Numeric(cur)) => {
            wasserstein::normalised(sample, &sorted(cur), *std)
        }
        (DriftMethod::Ks, ..) => score(DriftMethod::ChiSquare, r, current),
        (DriftMethod::Wasserstein, ..) => score(DriftMethod::JensenShannonDistance, r, current),
        (binned_method, ..) => {
            let (reference, current) = bins(r, current);
            match binned_method {
                DriftMethod::Psi => psi(
                    &floored_shares(&reference, EVIDENTLY_FLOOR),
                    &floored_shares(&shares(&current), EVIDENTLY_FLOOR),
                ),
                DriftMethod::JensenShannonDistance => js_distance(&reference, &shares(&current)),
                _ => binned::chi_square_p(&reference, &current),
            }
        }
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    mlops_shared::stats::sort_floats(&mut v);
    v
}

/// The reference's shares and the window's counts over the same bins: the categories (and
/// anything else); a numeric feature's few distinct values (and anything else); or equal-width
/// bins over both samples' range.
fn bins(r: &Reference, current: &Current) -> (Vec<f64>, Vec<u64>) {
    match (r, current) {
        (Reference::Categorical { shares, .. }, Current::Categorical(counts)) => (shares.clone(), counts.clone()),
        (Reference::Numeric { sample, .. }, Current::Numeric(cur)) => match r.few_values() {
            Some(distinct) => {
                let count = |v: &[f64]| {
                    let mut c = vec![0u64; distinct.len() + 1];
                    for x in v {
                        c[distinct.iter().position(|d| d == x).unwrap_or(distinct.len())] += 1;
                    }
                    c
                };
                (shares(&count(sample)), count(cur))
            }
            None => {
                let (reference, current) = binned::equal_width_counts(sample, cur, NUMERIC_BINS);
                (shares(&reference), current)
            }
        },
        // Shapes that cannot meet (a reference and window of different kinds): no evidence.
        _ => (vec![1.0], vec![0]),
    }
}

#[cfg(test)]
mod tests;
