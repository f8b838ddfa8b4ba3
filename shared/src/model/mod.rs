//! The model artifact: a self-describing, deterministically serialized document holding the
//! manifest (schema, lineage, metrics, reference profile), the fitted preprocessing and the model
//! parameters. Trainer, evaluator, deployer and monitor share this code, so serving computes features
//! exactly as training did. Training algorithms live in the trainer alone.

pub mod onnx_graph;
mod preprocess;
mod profile;
mod split;
mod stored;
mod trees;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use preprocess::{FeatureTransform, Preprocessor};
pub use profile::{FeatureProfile, ReferenceProfile, SAMPLE_VALUES, bin_index, order_statistics, population_std};
pub use split::{holdout_split, shuffled};
pub use stored::{ONNX_FORMAT, OnnxArtifact, Stored};
pub use trees::Tree;

use crate::ids::Sha256;
use crate::spec::{FeatureSpec, TargetSpec, Task};
use crate::table::{Frame, Value};

/// The artifact format written into every manifest.
pub const FORMAT: &str = "mlops-artifact/1";

/// Why an artifact could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact is corrupt or tampered: expected sha256 {expected}, content hashes to {actual}")]
    Tampered { expected: String, actual: String },
    #[error("artifact is not a valid {FORMAT} document: {0}")]
    Invalid(String),
}

/// What a model is, where it came from and how good it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub pipeline: String,
    pub algorithm: String,
    pub params: BTreeMap<String, f64>,
    pub features: Vec<FeatureSpec>,
    pub target: TargetSpec,
    pub dataset_ids: Vec<String>,
    /// [`PipelineSpec::model_hash`](crate::spec::PipelineSpec::model_hash) of the spec it was
    /// trained under: only the parts that shape a model, so that a change of a monitoring limit
    /// gives the same artifact. The whole spec revision in force is in the registry's lineage.
    #[serde(alias = "spec_hash")]
    pub model_spec_hash: String,
    pub seed: u64,
    /// Share of rows held out; with `seed` it fixes the split, so the evaluator can recompute it.
    pub holdout_share: f64,
    pub code_version: String,
    pub training_rows: u64,
    pub holdout_rows: u64,
    /// Holdout metrics by name.
    pub metrics: BTreeMap<String, f64>,
    /// Distribution of each feature in the training data: the monitor's drift reference.
    pub reference: ReferenceProfile,
    /// The hyper-parameter search that chose `params`, when the spec asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchResult>,
    /// The team's program that made the model, when a code step did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramRun>,
    /// The features this model looks up in feature views (the last of `features`), by which key:
    /// serving fetches them from the online store for a request that carries the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<crate::spec::LookupSpec>,
    /// The decision threshold that maximised `business.value` on the holdout, when the spec
    /// priced decisions: the served label uses it. Without one a classifier decides at 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<crate::decision::Decision>,
}

/// A code step's run, as its model's manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramRun {
    /// sha256 of the code bundle.
    pub bundle: String,
    pub command: Vec<String>,
    /// The resolved packages of its environment (`pip freeze`); empty without one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// What the program wrote to `metrics.json`, beside the platform's holdout metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl Manifest {
    /// The threshold a classifier's label is decided by: the one `business.value` chose, else
    /// 0.5.
    pub fn threshold(&self) -> f64 {
        self.decision.as_ref().map_or(crate::decision::DEFAULT_THRESHOLD, |d| d.threshold)
    }

    /// Records the model's `scores` on its holdout rows (`labels`): the task's metrics that are
    /// finite, and the scores' distribution as the reference for prediction drift.
    ///
    /// With a value matrix (`business`) it also picks the decision threshold that maximises the
    /// value on these rows (each row's value times its amount, with `business.amount`), and
    /// records the value there as `business_value`.
    pub fn record_holdout(
        &mut self,
        labels: &[f64],
        scores: &[f64],
        business: Option<&crate::spec::BusinessSpec>,
        amounts: Option<&[f64]>,
    ) {
        self.metrics = crate::scoring::for_task(self.target.task, labels, scores)
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .collect();
        // A spec prices decisions only for a classifier (its check refuses the rest).
        self.decision = business.and_then(|b| crate::decision::best(&b.value, labels, scores, amounts));
        if let Some(d) = &self.decision {
            self.metrics.insert(crate::spec::BUSINESS_VALUE.to_owned(), d.value);
        }
        let predicted: Vec<Option<f64>> = scores.iter().map(|&s| Some(s)).collect();
        self.reference.prediction = Some(FeatureProfile::numeric("prediction", &predicted));
    }
}

