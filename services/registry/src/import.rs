//! `ImportModel`: an ONNX model made elsewhere becomes a version of a pipeline. The stream is
//! received within the pipeline's artifact limit, the graph is checked against the pipeline and
//! on its validated rows (`mlops_onnx::import`), the artifact is stored, and the version is
//! registered and announced as a trained one is, so the gates and the deployer take it from there.

use std::sync::Arc;

use mlops_onnx::import::Graph;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, off_runtime};
use mlops_shared::events::EventContext;
use mlops_shared::ids::Sha256;
use mlops_shared::model::{Manifest, OnnxArtifact};
use mlops_shared::objects::Objects;
use mlops_shared::runs::Runs;
use mlops_shared::spec::{PipelineSpec, SpecStore};
use tokio_stream::StreamExt as _;
use tonic::{Status, Streaming};
use tracing::info;

use crate::store::{ModelRecord, Store};

/// The largest import (the graph and its external files together) when the pipeline sets no
/// `serving_limits.max_artifact_bytes`: 2 GiB, ONNX's limit for a graph file alone.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// What an import reads and writes besides the registry's store.
pub struct Importer {
    pub engine: mlops_onnx::Engine,
    pub specs: SpecStore,
    pub datasets: Objects,
    pub models: Objects,
    pub runs: Runs,
}

impl Importer {
    /// Receives, checks, stores and registers one import: the version, and whether it is new (the
    /// same file on the same data is the version it made before, announced once).
    pub async fn import(
        &self,
        store: &Arc<Store>,
        bus: &Bus,
        mut stream: Streaming<pb::ImportModelRequest>,
    ) -> Result<(ModelRecord, bool), Status> {
        let runtime = self.engine.runtime().map_err(|e| Status::failed_precondition(e.to_string()))?;
        let header = first_header(&mut stream).await?;
        let spec = self
            .specs
            .get(&header.pipeline)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found(format!("no pipeline `{}`: apply its spec first", header.pipeline)))?;
        // Which data judges it is settled before a byte of the model is taken.
        let dataset = self.dataset(&spec, &header.trained_on).await?;
        let limit = spec.serving_limits.as_ref().and_then(|l| l.max_artifact_bytes);
        let graph = receive_files(&mut stream, &spec, limit.unwrap_or(DEFAULT_MAX_BYTES)).await?;
        let file_sha256 = mlops_shared::sha256_hex(&graph.bytes);
        let onnx = self.check(runtime, spec.clone(), graph, dataset).await?;
        let bytes = onnx.to_bytes();
        if let Some(limit) = limit.filter(|&l| bytes.len() as u64 > l) {
            return Err(Status::invalid_argument(format!(
                "the stored model (the graph, its files and its manifest) is {} bytes, more than pipeline `{}` allows (serving_limits.max_artifact_bytes: {limit})",
                bytes.len(),
                spec.name
            )));
        }
        let artifact = self.models.put(&bytes).await.map_err(unavailable)?;
        let who = who(&header.imported_by);
        let trained = trained_event(&onnx.manifest, &artifact, bytes.len(), spec.hash(), who);
        let cause = format!("grpc:ImportModel {} (sha256 {file_sha256}) by {who}", header.file_name);
        let (record, new) = crate::record_version(store, trained.clone(), &cause, header.description.clone())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if new {
            let ctx = EventContext::new_run(trained.job_id.clone());
            crate::announce(bus, &ctx, &record, trained).await.map_err(|e| {
                Status::unavailable(format!(
                    "v{} is registered, but its announcement was not published: {e}",
                    record.version
                ))
            })?;
        }
        info!(pipeline = %record.pipeline, version = record.version, new, file = %header.file_name, "ONNX model imported");
        Ok((record, new))
    }

    /// Reads `dataset` under `spec` and checks `graph` on it, on the blocking pool.
    async fn check(
        &self,
        runtime: &'static mlops_onnx::Runtime,
        spec: PipelineSpec,
        graph: Graph,
        dataset: String,
    ) -> Result<OnnxArtifact, Status> {
        let blob = self.datasets.get_verified(&sha(&dataset)?).await.map_err(unavailable)?;
        off_runtime(move || -> Result<_, Refused> {
            let frame = mlops_data::read_datasets(&spec, &[(dataset.clone(), blob)])
                .map_err(|e| Status::failed_precondition(format!("dataset {dataset}: {e}")))?;
            let onnx = mlops_onnx::import::import(runtime, &spec, graph, vec![dataset], &frame).map_err(|e| {
                Status::invalid_argument(format!("the model does not fit pipeline `{}`: {e}", spec.name))
            })?;
            Ok(onnx)
        })
        .await
        .map_err(|Refused(s)| s)
    }

    /// The validated dataset the model is judged on: `trained_on` (an id or a unique prefix)
    /// among the pipeline's, or its newest.
    async fn dataset(&self, spec: &PipelineSpec, trained_on: &str) -> Result<String, Status> {
        let history = self.runs.history(spec.name.as_str()).await.map_err(unavailable)?;
        if trained_on.trim().is_empty() {
            return history.last().map(|a| a.id.clone()).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "pipeline `{}` has no validated data to check the model on: upload a dataset first",
                    spec.name
                ))
            });
        }
        mlops_shared::ids::resolve_prefix("dataset", trained_on, history.iter().map(|a| a.id.as_str())).map_err(|e| {
            Status::invalid_argument(format!("--trained-on: {e} among pipeline `{}`'s validated datasets", spec.name))
        })
    }
}

