//! ONNX models from anywhere (scikit-learn through skl2onnx, LightGBM through onnxmltools, PyTorch's
//! exporter) under the platform's contract, run by ONNX Runtime — the engine the exporters check
//! their output against.
//!
//! The runtime is a shared library loaded when a process first needs it, never linked or
//! downloaded at build time: [`Runtime::load`] takes the path of `libonnxruntime.so.*` (the one the
//! pinned `onnxruntime` wheel ships in `onnxruntime/capi/`). It must be ONNX Runtime 1.31 or newer,
//! the API level this crate is built for. A process loads one runtime, once; every later call
//! answers with what the first one found.
//!
//! [`OnnxModel::load`] checks a graph against a pipeline's features and task (see [`contract`])
//! and [`OnnxModel::predict`] answers rows of raw feature values, as the built-in models do:
//! preprocessing lives inside the graph.

pub mod contract;
mod engine;
pub mod import;
mod model;
mod runtime;

pub use contract::ContractError;
pub use engine::{DEFAULT_LIBRARY, Engine, Imported, LoadError, ORT_ENV};
pub use model::{OnnxModel, PredictError};
pub use runtime::{LIBRARY_ENV, Runtime, RuntimeError};