/// Fitted model parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Parameters {
    /// p(positive) = sigmoid(intercept + weights · x), x the preprocessed feature vector.
    Logistic { intercept: f64, weights: Vec<f64> },
    /// base_score + Σ tree(x): gradient-boosted trees, on the log-odds of the positive class
    /// (classification: p = sigmoid of it) or on the value (regression).
    GradientBoosting { base_score: f64, trees: Vec<Tree> },
    /// value = intercept + weights · x: least squares (regression).
    Linear { intercept: f64, weights: Vec<f64> },
}

impl Parameters {
    /// The model's output for one preprocessed input vector before any link: the log-odds of the
    /// positive class, or the predicted value.
    pub fn raw(&self, x: &[f64]) -> f64 {
        match self {
            Self::Logistic { intercept, weights } | Self::Linear { intercept, weights } => {
                intercept + weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>()
            }
            // Summed from -0.0, in tree order: `BlockScorer::raw_block` sums the same way.
            Self::GradientBoosting { base_score, trees } => base_score + trees.iter().fold(-0.0, |z, t| z + t.eval(x)),
        }
    }

    /// The parameters laid out for scoring many rows ([`BlockScorer`]).
    pub fn for_blocks(&self) -> BlockScorer<'_> {
        let (forest, trees) = match self {
            Self::GradientBoosting { trees, .. } => match trees::Forest::of(trees) {
                Some(forest) => (Some(forest), Vec::new()),
                None => (None, trees.iter().map(Tree::packed).collect()),
            },
            _ => (None, Vec::new()),
        };
        BlockScorer { parameters: self, forest, trees }
    }

    /// The prediction for one preprocessed input vector: the probability of the positive class
    /// (classification), or the value (regression).
    pub fn score(&self, task: Task, x: &[f64]) -> f64 {
        link(task, self.raw(x))
    }
}

/// [`Parameters`] scoring a block of rows at a time, trees laid out for it.
pub struct BlockScorer<'a> {
    parameters: &'a Parameters,
    /// Boosted trees of at most 64 leaves each, scored the QuickScorer way.
    forest: Option<trees::Forest>,
    /// Other boosted trees, walked.
    trees: Vec<trees::PackedTree>,
}

impl BlockScorer<'_> {
    /// [`Parameters::raw`] of each row of `xs` (row-major, `width` values each) into `out`: the
    /// same numbers, trees walked by a block of rows at a time.
    pub fn raw_block(&self, xs: &[f64], width: usize, out: &mut [f64]) {
        if width == 0 {
            // A model of no inputs answers every row alike.
            out.fill(self.parameters.raw(&[]));
            return;
        }
        match self.parameters {
            Parameters::GradientBoosting { base_score, .. } => {
                // Summed in the order `raw` sums, from the same start.
                out.fill(-0.0);
                if let Some(forest) = &self.forest {
                    forest.add_rows(xs, width, out);
                }
                for t in &self.trees {
                    t.add_block(xs, width, out);
                }
                out.iter_mut().for_each(|z| *z += base_score);
            }
            p => out.iter_mut().zip(xs.chunks(width)).for_each(|(z, x)| *z = p.raw(x)),
        }
    }
}

/// The prediction for a raw output `z`: its sigmoid (classification), or itself (regression).
fn link(task: Task, z: f64) -> f64 {
    match task {
        Task::BinaryClassification => sigmoid(z),
        Task::Regression => z,
    }
}

/// A hyper-parameter search as run: every candidate with its validation score, and the one kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchResult {
    /// The metric that ranked the candidates.
    pub metric: String,
    /// k of k-fold cross-validation; 0 for one validation split.
    pub folds: u32,
    /// Training rows scored per candidate (over all folds).
    pub validation_rows: u64,
    pub candidates: Vec<Candidate>,
    /// The index of the kept candidate, whose parameters the model was refitted with.
    pub best: usize,
}

