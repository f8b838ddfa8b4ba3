//! One training run: datasets → frame → seeded holdout split → preprocessing fitted on the
//! training rows → model → holdout metrics → artifact. Pure and deterministic: the same datasets,
//! spec and seed give the same artifact bytes.

use std::collections::BTreeMap;

use mlops_data::{DatasetError, Source, read_sources_counted};
use mlops_shared::model::{
    Artifact, Candidate, FORMAT, Manifest, Parameters, Preprocessor, ReferenceProfile, SearchResult, holdout_split,
    shuffled,
};
use mlops_shared::spec::{Algorithm, PipelineSpec, SearchSpec, Task};

use crate::{gbt, linear, stream};

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{}", data_problem(.0))]
    Data(#[from] DatasetError),
    #[error("too little data: {0} rows (at least 10 are needed)")]
    TooFew(usize),
    #[error("the training rows hold a single class; a classifier needs both")]
    OneClass,
}

/// What is wrong with a dataset of the window; a missing column means the window holds versions
/// whose columns differ (one follows an older spec), which are never mixed.
fn data_problem(e: &DatasetError) -> String {
    match &e.source {
        mlops_data::DataError::MissingColumn(column) => format!(
            "{e}: the training window mixes dataset versions whose columns differ (this one follows a spec \
             without `{column}`), and they are not trained on together; narrow `training.window`, or judge the \
             version again under the current spec (`mlops data revalidate`)"
        ),
        _ => e.to_string(),
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Trained {
    pub artifact: Artifact,
}

/// How far a run has come: `fraction` of the whole run, in [0, 1], and what it is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub stage: String,
    pub fraction: f64,
}

/// Trains `spec`'s model on `datasets` (id, CSV bytes), in the given order.
pub fn train(spec: &PipelineSpec, datasets: &[(String, Vec<u8>)]) -> Result<Trained, TrainError> {
    train_with_progress(spec, datasets, &mut |_| {})
}

/// [`train`], telling `progress` how far it has come.
pub fn train_with_progress(
    spec: &PipelineSpec,
    datasets: &[(String, Vec<u8>)],
    progress: &mut dyn FnMut(Progress),
) -> Result<Trained, TrainError> {
    let sources: Vec<(String, Source)> =
        datasets.iter().map(|(id, b)| (id.clone(), Source::Bytes(bytes::Bytes::copy_from_slice(b)))).collect();
    train_sources(spec, &sources, progress)
}

/// [`train_with_progress`] on datasets in memory or in files. Boosted trees without a search read
/// the datasets in passes and hold only their bins ([`crate::stream`]); the rest read them whole.
pub fn train_sources(
    spec: &PipelineSpec,
    datasets: &[(String, Source)],
    progress: &mut dyn FnMut(Progress),
) -> Result<Trained, TrainError> {
    progress(Progress { stage: "reading data".into(), fraction: 0.0 });
    let t = &spec.training;
    if t.algorithm == Algorithm::GradientBoosting && t.search.is_none() {
        return train_streamed(spec, datasets, progress);
    }
    train_whole(spec, datasets, progress)
}

/// Training on the datasets read whole into one frame.
fn train_whole(
    spec: &PipelineSpec,
    datasets: &[(String, Source)],
    progress: &mut dyn FnMut(Progress),
) -> Result<Trained, TrainError> {
    let t = &spec.training;
    let (frame, _) = read_sources_counted(spec, datasets)?;
    if frame.rows < 10 {
        return Err(TrainError::TooFew(frame.rows));
    }
    let (train_idx, holdout_idx) = holdout_split(frame.rows, t.holdout, t.seed);
    let (train, holdout) = frame.split(&train_idx, &holdout_idx);
    let y = train.target.as_deref().expect("frames are read with their target");
    let task = spec.target.task;
    if task == Task::BinaryClassification && y.iter().all(|&v| v == y[0]) {
        return Err(TrainError::OneClass);
    }
    let preprocessing = Preprocessor::fit(&spec.features, &train);
    let row = |i: usize, out: &mut Vec<f64>| {
        preprocessing.transform_values(train.columns.iter().map(|c| c.value_ref(i)), out)
    };
    let x = Inputs { n: train.rows, row: &row };
    let model =
        Model { algorithm: t.algorithm, task, width: preprocessing.width(), one_hot: preprocessing.one_hot_groups() };
    let (params, search) = match &t.search {
        None => (t.params.clone(), None),
        Some(search) => {
            let result = model.search(search, &t.params, &x, y, t.seed, progress);
            (result.candidates[result.best].params.clone(), Some(result))
        }
    };
    // The final fit is the last share of the run: all of it without a search.
    let (from, share) = if search.is_some() { (0.8, 0.15) } else { (0.0, 0.95) };
    let parameters = model.fit(&params, &x, y, &mut |done| {
        progress(Progress { stage: "training".into(), fraction: from + share * done });
    });
    progress(Progress { stage: "evaluating on the holdout".into(), fraction: from + share });
    let reference = ReferenceProfile::fit(&spec.features, &train);
    let made = Made { params, search, preprocessing, parameters, reference, training_rows: train.rows };
    let mut artifact = made.artifact(spec, datasets, holdout.rows);
    let scores = artifact.predict_frame(&holdout);
    let labels = holdout.target.as_deref().expect("frames are read with their target");
    // What the model predicts on data it did not train on: its metrics, and the reference for
    // prediction drift.
    let amounts = spec.amounts(&holdout);
    artifact.manifest.record_holdout(labels, &scores, spec.business.as_ref(), amounts.as_deref());
    progress(Progress { stage: "done".into(), fraction: 1.0 });
    Ok(Trained { artifact })
}

/// Boosted trees on datasets read in passes: only the training rows' bins are held.
fn train_streamed(
    spec: &PipelineSpec,
    datasets: &[(String, Source)],
    progress: &mut dyn FnMut(Progress),
) -> Result<Trained, TrainError> {
    let t = &spec.training;
    let data = stream::Datasets { spec, sources: datasets };
    let params = gbt_params(&t.params, spec.target.task);
    let s = stream::train(&data, params, (t.holdout, t.seed), progress)?;
    progress(Progress { stage: "evaluating on the holdout".into(), fraction: 0.95 });
    let parameters = Parameters::GradientBoosting { base_score: s.fit.base_score, trees: s.fit.trees };
    let holdout_rows = s.held.iter().filter(|h| **h).count();
    let made = Made {
        params: t.params.clone(),
        search: None,
        preprocessing: s.preprocessing,
        parameters,
        reference: s.reference,
        training_rows: s.training_rows,
    };
    let mut artifact = made.artifact(spec, datasets, holdout_rows);
    let held = stream::holdout_scores(&data, &s.held, |part| artifact.predict_frame(part))?;
    artifact.manifest.record_holdout(&held.labels, &held.scores, spec.business.as_ref(), held.amounts.as_deref());
    progress(Progress { stage: "done".into(), fraction: 1.0 });
    Ok(Trained { artifact })
}

/// What a run fitted, before it is an artifact.
struct Made {
    params: BTreeMap<String, f64>,
    search: Option<SearchResult>,
    preprocessing: Preprocessor,
    parameters: Parameters,
    reference: ReferenceProfile,
    training_rows: usize,
}

impl Made {
    /// The artifact, its holdout metrics still to be recorded.
    fn artifact(self, spec: &PipelineSpec, datasets: &[(String, Source)], holdout_rows: usize) -> Artifact {
        let t = &spec.training;
        Artifact {
            manifest: Manifest {
                format: FORMAT.into(),
                pipeline: spec.name.to_string(),
                algorithm: t.algorithm.as_str().into(),
                params: self.params,
                features: spec.model_inputs(),
                target: spec.target.clone(),
                dataset_ids: datasets.iter().map(|(id, _)| id.clone()).collect(),
                model_spec_hash: spec.model_hash(),
                seed: t.seed,
                holdout_share: t.holdout,
                code_version: mlops_shared::CODE_VERSION.into(),
                training_rows: self.training_rows as u64,
                holdout_rows: holdout_rows as u64,
                metrics: BTreeMap::new(),
                reference: self.reference,
                search: self.search,
                program: None,
                lookup: spec.lookup.clone(),
                decision: None,
            },
            preprocessing: self.preprocessing,
            parameters: self.parameters,
        }
    }
}

/// Boosting's parameters from a spec's `params` (absent ones take LightGBM's defaults).
fn gbt_params(params: &BTreeMap<String, f64>, task: Task) -> gbt::Params {
    let get = |k: &str, default: f64| params.get(k).copied().unwrap_or(default);
    let d = gbt::Params::default();
    // The spec check keeps the whole-number parameters whole and in range.
    gbt::Params {
        trees: get("trees", f64::from(d.trees)) as u32,
        learning_rate: get("learning_rate", d.learning_rate),
        num_leaves: get("num_leaves", f64::from(d.num_leaves)) as u32,
        max_depth: get("max_depth", f64::from(d.max_depth)) as u32,
        min_data_in_leaf: get("min_data_in_leaf", f64::from(d.min_data_in_leaf)) as u32,
        l2: get("l2", d.l2),
        max_bins: get("max_bins", f64::from(d.max_bins)) as u32,
        objective: match task {
            Task::BinaryClassification => gbt::Objective::Binary,
            Task::Regression => gbt::Objective::SquaredError,
        },
    }
}

/// Training inputs: `n` rows, row `i`'s preprocessed inputs appended to a buffer by `row`. Linear
/// models solve on the dense matrix, made from them; boosting bins each row as it reads it, so
/// for boosting the matrix of `f64`s is never built.
struct Inputs<'a> {
    n: usize,
    row: &'a gbt::Rows<'a>,
}

