//! Stored models made ready to answer: a built-in artifact as it is, an imported ONNX graph
//! through ONNX Runtime, found where a service looks for it at start.

use std::path::PathBuf;
use std::sync::Arc;

use mlops_shared::ids::Sha256;
use mlops_shared::model::{Manifest, Model, ModelError, OnnxArtifact, Prediction, Stored};
use mlops_shared::table::Value;

use crate::contract::ContractError;
use crate::model::{OnnxModel, PredictError};
use crate::runtime::{LIBRARY_ENV, Runtime, RuntimeError, check_path};

/// `ort`'s own name for the library's path, read when [`LIBRARY_ENV`] is not set.
pub const ORT_ENV: &str = "ORT_DYLIB_PATH";

/// Where `just deps` installs the library, relative to the directory of the running executable
/// (`target/debug/../onnxruntime/`, and `/usr/local/bin/../onnxruntime/` in the container image).
pub const DEFAULT_LIBRARY: &str = "../onnxruntime/libonnxruntime.so";

/// The ONNX engine of a service: the library it loads when it first meets an ONNX model, or why
/// there is none. Loading waits until then: a service that never serves one does not carry the
/// runtime (tens of MB resident).
#[derive(Clone)]
pub struct Engine {
    library: Result<PathBuf, RuntimeError>,
}

/// Why a stored model cannot answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("it is an ONNX model and this service has no ONNX Runtime: {0}")]
    NoRuntime(RuntimeError),
    #[error(transparent)]
    Contract(#[from] ContractError),
}

impl Engine {
    /// The library named by [`LIBRARY_ENV`], else by [`ORT_ENV`], else at [`DEFAULT_LIBRARY`]
    /// when a file is there. A named path that is not a file is an error (the service says so at
    /// start); with none named or installed the service runs without ONNX, and refuses ONNX
    /// models with the reason.
    pub fn from_env() -> Result<Self, RuntimeError> {
        let named = [LIBRARY_ENV, ORT_ENV].iter().find_map(|name| std::env::var_os(name).filter(|p| !p.is_empty()));
        if let Some(path) = named {
            let path = PathBuf::from(path);
            check_path(&path)?;
            return Ok(Self { library: Ok(path) });
        }
        Ok(Self { library: default_library().ok_or(RuntimeError::NotConfigured) })
    }

    /// The runtime, loaded on the first call (once per process), or why there is none.
    pub fn runtime(&self) -> Result<&'static Runtime, RuntimeError> {
        self.library.as_ref().map_err(Clone::clone).and_then(|path| Runtime::load(path))
    }

    /// Makes a verified stored model ready to answer.
    pub fn load(&self, stored: Stored) -> Result<Arc<dyn Model>, LoadError> {
        match stored {
            Stored::Builtin(artifact) => Ok(Arc::new(artifact)),
            Stored::Onnx(onnx) => {
                let runtime = self.runtime().map_err(LoadError::NoRuntime)?;
                Ok(Arc::new(Imported::load(runtime, &onnx)?))
            }
        }
    }

    /// Checks `bytes` against `sha` and makes the model they hold ready to answer: what a
    /// service does with an artifact before it judges or serves it.
    pub fn load_verified(&self, bytes: &[u8], sha: &Sha256) -> Result<Arc<dyn Model>, String> {
        let stored = Stored::from_verified_bytes(bytes, sha).map_err(|e| e.to_string())?;
        self.load(stored).map_err(|e| e.to_string())
    }
}

/// The installed library beside the running executable, when there is one.
fn default_library() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.join(DEFAULT_LIBRARY);
    let path = std::fs::canonicalize(path).ok()?;
    path.is_file().then_some(path)
}

/// An imported model: its manifest, and its graph loaded and checked against it.
pub struct Imported {
    manifest: Manifest,
    model: OnnxModel,
}

impl Imported {
    /// Loads `onnx`'s graph, checked against the features and task of its manifest.
    pub fn load(runtime: &Runtime, onnx: &OnnxArtifact) -> Result<Self, ContractError> {
        let m = &onnx.manifest;
        let model = OnnxModel::load_with(runtime, &onnx.graph, &onnx.external, &m.features, m.target.task)?;
        Ok(Self { manifest: onnx.manifest.clone(), model })
    }
}

impl Model for Imported {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn predict_rows(&self, rows: &[Vec<Value>]) -> Result<Vec<Prediction>, ModelError> {
        let task = self.manifest.target.task;
        let scores = self.model.predict(rows).map_err(|e| match e {
            PredictError::Input { .. } => ModelError::BadInput(e.to_string()),
            PredictError::Runtime(_) => ModelError::Engine(e.to_string()),
        })?;
        let threshold = self.manifest.threshold();
        Ok(scores.into_iter().map(|s| Prediction::of(task, s, threshold)).collect())
    }

    fn platform(&self) -> String {
        "onnxruntime_onnx".into()
    }
}