/// One candidate of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    /// Every parameter it was fitted with.
    pub params: BTreeMap<String, f64>,
    /// The mean of its fold scores; absent when a fold could not be scored (a single class).
    pub score: Option<f64>,
    pub fold_scores: Vec<Option<f64>>,
    /// Every metric of the task, averaged over the folds (those every fold could compute).
    pub metrics: BTreeMap<String, f64>,
}

/// A complete model artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub manifest: Manifest,
    pub preprocessing: Preprocessor,
    pub parameters: Parameters,
}

/// A model ready to answer, whatever made it: a built-in [`Artifact`], or an imported graph run by
/// its engine. The gates, serving and monitoring see only this.
pub trait Model: Send + Sync {
    fn manifest(&self) -> &Manifest;

    /// The answers for rows of raw feature values in manifest order, one per row.
    fn predict_rows(&self, rows: &[Vec<Value>]) -> Result<Vec<Prediction>, ModelError>;

    /// The answers for rows `rows` of `frame` (its columns in manifest order): [`Self::predict_rows`]
    /// on them, a few thousand at a time, unless the model reads a frame as it is.
    fn predict_frame_rows(&self, frame: &Frame, rows: std::ops::Range<usize>) -> Result<Vec<Prediction>, ModelError> {
        const CALL: usize = 4096;
        let mut out = Vec::with_capacity(rows.len());
        for start in rows.clone().step_by(CALL) {
            let values: Vec<_> = (start..rows.end.min(start + CALL)).map(|i| frame.row(i)).collect();
            out.extend(self.predict_rows(&values)?);
        }
        Ok(out)
    }

    /// What runs it, as OIP metadata names it (`platform`).
    fn platform(&self) -> String {
        format!("mlops/{}", self.manifest().algorithm)
    }
}

/// Why a model gave no answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A value the model cannot take (an imported graph's engine refuses it): the caller's fault.
    #[error("{0}")]
    BadInput(String),
    /// The engine failed on values it should take.
    #[error("the model could not answer: {0}")]
    Engine(String),
}

impl dyn Model {
    /// The score of every row of `frame`.
    pub fn predict_frame(&self, frame: &Frame) -> Result<Vec<f64>, ModelError> {
        Ok(self.predict_frame_rows(frame, 0..frame.rows)?.into_iter().map(|p| p.score).collect())
    }
}

impl Model for Artifact {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn predict_rows(&self, rows: &[Vec<Value>]) -> Result<Vec<Prediction>, ModelError> {
        Ok(rows.iter().map(|row| self.predict(row)).collect())
    }

    /// Rows preprocessed where they are in the frame, a block at a time into one buffer (no row
    /// is copied), and scored a block at a time: the same answers as [`Self::predict`].
    fn predict_frame_rows(&self, frame: &Frame, rows: std::ops::Range<usize>) -> Result<Vec<Prediction>, ModelError> {
        const BLOCK: usize = 256;
        let (width, task, threshold) =
            (self.preprocessing.width(), self.manifest.target.task, self.manifest.threshold());
        let mut xs = Vec::with_capacity(width * BLOCK);
        let mut raw = vec![0.0; BLOCK];
        let mut out = Vec::with_capacity(rows.len());
        let scorer = self.parameters.for_blocks();
        for start in rows.clone().step_by(BLOCK) {
            let block = start..rows.end.min(start + BLOCK);
            xs.clear();
            for i in block.clone() {
                self.preprocessing.transform_values(frame.columns.iter().map(|c| c.value_ref(i)), &mut xs);
            }
            let raw = &mut raw[..block.len()];
            scorer.raw_block(&xs, width, raw);
            out.extend(raw.iter().map(|&z| Prediction::of(task, link(task, z), threshold)));
        }
        Ok(out)
    }
}

/// One prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The probability of the positive class (classification), or the predicted value
    /// (regression).
    pub score: f64,
    /// Whether `score` is at least the model's decision threshold (always false for
    /// regression).
    pub positive: bool,
}