impl Inputs<'_> {
    fn dense(&self, width: usize) -> Vec<f64> {
        let mut x = Vec::with_capacity(self.n * width);
        for i in 0..self.n {
            (self.row)(i, &mut x);
        }
        x
    }
}

/// What is fitted: an algorithm on preprocessed inputs of `width` columns.
struct Model {
    algorithm: Algorithm,
    task: Task,
    width: usize,
    one_hot: Vec<std::ops::Range<usize>>,
}

impl Model {
    /// Fits with `params` (absent ones take their defaults); `done` hears the fraction finished.
    fn fit(&self, params: &BTreeMap<String, f64>, x: &Inputs, y: &[f64], done: &mut dyn FnMut(f64)) -> Parameters {
        let get = |k: &str, default: f64| params.get(k).copied().unwrap_or(default);
        match self.algorithm {
            Algorithm::LogisticRegression => {
                let d = linear::Params::default();
                // The spec check keeps the whole-number parameters whole and in range.
                let p = linear::Params {
                    l2: get("l2", d.l2),
                    max_iter: get("max_iter", f64::from(d.max_iter)) as u32,
                    tol: get("tol", d.tol),
                };
                let fit = linear::fit(&x.dense(self.width), self.width, y, p, |it| {
                    done(f64::from(it) / f64::from(p.max_iter))
                });
                Parameters::Logistic { intercept: fit.intercept, weights: fit.weights }
            }
            Algorithm::LinearRegression => {
                let fit = linear::fit_least_squares(&x.dense(self.width), self.width, y, get("l2", 0.0), |it| {
                    done(f64::from(it) / 3.0)
                });
                Parameters::Linear { intercept: fit.intercept, weights: fit.weights }
            }
            Algorithm::GradientBoosting => {
                let p = gbt_params(params, self.task);
                let progress = |t| done(f64::from(t) / f64::from(p.trees));
                let fit = gbt::fit_rows(self.width, y, x.row, &self.one_hot, p, progress);
                Parameters::GradientBoosting { base_score: fit.base_score, trees: fit.trees }
            }
        }
    }