/// The stream's first message, which must be the header.
async fn first_header(stream: &mut Streaming<pb::ImportModelRequest>) -> Result<pb::ImportModelHeader, Status> {
    use pb::import_model_request::Part;
    match stream.next().await {
        Some(Ok(pb::ImportModelRequest { part: Some(Part::Header(h)) })) => Ok(h),
        Some(Ok(_)) => Err(Status::invalid_argument("the first import message must be the header")),
        Some(Err(e)) => Err(e),
        None => Err(Status::invalid_argument("empty import: no header")),
    }
}

/// The graph and its external files from the rest of the stream, refused once they pass `limit`
/// bytes, and unless the files are exactly those the graph names.
async fn receive_files(
    stream: &mut Streaming<pb::ImportModelRequest>,
    spec: &PipelineSpec,
    limit: u64,
) -> Result<Graph, Status> {
    use pb::import_model_request::Part;
    let mut graph = Graph { bytes: Vec::new(), external: Vec::new() };
    let mut total = 0u64;
    while let Some(msg) = stream.next().await {
        let part = msg?.part;
        // Names count too: a stream of empty chunks under new names is not free.
        total += match &part {
            Some(Part::Graph(b)) => b.len() as u64,
            Some(Part::External(f)) => (f.data.len() + f.path.len()) as u64,
            _ => 0,
        };
        if total > limit {
            return Err(Status::invalid_argument(format!(
                "the model is larger than pipeline `{}` allows (serving_limits.max_artifact_bytes: {limit} bytes)",
                spec.name
            )));
        }
        match part {
            Some(Part::Graph(b)) => graph.bytes.extend_from_slice(&b),
            Some(Part::External(f)) => external_chunk(&mut graph.external, f)?,
            Some(Part::Header(_)) => return Err(Status::invalid_argument("a second header in one import")),
            None => {}
        }
    }
    if graph.bytes.is_empty() {
        return Err(Status::invalid_argument("the import has no graph: send the .onnx file's bytes"));
    }
    check_external(&graph)?;
    Ok(graph)
}

/// The `model.trained` an imported artifact stands in for, as the registry records and announces it.
fn trained_event(m: &Manifest, artifact: &Sha256, size: usize, spec_hash: String, who: &str) -> pb::ModelTrained {
    pb::ModelTrained {
        pipeline: m.pipeline.clone(),
        job_id: format!("import-{}", mlops_shared::ids::short(artifact.as_str())),
        artifact_sha256: artifact.to_string(),
        artifact_size: size as u64,
        dataset_ids: m.dataset_ids.clone(),
        spec_hash,
        seed: m.seed,
        code_version: m.code_version.clone(),
        algorithm: m.algorithm.clone(),
        holdout_metrics: Some(pb::Metrics { values: m.metrics.clone().into_iter().collect(), rows: m.holdout_rows }),
        reason: pb::TrainReason::Imported as i32,
        trainer_id: format!("imported by {who}"),
        training_millis: 0,
        business: m.decision.as_ref().map(Into::into),
        // Not trained by a code step.
        ..Default::default()
    }
}

/// External files one import may carry.
const MAX_EXTERNAL_FILES: usize = 4096;

/// Appends a chunk to the external file it names (a new one when the path changes).
fn external_chunk(files: &mut Vec<(String, Vec<u8>)>, chunk: pb::ExternalFileChunk) -> Result<(), Status> {
    mlops_shared::model::onnx_graph::check_external_name(&chunk.path).map_err(Status::invalid_argument)?;
    if files.len() >= MAX_EXTERNAL_FILES && files.last().is_none_or(|(name, _)| *name != chunk.path) {
        return Err(Status::invalid_argument(format!("more than {MAX_EXTERNAL_FILES} external files")));
    }
    if let Some((name, bytes)) = files.last_mut()
        && *name == chunk.path
    {
        bytes.extend_from_slice(&chunk.data);
    } else if files.iter().any(|(name, _)| *name == chunk.path) {
        return Err(Status::invalid_argument(format!("external file {:?} sent twice", chunk.path)));
    } else {
        files.push((chunk.path, chunk.data));
    }
    Ok(())
}

/// An import refused on the blocking pool, where a panic (of the checks, or of the model's
/// runtime) is a refusal too, never a crash.
struct Refused(Status);

impl From<Status> for Refused {
    fn from(s: Status) -> Self {
        Self(s)
    }
}

impl From<mlops_shared::bus::Interrupted> for Refused {
    fn from(e: mlops_shared::bus::Interrupted) -> Self {
        Self(Status::invalid_argument(format!("checking the model failed: {e}")))
    }
}

/// The external files sent are exactly those the graph stores tensors in.
fn check_external(graph: &Graph) -> Result<(), Status> {
    let named = mlops_shared::model::onnx_graph::external_files(&graph.bytes).map_err(Status::invalid_argument)?;
    if let Some(missing) = named.iter().find(|n| graph.external.iter().all(|(sent, _)| sent != *n)) {
        return Err(Status::invalid_argument(format!(
            "the graph stores tensors in the external file `{missing}`, which the import did not include"
        )));
    }
    if let Some((extra, _)) = graph.external.iter().find(|(sent, _)| !named.contains(sent)) {
        return Err(Status::invalid_argument(format!("external file `{extra}` is not one the graph names")));
    }
    Ok(())
}

fn sha(id: &str) -> Result<Sha256, Status> {
    Sha256::parse(id.to_owned()).map_err(|e| Status::internal(e.to_string()))
}

fn who(by: &str) -> &str {
    if by.trim().is_empty() { "an unnamed client" } else { by }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}
