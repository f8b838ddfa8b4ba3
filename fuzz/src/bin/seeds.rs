//! Writes the seed corpus into `corpus/<target>/` (the directory given, else `corpus`): one
//! well-formed input of each kind each target reads, from the platform's own encoders.

use std::io::Write as _;
use std::path::Path;

use mlops_proto::inference::{InferTensorContents, ModelInferRequest, model_infer_request::InferInputTensor};
use mlops_proto::v1 as pb;
use prost::Message as _;

fn put(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn prefixed(pick: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![pick];
    v.extend_from_slice(body);
    v
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let root = Path::new(&root);
    let rows = mlops_fuzz::ROWS.as_bytes();

    put(root, "data_csv", "rows.csv", rows);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(rows).unwrap();
    put(root, "data_csv", "rows.csv.gz", &gz.finish().unwrap());
    put(root, "data_csv", "rows.csv.zst", &zstd::encode_all(rows, 3).unwrap());
    put(root, "data_csv", "quoted.csv", b"a,\"b,c\"\n\"x\"\"y\",2\n,\n");

    let jsonl = "{\"tenure_months\": 1, \"monthly_charges\": 50.5, \"support_calls\": 3, \"age\": null, \
                 \"contract\": \"one-year\", \"payment_method\": \"card\", \"churned\": \"1\"}\n\
                 {\"tenure_months\": 40, \"monthly_charges\": 20, \"support_calls\": 0, \"age\": 61, \
                 \"contract\": \"two-year\", \"payment_method\": \"bank-transfer\", \"churned\": 0}\n";
    put(root, "data_jsonl", "rows.jsonl", jsonl.as_bytes());

    put(root, "spec", "churn.yaml", mlops_fuzz::SPEC.as_bytes());
    put(root, "spec", "churn.json", &mlops_fuzz::spec().canonical_json());

    let arrived = br#"{"pipeline": "churn", "object": "drop/x.csv", "source": "crm", "environment": "training"}"#;
    put(root, "events", "data_arrived.json", &prefixed(1, arrived));
    let arrived_pb = pb::DataArrived { pipeline: "churn".into(), path: "/data/x.csv".into(), ..Default::default() };
    put(root, "events", "data_arrived.pb", &prefixed(0, &arrived_pb.encode_to_vec()));
    let labels = br#"{"pipeline": "churn", "labels": [{"predictionId": "p-1", "label": "1"}]}"#;
    put(root, "events", "labels_arrived.json", &prefixed(3, labels));
    let trained = pb::ModelTrained { pipeline: "churn".into(), job_id: "j-1".into(), ..Default::default() };
    put(root, "events", "model_trained.pb", &prefixed(16, &trained.encode_to_vec()));

    let rest = br#"{"id": "r1", "inputs": [
        {"name": "tenure_months", "datatype": "FP64", "shape": [2], "data": [1, 40]},
        {"name": "monthly_charges", "datatype": "FP64", "shape": [2], "data": [50.5, NaN]},
        {"name": "support_calls", "datatype": "INT64", "shape": [2], "data": [3, 0]},
        {"name": "age", "datatype": "FP64", "shape": [2], "data": [null, 61]},
        {"name": "contract", "datatype": "BYTES", "shape": [2], "data": ["one-year", "two-year"]},
        {"name": "payment_method", "datatype": "BYTES", "shape": [2], "data": ["card", "bank-transfer"]}]}"#;
    put(root, "serving", "rest.json", &prefixed(0, rest));
    let num = |name: &str, v: Vec<f64>| InferInputTensor {
        name: name.into(),
        datatype: "FP64".into(),
        shape: vec![v.len() as i64],
        contents: Some(InferTensorContents { fp64_contents: v, ..Default::default() }),
        ..Default::default()
    };
    let cat = |name: &str, v: &[&str]| InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![v.len() as i64],
        contents: Some(InferTensorContents {
            bytes_contents: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let grpc = ModelInferRequest {
        model_name: "churn".into(),
        inputs: vec![
            num("tenure_months", vec![1.0, 40.0]),
            num("monthly_charges", vec![50.5, 20.0]),
            num("support_calls", vec![3.0, 0.0]),
            num("age", vec![30.0, 61.0]),
            cat("contract", &["one-year", "two-year"]),
            cat("payment_method", &["card", "bank-transfer"]),
        ],
        ..Default::default()
    };
    put(root, "serving", "grpc.pb", &prefixed(1, &grpc.encode_to_vec()));
    let split = br#"{"dataframe_split": {"columns": ["tenure_months", "monthly_charges", "support_calls", "age",
        "contract", "payment_method"], "data": [[1, 50.5, 3, null, "one-year", "card"]]}}"#;
    put(root, "serving", "invocations.json", &prefixed(2, split));
    let records = br#"{"instances": [{"tenure_months": 1, "monthly_charges": "50.5", "support_calls": 3,
        "age": 30, "contract": "one-year", "payment_method": "card"}]}"#;
    put(root, "serving", "instances.json", &prefixed(2, records));
    put(root, "serving", "invocations.csv", &prefixed(3, rows));

    let serving = mlops_fuzz::served();
    let artifact = serving.models.get("churn").expect("served").artifact.to_bytes();
    put(root, "artifact", "example.json", &artifact);
    println!("seeds written under {}", root.display());
}
