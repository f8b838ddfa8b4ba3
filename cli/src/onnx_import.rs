//! What `mlops models import` sends: an ONNX file, or the `onnx` flavor of an MLflow model
//! directory, with the external weight files its graph names, read from beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mlops_proto as pb;
use mlops_shared::model::onnx_graph;

/// Bytes per message of the import stream.
const CHUNK: usize = 1 << 20;

/// A model's files as read.
pub struct ModelFiles {
    /// The graph's file name, for the record.
    pub file_name: String,
    pub graph: Vec<u8>,
    /// The external weight files, by the path the graph names them with.
    pub external: Vec<(String, Vec<u8>)>,
}

/// Reads `path`: an `.onnx` file, or an MLflow model directory whose `MLmodel` has the `onnx`
/// flavor (its `data` file is the graph).
pub fn read(path: &Path) -> anyhow::Result<ModelFiles> {
    let graph_path = if path.is_dir() { mlflow_graph(path)? } else { path.to_path_buf() };
    let graph = std::fs::read(&graph_path).with_context(|| format!("reading {}", graph_path.display()))?;
    let names = onnx_graph::external_files(&graph).map_err(|e| anyhow::anyhow!("{}: {e}", graph_path.display()))?;
    let dir = graph_path.parent().unwrap_or(Path::new("."));
    let mut external = Vec::with_capacity(names.len());
    for name in names {
        onnx_graph::check_external_name(&name).map_err(|e| anyhow::anyhow!("{}: {e}", graph_path.display()))?;
        let file = dir.join(&name);
        let bytes = std::fs::read(&file)
            .with_context(|| format!("reading {}, which {} stores tensors in", file.display(), graph_path.display()))?;
        external.push((name, bytes));
    }
    let file_name = graph_path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
    Ok(ModelFiles { file_name, graph, external })
}

/// The graph file of an MLflow model directory of the `onnx` flavor.
fn mlflow_graph(dir: &Path) -> anyhow::Result<PathBuf> {
    let mlmodel = dir.join("MLmodel");
    let text = std::fs::read_to_string(&mlmodel)
        .with_context(|| format!("{} is a directory but not an MLflow model (no MLmodel file)", dir.display()))?;
    let doc: serde_json::Value =
        serde_norway::from_str(&text).with_context(|| format!("{} is not valid YAML", mlmodel.display()))?;
    let flavors = doc.get("flavors").and_then(|f| f.as_object());
    let Some(onnx) = flavors.and_then(|f| f.get("onnx")) else {
        let found: Vec<&str> = flavors.map(|f| f.keys().map(String::as_str).collect()).unwrap_or_default();
        bail!(
            "{} has no `onnx` flavor (it has: {}): log the model with mlflow.onnx.log_model",
            mlmodel.display(),
            if found.is_empty() { "none".into() } else { found.join(", ") }
        );
    };
    let data = onnx.get("data").and_then(|d| d.as_str()).unwrap_or(onnx_graph::GRAPH_FILE);
    if onnx_graph::plain_relative(data).is_none() {
        bail!("{}: the onnx flavor's data {data:?} is not a path inside the directory", mlmodel.display());
    }
    Ok(dir.join(data))
}

/// The import stream: the header, the graph, then each external file, in chunks.
pub fn requests(header: pb::ImportModelHeader, files: ModelFiles) -> Vec<pb::ImportModelRequest> {
    use pb::import_model_request::Part;
    let mut out = vec![pb::ImportModelRequest { part: Some(Part::Header(header)) }];
    out.extend(files.graph.chunks(CHUNK).map(|c| pb::ImportModelRequest { part: Some(Part::Graph(c.to_vec())) }));
    for (path, bytes) in files.external {
        // An empty file is still sent, once.
        let chunks: Vec<&[u8]> = if bytes.is_empty() { vec![&[]] } else { bytes.chunks(CHUNK).collect() };
        out.extend(chunks.into_iter().map(|c| pb::ImportModelRequest {
            part: Some(Part::External(pb::ExternalFileChunk { path: path.clone(), data: c.to_vec() })),
        }));
    }
    out
}
