//! The `mlops` command's library: the process supervisor behind `up` and `demo` (also used by the
//! end-to-end tests) and its restart policy, clients for the platform's APIs, and the bundled example data.

#![allow(clippy::print_stdout)] // the CLI talks to people on stdout

pub mod card;
pub mod client;
pub mod code_bundle;
pub mod code_tests;
pub mod demo;
pub mod environments;
pub mod events;
pub mod model_ref;
pub mod onnx_import;
pub mod output;
pub mod pipeline_test;
pub mod promotion;
pub mod reproduce;
pub mod runs;
pub mod sample;
pub mod stack;
pub mod supervisor;
pub mod tables;

/// The bundled example pipeline spec (`examples/churn.yaml`).
pub const EXAMPLE_SPEC: &str = include_str!("../../examples/churn.yaml");
