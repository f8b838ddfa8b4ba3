//! Importing an ONNX model into a pipeline: the graph is checked against the pipeline's contract
//! and on a sample of its validated rows, then given the manifest a trained model has — the
//! pipeline's features and target, the data it is judged on, its holdout metrics and the drift
//! reference, computed by the platform since the graph is not its own.

use std::collections::BTreeMap;

use mlops_shared::model::{
    Manifest, Model, ONNX_FORMAT, OnnxArtifact, ProgramRun, ReferenceProfile, SearchResult, holdout_split,
};
use mlops_shared::spec::{PipelineSpec, Task};
use mlops_shared::table::Frame;

use crate::contract::ContractError;
use crate::engine::Imported;
use crate::runtime::Runtime;

/// Rows the model must answer at import, taken evenly from the data (its holdout rows too).
pub const SAMPLE_ROWS: usize = 1000;

/// The algorithm name of imported ONNX models (`mlops models show`, OIP `platform`).
pub const ALGORITHM: &str = "onnx";

/// The graph as given, with the external weight files it names.
pub struct Graph {
    pub bytes: Vec<u8>,
    pub external: Vec<(String, Vec<u8>)>,
}

/// Where a graph came from, as its manifest records it.
pub struct Origin {
    pub algorithm: String,
    pub code_version: String,
    pub params: BTreeMap<String, f64>,
    /// Rows it was trained on (0 when the platform does not know).
    pub training_rows: u64,
    pub search: Option<SearchResult>,
    pub program: Option<ProgramRun>,
}

impl Origin {
    /// A graph made elsewhere and imported: named by its own sha256.
    pub fn imported(graph: &[u8]) -> Self {
        Self {
            algorithm: ALGORITHM.into(),
            code_version: format!("onnx sha256:{}", mlops_shared::sha256_hex(graph)),
            params: BTreeMap::new(),
            training_rows: 0,
            search: None,
            program: None,
        }
    }
}

/// Checks `graph` against `spec` and on `data` (the validated datasets `dataset_ids`, read under
/// `spec`), and makes the artifact that carries it: its holdout is `spec`'s split of `data`, its
/// drift reference the rest.
pub fn import(
    runtime: &Runtime,
    spec: &PipelineSpec,
    graph: Graph,
    dataset_ids: Vec<String>,
    data: &Frame,
) -> Result<OnnxArtifact, ContractError> {
    let origin = Origin::imported(&graph.bytes);
    import_as(runtime, spec, graph, dataset_ids, data, origin)
}

/// [`import`] for a graph of the given origin (a code step's, say).
pub fn import_as(
    runtime: &Runtime,
    spec: &PipelineSpec,
    graph: Graph,
    dataset_ids: Vec<String>,
    data: &Frame,
    origin: Origin,
) -> Result<OnnxArtifact, ContractError> {
    let t = &spec.training;
    let (rest, holdout_idx) = holdout_split(data.rows, t.holdout, t.seed);
    let (rest, holdout) = (data.take(&rest), data.take(&holdout_idx));
    let mut onnx = artifact(spec, graph, dataset_ids, &rest, origin);
    onnx.manifest.holdout_rows = holdout.rows as u64;
    let model = Imported::load(runtime, &onnx)?;
    let step = data.rows.div_ceil(SAMPLE_ROWS).max(1);
    let sample: Vec<usize> = (0..data.rows).step_by(step).collect();
    check_answers(&model, &data.take(&sample), &sample)?;
    let scores = check_answers(&model, &holdout, &holdout_idx)?;
    drop(model);
    let amounts = spec.amounts(&holdout);
    onnx.manifest.record_holdout(
        holdout.target.as_deref().unwrap_or_default(),
        &scores,
        spec.business.as_ref(),
        amounts.as_deref(),
    );
    Ok(onnx)
}

/// The answers of `graph`, under `spec`'s contract, for `rows`: each finite and, for a
/// classifier, a probability. A search scores its candidates' graphs so.
pub fn score(runtime: &Runtime, spec: &PipelineSpec, graph: Graph, rows: &Frame) -> Result<Vec<f64>, ContractError> {
    let onnx = artifact(spec, graph, Vec::new(), rows, Origin::imported(&[]));
    let model = Imported::load(runtime, &onnx)?;
    let at: Vec<usize> = (0..rows.rows).collect();
    check_answers(&model, rows, &at)
}

/// The artifact carrying `graph` under `spec`, its drift reference fitted on `reference` rows, its
/// holdout not yet measured.
fn artifact(
    spec: &PipelineSpec,
    graph: Graph,
    dataset_ids: Vec<String>,
    reference: &Frame,
    origin: Origin,
) -> OnnxArtifact {
    let t = &spec.training;
    OnnxArtifact {
        manifest: Manifest {
            format: ONNX_FORMAT.into(),
            pipeline: spec.name.to_string(),
            algorithm: origin.algorithm,
            params: origin.params,
            features: spec.model_inputs(),
            target: spec.target.clone(),
            dataset_ids,
            model_spec_hash: spec.model_hash(),
            seed: t.seed,
            holdout_share: t.holdout,
            code_version: origin.code_version,
            training_rows: origin.training_rows,
            holdout_rows: 0,
            metrics: BTreeMap::new(),
            reference: ReferenceProfile::fit(&spec.features, reference),
            search: origin.search,
            program: origin.program,
            lookup: spec.lookup.clone(),
            decision: None,
        },
        graph: graph.bytes,
        external: graph.external,
    }
}

/// The model's answers for `rows` (data rows `at`), each finite and, for a classifier, a
/// probability: any other answer refuses the model, naming the row.
fn check_answers(model: &Imported, rows: &Frame, at: &[usize]) -> Result<Vec<f64>, ContractError> {
    if rows.rows == 0 {
        return Err(ContractError::Sample("the data to check the model on has no rows".into()));
    }
    let scores = (model as &dyn Model).predict_frame(rows).map_err(|e| ContractError::Sample(e.to_string()))?;
    let classifier = model.manifest().target.task == Task::BinaryClassification;
    for (score, row) in scores.iter().zip(at) {
        if !score.is_finite() || (classifier && !(0.0..=1.0).contains(score)) {
            let what = if classifier { "a probability" } else { "a finite value" };
            return Err(ContractError::Sample(format!("the answer for data row {row} is {score}, not {what}")));
        }
    }
    Ok(scores)
}
