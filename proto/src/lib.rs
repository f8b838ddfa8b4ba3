//! The platform's wire contracts, generated from `proto/` at build time.
//!
//! `mlops::v1` holds the events and the Registry, Ingest, Deployer, Monitor and Evaluator services;
//! `inference` holds the Open Inference Protocol v2 (`GRPCInferenceService`).

#![allow(unreachable_pub, clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Events and platform services, package `mlops.v1`.
pub mod v1 {
    tonic::include_proto!("mlops.v1");
}

/// Open Inference Protocol v2, package `inference`.
pub mod inference {
    tonic::include_proto!("inference");
}

pub use v1::*;