    /// Tries every candidate of `search` on validation rows cut from the training rows (one
    /// seeded split, or k folds) and ranks them by the search metric; ties go to the earlier
    /// candidate. Deterministic like the rest of the run.
    fn search(
        &self,
        search: &SearchSpec,
        base: &BTreeMap<String, f64>,
        x: &Inputs,
        y: &[f64],
        seed: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> SearchResult {
        let n = y.len();
        let (metric, higher_is_better) = search.ranking(self.task);
        let splits = validation_splits(n, search.folds, search.validation, seed);
        let candidates = search.candidates(base);
        let steps = (candidates.len() * splits.len()) as f64;
        let mut tried = Vec::with_capacity(candidates.len());
        for (c, params) in candidates.into_iter().enumerate() {
            let mut fold_scores = Vec::with_capacity(splits.len());
            let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
            for (f, (fit_rows, check_rows)) in splits.iter().enumerate() {
                let step = (c * splits.len() + f) as f64;
                let stage = format!("searching: candidate {} of {}", c + 1, steps as usize / splits.len());
                let (xf, yf) = (subset(x, fit_rows), fit_rows.iter().map(|&i| y[i]).collect::<Vec<_>>());
                let parameters = self.fit(&params, &Inputs { n: fit_rows.len(), row: &xf }, &yf, &mut |done| {
                    progress(Progress { stage: stage.clone(), fraction: 0.8 * (step + done) / steps });
                });
                let yv: Vec<f64> = check_rows.iter().map(|&i| y[i]).collect();
                let mut values = Vec::with_capacity(self.width);
                let mut score = |i: usize| {
                    values.clear();
                    (x.row)(i, &mut values);
                    parameters.score(self.task, &values)
                };
                let scores: Vec<f64> = check_rows.iter().map(|&i| score(i)).collect();
                let metrics = mlops_shared::scoring::for_task(self.task, &yv, &scores);
                fold_scores.push(metrics.get(metric).copied().filter(|v| v.is_finite()));
                for (name, value) in metrics.into_iter().filter(|(_, v)| v.is_finite()) {
                    let entry = sums.entry(name).or_default();
                    entry.0 += value;
                    entry.1 += 1;
                }
            }
            let score = fold_scores.iter().copied().sum::<Option<f64>>().map(|s| s / fold_scores.len() as f64);
            let metrics = sums
                .into_iter()
                .filter(|(_, (_, k))| *k == splits.len())
                .map(|(name, (sum, k))| (name, sum / k as f64))
                .collect();
            tried.push(Candidate { params, score, fold_scores, metrics });
        }
        let best = best_candidate(&tried, higher_is_better);
        SearchResult {
            metric: metric.to_owned(),
            folds: search.folds.unwrap_or(0),
            validation_rows: splits.iter().map(|(_, v)| v.len() as u64).sum(),
            candidates: tried,
            best,
        }
    }
}

/// The index of the best-scoring candidate (the first of equals; the first when none scored).
pub(crate) fn best_candidate(tried: &[Candidate], higher_is_better: bool) -> usize {
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let mut best = 0;
    for (i, c) in tried.iter().enumerate() {
        if let Some(s) = c.score
            && tried[best].score.is_none_or(|b| better(s, b))
        {
            best = i;
        }
    }
    best
}

/// (fit rows, validation rows) pairs over `n` training rows: `folds` seeded folds, or one seeded
/// split holding out `share` of them.
pub(crate) fn validation_splits(n: usize, folds: Option<u32>, share: f64, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    // A seed of its own, so the folds do not repeat the holdout split's shuffle.
    let seed = seed ^ 0x5eed_f01d;
    match folds {
        None => vec![holdout_split(n, share, seed)],
        Some(k) => {
            let (k, order) = (k as usize, shuffled(n, seed));
            (0..k)
                .map(|f| {
                    let mut held = vec![false; n];
                    order.iter().skip(f).step_by(k).for_each(|&i| held[i] = true);
                    let (check, fit): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| held[i]);
                    (fit, check)
                })
                .collect()
        }
    }
}

