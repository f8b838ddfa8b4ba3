//! Compiles `proto/` with protox (pure Rust), so building needs no `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mlops/v1/events.proto",
        "proto/mlops/v1/registry.proto",
        "proto/mlops/v1/ingest.proto",
        "proto/mlops/v1/deployer.proto",
        "proto/mlops/v1/monitor.proto",
        "proto/mlops/v1/evaluator.proto",
        "proto/inference/grpc_predict_v2.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // Events that outside systems publish are also accepted as proto3 JSON (lowerCamelCase).
    let json = "#[derive(serde::Deserialize, serde::Serialize)] #[serde(rename_all = \"camelCase\", default)]";
    tonic_prost_build::configure()
        .type_attribute("mlops.v1.DataArrived", json)
        .type_attribute("mlops.v1.LabelsArrived", json)
        .type_attribute("mlops.v1.FeedbackOrigin", json)
        .type_attribute("mlops.v1.TrainRequested", json)
        .type_attribute("mlops.v1.BatchRequested", json)
        .type_attribute("mlops.v1.Label", json)
        .type_attribute("mlops.v1.StalenessReported", json)
        .type_attribute("mlops.v1.StalenessRow", json)
        .type_attribute("mlops.v1.DataErased", json)
        .type_attribute("mlops.v1.ErasedVersion", json)
        .type_attribute("mlops.v1.ErasedMark", json)
        .type_attribute("mlops.v1.ErasedArchiveFile", json)
        .compile_fds(descriptors)?;
    Ok(())
}