impl Prediction {
    /// The prediction of `task` for `score`: positive when a probability is at least
    /// `threshold` ([`Manifest::threshold`]).
    pub fn of(task: Task, score: f64, threshold: f64) -> Self {
        Self { score, positive: task == Task::BinaryClassification && score >= threshold }
    }
}

impl Artifact {
    /// Serializes deterministically: the same artifact always gives the same bytes (struct fields
    /// in declaration order, maps sorted, floats in shortest round-trip form).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an artifact always serializes")
    }

    /// Checks `bytes` against `expected` and parses them. A mismatch is never loaded.
    pub fn from_verified_bytes(bytes: &[u8], expected: &Sha256) -> Result<Self, ArtifactError> {
        stored::verify(bytes, expected)?;
        let artifact: Self = serde_json::from_slice(bytes).map_err(|e| ArtifactError::Invalid(e.to_string()))?;
        artifact.check()?;
        Ok(artifact)
    }

    fn check(&self) -> Result<(), ArtifactError> {
        let bad = |m: String| Err(ArtifactError::Invalid(m));
        if self.manifest.format != FORMAT {
            return bad(format!("format {:?}", self.manifest.format));
        }
        if self.preprocessing.transforms.len() != self.manifest.features.len() {
            return bad("preprocessing does not cover every feature".into());
        }
        let width = self.preprocessing.width();
        let task = self.manifest.target.task;
        match (&self.parameters, task) {
            (Parameters::Logistic { .. }, Task::Regression)
            | (Parameters::Linear { .. }, Task::BinaryClassification) => {
                return bad(format!("its parameters do not fit its task, {}", task.as_str()));
            }
            (Parameters::Logistic { weights, intercept } | Parameters::Linear { weights, intercept }, _) => {
                if weights.len() != width {
                    return bad(format!("{} weights for {width} inputs", weights.len()));
                }
                if !intercept.is_finite() || weights.iter().any(|w| !w.is_finite()) {
                    return bad("non-finite parameters".into());
                }
            }
            (Parameters::GradientBoosting { base_score, trees }, _) => {
                if !base_score.is_finite() {
                    return bad("non-finite base score".into());
                }
                for t in trees {
                    t.check(width).map_err(ArtifactError::Invalid)?;
                }
            }
        }
        Ok(())
    }

    /// Predicts one row of feature values in manifest order.
    pub fn predict(&self, row: &[Value]) -> Prediction {
        let mut x = Vec::with_capacity(self.preprocessing.width());
        self.preprocessing.transform_into(row, &mut x);
        self.predict_vector(&x)
    }

    /// Predicts from an already preprocessed feature vector.
    pub fn predict_vector(&self, x: &[f64]) -> Prediction {
        let task = self.manifest.target.task;
        Prediction::of(task, self.parameters.score(task, x), self.manifest.threshold())
    }

    /// Scores every row of `frame`.
    pub fn predict_frame(&self, frame: &Frame) -> Vec<f64> {
        (0..frame.rows).map(|i| self.predict(&frame.row(i)).score).collect()
    }
}

impl Artifact {
    /// A logistic model of `spec`'s features with fixed weights, its preprocessing and reference
    /// profile fitted on `frame`: a servable artifact made without training, for tests and fuzz
    /// targets.
    pub fn example(spec: &crate::spec::PipelineSpec, frame: &Frame) -> Self {
        let preprocessing = Preprocessor::fit(&spec.features, frame);
        let width = preprocessing.width();
        Self {
            manifest: Manifest {
                format: FORMAT.into(),
                pipeline: spec.name.to_string(),
                algorithm: "logistic_regression".into(),
                params: BTreeMap::new(),
                features: spec.model_inputs(),
                target: spec.target.clone(),
                dataset_ids: vec![],
                model_spec_hash: spec.model_hash(),
                seed: 42,
                holdout_share: 0.2,
                code_version: "example".into(),
                training_rows: frame.rows as u64,
                holdout_rows: 0,
                metrics: BTreeMap::new(),
                reference: ReferenceProfile::fit(&spec.features, frame),
                search: None,
                program: None,
                lookup: spec.lookup.clone(),
                decision: None,
            },
            preprocessing,
            parameters: Parameters::Logistic {
                intercept: 0.1,
                weights: (0..width).map(|i| i as f64 * 0.1 - 0.2).collect(),
            },
        }
    }
}