/// The rows `idx` of `x`, as a source of rows.
fn subset<'a>(x: &'a Inputs, idx: &'a [usize]) -> impl Fn(usize, &mut Vec<f64>) + Sync + 'a {
    move |i, out| (x.row)(idx[i], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name: toy
features:
  - {name: x, type: numeric}
  - {name: c, type: categorical, categories: [a, b]}
target: {name: y}
"#;

    fn data(n: usize, flip: bool) -> Vec<u8> {
        let mut s = String::from("x,c,y\n");
        for i in 0..n {
            let x = (i as f64 * 0.37).sin() * 3.0;
            let c = if i % 3 == 0 { "a" } else { "b" };
            let y = (x + if c == "a" { 0.5 } else { -0.5 } > 0.0) != flip;
            s.push_str(&format!("{x:.4},{c},{}\n", u8::from(y)));
        }
        s.into_bytes()
    }

    #[test]
    fn trains_a_useful_model_bit_for_bit_reproducibly() {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        let ds = vec![("d1".to_string(), data(500, false))];
        let a = train(&spec, &ds).unwrap().artifact;
        let b = train(&spec, &ds).unwrap().artifact;
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert!(a.manifest.metrics["roc_auc"] > 0.95, "{:?}", a.manifest.metrics);
        assert_eq!((a.manifest.training_rows, a.manifest.holdout_rows), (400, 100));
        let mut other_seed = spec.clone();
        other_seed.training.seed = 7;
        assert_ne!(train(&other_seed, &ds).unwrap().artifact.to_bytes(), a.to_bytes());
    }

    #[test]
    fn only_the_parts_of_a_spec_that_shape_a_model_change_its_artifact() {
        let ds = vec![("d1".to_string(), data(300, false))];
        let artifact = |yaml: &str| train(&PipelineSpec::from_yaml(yaml).unwrap(), &ds).unwrap().artifact.to_bytes();
        let base = artifact(SPEC);
        // Data checks, drift limits, gates, deployment and monitoring: the same model.
        let same = SPEC.replace(
            "{name: x, type: numeric}",
            "{name: x, type: numeric, min: -5, max: 5, max_js_divergence: 0.2, mostly: 0.99}",
        ) + "gates: [{metric: roc_auc, min: 0.6}]\ndeployment: {strategy: canary}\nmonitoring: {window: 250}\n";
        assert_eq!(artifact(&same), base, "{same}");
        // The features a model sees, its target and its training: a different model.
        for shaping in [
            SPEC.replace("categories: [a, b]}", "categories: [a, b], encoding: ordinal}"),
            SPEC.replace("target: {name: y}", "target: {name: y}\ntraining: {seed: 7}"),
            SPEC.replace("target: {name: y}", "target: {name: y}\ntraining: {params: {l2: 0.5}}"),
        ] {
            assert_ne!(artifact(&shaping), base, "{shaping}");
        }
    }

    #[test]
    fn gradient_boosting_trains_serves_and_reproduces_through_the_artifact() {
        let spec = PipelineSpec::from_yaml(&format!(
            "{SPEC}training: {{algorithm: gradient_boosting, params: {{trees: 40, num_leaves: 8, min_data_in_leaf: 5}}}}\n"
        ))
        .unwrap();
        let ds = vec![("d1".to_string(), data(800, false))];
        let a = train(&spec, &ds).unwrap().artifact;
        assert_eq!(a.to_bytes(), train(&spec, &ds).unwrap().artifact.to_bytes());
        assert_eq!(a.manifest.algorithm, "gradient_boosting");
        assert!(a.manifest.metrics["roc_auc"] > 0.95, "{:?}", a.manifest.metrics);
        let Parameters::GradientBoosting { trees, .. } = &a.parameters else { panic!("not boosted trees") };
        assert_eq!(trees.len(), 40);
        // What serving loads is what training wrote, and it predicts the same.
        let bytes = a.to_bytes();
        let loaded = Artifact::from_verified_bytes(&bytes, &mlops_shared::ids::Sha256::of(&bytes)).unwrap();
        let row = [mlops_shared::table::Value::Num(2.0), mlops_shared::table::Value::Cat("a".into())];
        assert_eq!(loaded.predict(&row), a.predict(&row));
        assert!(a.predict(&row).positive);
    }

    #[test]
    fn bad_training_parameters_are_refused_by_the_spec() {
        for (params, expected) in [
            ("{trees: 2.5}", "`training.params.trees` must be a whole number"),
            ("{num_leaves: 1}", "`training.params.num_leaves` must be a whole number in [2, 65536]"),
            ("{learning_rate: 0}", "`training.params.learning_rate` must be in (0, 1]"),
            ("{max_iter: 3}", "not a parameter of gradient_boosting"),
        ] {
            let text = format!("{SPEC}training: {{algorithm: gradient_boosting, params: {params}}}\n");
            let err = PipelineSpec::from_yaml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{params}: {err}");
        }
    }

    #[test]
    fn a_search_tries_every_candidate_keeps_the_best_and_records_them_all() {
        let spec = PipelineSpec::from_yaml(&format!(
            "{SPEC}training: {{algorithm: gradient_boosting, params: {{trees: 20, min_data_in_leaf: 5}}, \
             search: {{params: {{num_leaves: [2, 8], learning_rate: [0.01, 0.3]}}, folds: 3}}}}\n"
        ))
        .unwrap();
        let ds = vec![("d1".to_string(), data(900, false))];
        let mut seen = Vec::new();
        let a = train_with_progress(&spec, &ds, &mut |p| seen.push(p)).unwrap().artifact;
        let search = a.manifest.search.as_ref().expect("the search is recorded");
        assert_eq!((search.folds, search.metric.as_str(), search.candidates.len()), (3, "roc_auc", 4));
        // Every candidate is scored on every fold, and the kept one scores best.
        assert!(search.candidates.iter().all(|c| c.fold_scores.len() == 3 && c.score.is_some()));
        // Each candidate keeps every metric, its ranking one the mean of its fold scores.
        for c in &search.candidates {
            assert_eq!(
                c.metrics.keys().collect::<Vec<_>>(),
                ["accuracy", "brier", "f1", "log_loss", "pr_auc", "precision", "recall", "roc_auc"]
            );
            assert_eq!(Some(c.metrics["roc_auc"]), c.score);
        }
        let best = &search.candidates[search.best];
        assert!(search.candidates.iter().all(|c| c.score <= best.score), "{search:?}");
        assert_eq!(a.manifest.params, best.params);
        assert_eq!(best.params["trees"], 20.0);
        // Stumps with a tiny learning rate cannot win against the rest.
        assert_ne!((best.params["num_leaves"], best.params["learning_rate"]), (2.0, 0.01));
        // Progress only goes forward, from 0 to 1.
        assert!(seen.windows(2).all(|w| w[0].fraction <= w[1].fraction), "{seen:?}");
        assert_eq!((seen[0].fraction, seen.last().unwrap().fraction), (0.0, 1.0));
        assert!(seen.iter().any(|p| p.stage.starts_with("searching: candidate 4 of 4")));
        // Searching is deterministic too.
        assert_eq!(a.to_bytes(), train(&spec, &ds).unwrap().artifact.to_bytes());
    }

    #[test]
    fn a_validation_split_search_ranks_by_log_loss_lower_first() {
        let spec = PipelineSpec::from_yaml(&format!(
            "{SPEC}training: {{search: {{params: {{l2: [1000000, 0.01]}}, metric: log_loss}}}}\n"
        ))
        .unwrap();
        let a = train(&spec, &[("d1".to_string(), data(600, false))]).unwrap().artifact;
        let search = a.manifest.search.unwrap();
        assert_eq!((search.folds, search.validation_rows), (0, 96)); // 20% of 480 training rows
        // A huge penalty flattens the model: its log-loss is worse, so the small one wins.
        assert_eq!(search.best, 1);
        assert_eq!(a.manifest.params["l2"], 0.01);
    }

    const REGRESSION: &str = r#"
name: prices
features:
  - {name: x, type: numeric}
  - {name: c, type: categorical, categories: [a, b]}
target: {name: y, task: regression}
"#;

    fn values(n: usize) -> Vec<u8> {
        let mut s = String::from("x,c,y\n");
        for i in 0..n {
            let x = (i as f64 * 0.37).sin() * 3.0;
            let c = if i % 3 == 0 { "a" } else { "b" };
            let y = 10.0 + 2.5 * x + if c == "a" { 4.0 } else { 0.0 } + ((i * 7) % 5) as f64 * 0.01;
            s.push_str(&format!("{x:.4},{c},{y:.4}\n"));
        }
        s.into_bytes()
    }

    #[test]
    fn regression_models_learn_values_and_report_regression_metrics() {
        let ds = vec![("d1".to_string(), values(600))];
        for (training, r2) in [
            ("{algorithm: linear_regression}", 0.999),
            ("{algorithm: linear_regression, params: {l2: 10}}", 0.99),
            ("{algorithm: gradient_boosting, params: {trees: 100, min_data_in_leaf: 5}}", 0.98),
            ("{algorithm: gradient_boosting, search: {params: {num_leaves: [4, 16]}, folds: 2}}", 0.95),
        ] {
            let spec = PipelineSpec::from_yaml(&format!("{REGRESSION}training: {training}\n")).unwrap();
            let a = train(&spec, &ds).unwrap().artifact;
            let m = &a.manifest.metrics;
            assert!(
                m["r2"] > r2 && m["rmse"] < 1.0 && m.contains_key("mae") && m.contains_key("mape"),
                "{training}: {m:?}"
            );
            assert!(!m.contains_key("roc_auc"));
            if let Some(search) = &a.manifest.search {
                assert_eq!(search.metric, "rmse");
            }
            // The artifact predicts values, not probabilities: x = 2, c = a gives about 19.
            let p = a.predict(&[mlops_shared::table::Value::Num(2.0), mlops_shared::table::Value::Cat("a".into())]);
            assert!((p.score - 19.0).abs() < 1.5 && !p.positive, "{training}: {p:?}");
            assert_eq!(a.to_bytes(), train(&spec, &ds).unwrap().artifact.to_bytes());
        }
        let bad = train(
            &PipelineSpec::from_yaml(&format!("{REGRESSION}training: {{algorithm: linear_regression}}\n")).unwrap(),
            &[("d9".into(), b"x,c,y\n1,a,cheap\n".to_vec())],
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("dataset d9") && bad.contains("not a number"), "{bad}");
        for (spec, expected) in [
            (format!("{REGRESSION}training: {{algorithm: logistic_regression}}\n"), "does not learn regression"),
            (format!("{SPEC}training: {{algorithm: linear_regression}}\n"), "does not learn binary_classification"),
            (format!("{REGRESSION}gates: [{{metric: roc_auc, min: 0.7}}]\n"), "`roc_auc` is not a regression metric"),
            (format!("{REGRESSION}gates: [{{metric: rmse, min: 0.7}}]\n"), "lower-is-better: give ceilings"),
            (format!("{SPEC}gates: [{{metric: roc_auc, max: 0.7}}]\n"), "higher-is-better: give floors"),
        ] {
            let err = PipelineSpec::from_yaml(&spec).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    fn boosting(params: &str) -> PipelineSpec {
        PipelineSpec::from_yaml(&format!("{SPEC}training: {{algorithm: gradient_boosting, params: {{{params}}}}}\n"))
            .unwrap()
    }

    fn sources(datasets: Vec<(&str, Vec<u8>)>) -> Vec<(String, Source)> {
        datasets.into_iter().map(|(id, b)| (id.to_owned(), Source::Bytes(b.into()))).collect()
    }

    #[test]
    fn boosting_read_in_passes_gives_the_artifact_of_the_whole_frame() {
        // Fewer training rows than the sample: the same preprocessing, profile, bins and trees.
        let spec = boosting("trees: 20, num_leaves: 8, min_data_in_leaf: 5");
        let ds = sources(vec![("d1", data(1500, false)), ("d2", data(900, false))]);
        let streamed = train_sources(&spec, &ds, &mut |_| {}).unwrap().artifact;
        let whole = train_whole(&spec, &ds, &mut |_| {}).unwrap().artifact;
        assert_eq!(streamed.manifest.holdout_rows, 480);
        assert_eq!(streamed.to_bytes(), whole.to_bytes());
    }

    #[test]
    fn boosting_on_more_rows_than_the_sample_learns_as_on_the_whole_frame() {
        // 40,000 + 30,000 rows: 56,000 training rows, more than the sample of 50,000 that fits the
        // preprocessing and the bins.
        let spec = boosting("trees: 10, num_leaves: 8");
        let ds = sources(vec![("d1", data(40_000, false)), ("d2", data(30_000, false))]);
        let streamed = train_sources(&spec, &ds, &mut |_| {}).unwrap().artifact;
        let whole = train_whole(&spec, &ds, &mut |_| {}).unwrap().artifact;
        let m = (&streamed.manifest, &whole.manifest);
        assert_eq!((m.0.training_rows, m.0.holdout_rows), (56_000, 14_000));
        assert_eq!((m.0.reference.rows, m.1.reference.rows), (56_000, 56_000));
        assert_ne!(streamed.preprocessing, whole.preprocessing, "the sample is not all the rows");
        for metric in ["roc_auc", "log_loss", "accuracy"] {
            let (a, b) = (m.0.metrics[metric], m.1.metrics[metric]);
            assert!((a - b).abs() < 0.01, "{metric}: {a} read in passes, {b} whole");
        }
        assert!(m.0.metrics["roc_auc"] > 0.95, "{:?}", m.0.metrics);
    }

    #[test]
    fn refuses_data_it_cannot_learn_from() {
        for spec in [PipelineSpec::from_yaml(SPEC).unwrap(), boosting("trees: 5")] {
            refuses_data_it_cannot_learn_from_with(&spec);
        }
    }

    fn refuses_data_it_cannot_learn_from_with(spec: &PipelineSpec) {
        let spec = spec.clone();
        let few = train(&spec, &[("d".into(), data(5, false))]).unwrap_err();
        assert!(matches!(few, TrainError::TooFew(5)));
        let one_class = b"x,c,y\n".iter().copied().chain((0..20).flat_map(|_| b"1,a,1\n".iter().copied())).collect();
        assert!(matches!(train(&spec, &[("d".into(), one_class)]), Err(TrainError::OneClass)));
        let bad = train(&spec, &[("d9".into(), b"x,c,y\nzz,a,1\n".to_vec())]).unwrap_err().to_string();
        assert!(bad.contains("dataset d9") && bad.contains("not a number"), "{bad}");
        // A version from before `c` was a feature, in one window with a newer one.
        let older = b"x,y\n1,1\n2,0\n".to_vec();
        let mixed = train(&spec, &[("new".into(), data(40, false)), ("old".into(), older)]).unwrap_err().to_string();
        assert!(mixed.starts_with("dataset old: column `c` is missing: the training window mixes"), "{mixed}");
        assert!(mixed.contains("mlops data revalidate"), "{mixed}");
    }
}
