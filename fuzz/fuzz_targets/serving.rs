//! Inference request bodies against a served model: the first byte picks OIP v2 REST JSON, the
//! OIP v2 gRPC message (protobuf), or MLflow `/invocations` as JSON or CSV; the rest is the body.
#![no_main]
use std::sync::LazyLock;

use mlops_fuzz::Serving;
use prost::Message as _;

static SERVED: LazyLock<Serving> = LazyLock::new(mlops_fuzz::served);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let (models, log) = (&SERVED.models, &SERVED.log);
    match pick % 4 {
        0 => drop(mlops_deployer::rest::infer_body(models, log, "churn", None, body)),
        1 => {
            if let Ok(request) = mlops_proto::inference::ModelInferRequest::decode(body) {
                drop(mlops_deployer::grpc::infer_message(models, log, request));
            }
        }
        2 => drop(mlops_deployer::invocations::score_body(models, log, "churn", "application/json", body)),
        _ => drop(mlops_deployer::invocations::score_body(models, log, "churn", "text/csv", body)),
    }
});