/// The logistic function, computed without overflow for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PipelineSpec, tests::SPEC};
    use crate::table::Column;

    #[test]
    fn a_frame_scored_in_blocks_gets_each_row_s_own_answer_bit_for_bit() {
        // Boosted trees (one of depth two, one a lone leaf) and a non-zero base score; rows with
        // missing values; a range that starts inside the frame and is not a whole number of blocks.
        let mut a = artifact();
        let width = a.preprocessing.width();
        let split = |feature: u32, threshold: f64, left: i32, right: i32| (feature, threshold, left, right);
        let nodes = [split(0, 0.1, 1, !0), split(1 % width as u32, -0.3, !1, !2)];
        let tree = Tree {
            feature: nodes.iter().map(|n| n.0).collect(),
            threshold: nodes.iter().map(|n| n.1).collect(),
            left: nodes.iter().map(|n| n.2).collect(),
            right: nodes.iter().map(|n| n.3).collect(),
            leaf: vec![0.25, -0.5, 0.125],
        };
        let leaf = Tree { feature: vec![], threshold: vec![], left: vec![], right: vec![], leaf: vec![-0.0] };
        a.parameters = Parameters::GradientBoosting { base_score: -0.7, trees: vec![tree, leaf] };
        let n = 700;
        let frame = Frame {
            columns: vec![
                Column::Numeric((0..n).map(|i| (i % 7 != 0).then(|| i as f64 / 10.0 - 30.0)).collect()),
                Column::Numeric((0..n).map(|i| (i % 5 != 0).then(|| (i * 37 % 101) as f64)).collect()),
                Column::Categorical(
                    (0..n).map(|i| (i % 3 != 0).then(|| ["monthly", "yearly"][i % 2].to_owned())).collect(),
                ),
            ],
            target: None,
            rows: n,
        };
        for model in [a.clone(), artifact()] {
            let blocks = model.predict_frame_rows(&frame, 3..n).unwrap();
            for (i, p) in (3..n).zip(blocks) {
                let alone = model.predict(&frame.row(i));
                assert_eq!((p.score.to_bits(), p.positive), (alone.score.to_bits(), alone.positive), "row {i}");
            }
        }
    }

    pub(crate) fn artifact() -> Artifact {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        let frame = Frame {
            columns: vec![
                Column::Numeric(vec![Some(1.0), Some(50.0), Some(20.0)]),
                Column::Numeric(vec![Some(10.0), None, Some(30.0)]),
                Column::Categorical(vec![Some("monthly".into()), Some("yearly".into()), Some("monthly".into())]),
            ],
            target: Some(vec![1.0, 0.0, 0.0]),
            rows: 3,
        };
        Artifact::example(&spec, &frame)
    }

    #[test]
    fn round_trips_bit_for_bit_and_refuses_tampering() {
        let a = artifact();
        let bytes = a.to_bytes();
        let sha = Sha256::of(&bytes);
        let b = Artifact::from_verified_bytes(&bytes, &sha).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_bytes(), bytes);
        let mut tampered = bytes.clone();
        let pos = tampered.iter().position(|&c| c == b'1').unwrap();
        tampered[pos] = b'2';
        assert!(matches!(Artifact::from_verified_bytes(&tampered, &sha), Err(ArtifactError::Tampered { .. })));
        let other = Sha256::of(b"{}");
        assert!(matches!(Artifact::from_verified_bytes(b"{}", &other), Err(ArtifactError::Invalid(_))));
    }

    #[test]
    fn predicts_probabilities() {
        let a = artifact();
        let p = a.predict(&[Value::Num(3.0), Value::Missing, Value::Cat("never-seen".into())]);
        assert!(p.score > 0.0 && p.score < 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-1000.0) >= 0.0 && sigmoid(1000.0) <= 1.0);
    }
}
