//! Serving beyond OIP: MLflow-style `/invocations` in every layout, several pipelines at once,
//! and hot swaps under load that fail no request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mlops_integration_tests::{TestApp, client, rows_json, sample, wait_until};
use sample::Variant;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

async fn post(url: &str, content_type: &str, body: String) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).header("content-type", content_type).body(body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// The platform with the example pipeline `churn` serving its first model; `/invocations`' URL.
async fn serving_churn(seed: u64) -> (TestApp, String) {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, seed, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn").await;
    let url = format!("{}/invocations", app.stack.url("deployer"));
    (app, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_invocations_answer_every_layout_and_refuse_bad_input_with_the_reason() {
    let (app, url) = serving_churn(11).await;
    let base = app.stack.url("deployer");
    let customers = sample::customers(3, 12, Variant::Normal);
    let records = rows_json(&customers);
    let oip = client::predict(&base, "churn", &records).await.unwrap();
    let expected = oip["outputs"][0]["data"].clone();
    let columns: Vec<String> = records[0].as_object().unwrap().keys().cloned().collect();
    let split: Vec<Vec<Value>> =
        records.as_array().unwrap().iter().map(|r| columns.iter().map(|c| r[c].clone()).collect()).collect();
    let columnar: serde_json::Map<String, Value> = columns
        .iter()
        .map(|c| (c.clone(), records.as_array().unwrap().iter().map(|r| r[c].clone()).collect()))
        .collect();
    for body in [
        json!({"dataframe_split": {"columns": columns, "data": split}}),
        json!({"dataframe_records": records}),
        json!({"instances": records}),
        json!({"inputs": columnar}),
    ] {
        let (code, answer) = post(&url, "application/json", body.to_string()).await;
        assert_eq!(code, 200, "{body}: {answer}");
        assert_eq!(answer["predictions"], expected, "{body}");
        assert_eq!(answer["labels"].as_array().unwrap().len(), 3);
        assert_eq!(answer["model_version"], "1");
    }
    // CSV as the sample writes it: the id and the label are not inputs and are ignored.
    let csv = sample::csv(3, 12, Variant::Normal);
    let (code, answer) = post(&url, "text/csv", csv).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["predictions"], expected);

    // Bad input: each refused with the reason.
    for (content_type, body, code, expected) in [
        ("application/json", "{not json".to_owned(), 400, "invalid JSON"),
        ("application/json", json!({"rows": []}).to_string(), 400, "give exactly one of"),
        ("application/json", json!({"dataframe_records": [{"age": 3}]}).to_string(), 400, "column `tenure_months` is missing"),
        (
            "application/json",
            json!({"dataframe_records": [{"tenure_months": "many", "monthly_charges": 1, "support_calls": 1, "age": 1, "contract": "one-year", "payment_method": "card"}]}).to_string(),
            400,
            "\"many\" is not a number",
        ),
        ("text/plain", "x".to_owned(), 415, "send application/json or text/csv"),
    ] {
        let (got, answer) = post(&url, content_type, body.clone()).await;
        assert_eq!(got, code, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains(expected), "{body}: {answer}");
    }
    let (code, answer) = post(&format!("{url}?pipeline=nope"), "text/csv", "a\n1\n".into()).await;
    assert_eq!(code, 404, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_name_the_pipeline_when_several_are_served_and_every_answer_is_counted() {
    let (app, url) = serving_churn(14).await;
    let base = app.stack.url("deployer");
    let records = rows_json(&sample::customers(3, 12, Variant::Normal));
    let body = json!({"dataframe_records": records}).to_string();
    let (code, alone) = post(&url, "application/json", body.clone()).await;
    assert_eq!(code, 200, "one pipeline served: no need to name it: {alone}");
    let expected = alone["predictions"].clone();

    // A second pipeline served beside the first.
    app.apply(&mlops_cli::EXAMPLE_SPEC.replace("name: churn\n", "name: churn-eu\n")).await;
    app.upload("churn-eu", &sample::csv(1500, 13, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn-eu").await;
    let (code, answer) = post(&url, "application/json", body.clone()).await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("several pipelines are served (churn, churn-eu)"), "{answer}");
    for target in [format!("{url}?pipeline=churn-eu"), format!("{base}/models/churn-eu/invocations")] {
        let (code, answer) = post(&target, "application/json", body.clone()).await;
        assert_eq!(code, 200, "{target}: {answer}");
        assert_ne!(answer["predictions"], expected, "another model, other probabilities");
    }
    let (code, answer) = post(&format!("{url}?pipeline=churn"), "application/json", body).await;
    assert_eq!((code, &answer["predictions"]), (200, &expected));
    // Everything served is counted, from the first request on: two answers of three rows.
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    let served: f64 = metrics
        .lines()
        .find(|l| l.starts_with("mlops_predictions_total{pipeline=\"churn\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(served, 3.0 * 2.0, "{metrics}");
    assert!(metrics.contains("mlops_inference_seconds_bucket{protocol=\"invocations\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_under_load_fail_no_request() {
    let app = Arc::new(TestApp::start().await);
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 21, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.upload("churn", &sample::csv(1500, 22, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;

    let base = app.stack.url("deployer");
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let rows = rows_json(&sample::customers(4, 23, Variant::Normal));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (base, stop, answered, failed, seen, rows) =
                (base.clone(), stop.clone(), answered.clone(), failed.clone(), seen.clone(), rows.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client::predict(&base, "churn", &rows).await {
                        Ok(body) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            seen.lock().unwrap().insert(body["model_version"].as_str().unwrap_or_default().to_owned());
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("failed: {e:#}");
                        }
                    }
                }
            })
        })
        .collect();
    // Each swap, and the end, comes once the load has had more answers since the last: every
    // swap happens under load, whatever the machine's speed.
    let answered_more = |n: usize| {
        let (answered, mark) = (answered.clone(), answered.load(Ordering::Relaxed));
        wait_until(T, move || {
            let answered = answered.clone();
            async move { (answered.load(Ordering::Relaxed) >= mark + n).then_some(()) }
        })
    };
    let mut deployer = mlops_proto::deployer_client::DeployerClient::connect(base.clone()).await.unwrap();
    for i in 0..6u64 {
        answered_more(40).await.expect("the load goes on");
        let version = 1 + (i % 2);
        let d = deployer
            .deploy(mlops_proto::DeployRequest { pipeline: "churn".into(), version, reason: format!("swap {i}") })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.version, version);
    }
    answered_more(40).await.expect("the load goes on");
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (answered, failed) = (answered.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{answered} answered");
    assert!(answered > 200, "{answered}");
    assert_eq!(seen.lock().unwrap().iter().cloned().collect::<Vec<_>>(), ["1", "2"]);
    let audit = client::models(&app.stack.url("registry"), "churn").await.unwrap();
    assert_eq!(audit[1].aliases, ["candidate", "production"], "the last swap made v2 production");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_bearer_token_and_reads_do_not() {
    let app = TestApp::start_with(&[("MLOPS_ADMIN_TOKEN", "s3cret-admin")]).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 31, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.upload("churn", &sample::csv(1500, 32, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;
    let base = app.stack.url("deployer");
    let mlops = |args: &[&str]| {
        let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
            .args(["--deployer-url", &base])
            .args(args)
            .env_remove("MLOPS_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = mlops(&["deploy", "churn@1"]);
    assert!(!ok && said.contains("Deploy needs `authorization: Bearer <admin token>`"), "{said}");
    let (ok, said) = mlops(&["--admin-token", "guess", "rollback", "churn"]);
    assert!(!ok && said.contains("Rollback: the bearer token is not the admin token"), "{said}");
    let (ok, said) = mlops(&["traffic", "churn", "--canary", "5"]);
    assert!(!ok && said.contains("SetTraffic needs"), "{said}");
    let (ok, said) = mlops(&["--admin-token", "s3cret-admin", "deploy", "churn@1"]);
    assert!(ok && said.contains("churn now serves v1"), "{said}");
    // The registry's mutating calls too (the deployer's own promotions above carried the token).
    let registry = app.stack.url("registry");
    let (ok, said) = mlops(&["--registry-url", &registry, "models", "block", "churn@2", "--reason", "r"]);
    assert!(!ok && said.contains("DecideModelVersion needs `authorization: Bearer"), "{said}");
    let (ok, said) = mlops(&["--registry-url", &registry, "models", "tag", "churn@2", "team=growth"]);
    assert!(!ok && said.contains("UpdateModelVersion needs"), "{said}");
    let spec = app.dir.path().join("spec.yaml");
    std::fs::write(&spec, mlops_cli::EXAMPLE_SPEC).unwrap();
    let (ok, said) = mlops(&["--registry-url", &registry, "pipeline", "apply", spec.to_str().unwrap()]);
    assert!(!ok && said.contains("ApplyPipeline needs"), "{said}");
    let (ok, said) = mlops(&[
        "--registry-url",
        &registry,
        "--admin-token",
        "s3cret-admin",
        "models",
        "tag",
        "churn@2",
        "team=growth",
    ]);
    assert!(ok, "{said}");
    // Reading needs no token, and neither do predictions.
    let (ok, said) = mlops(&["--registry-url", &registry, "models", "list", "--pipeline", "churn"]);
    assert!(ok && said.contains("production"), "{said}");
    client::predict(&base, "churn", &rows_json(&sample::customers(2, 33, Variant::Normal))).await.unwrap();
    for service in mlops_cli::stack::SERVICES {
        assert!(!app.log(service).contains("s3cret-admin"), "{service} logged the admin token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_size_limit_is_refused_as_json_whatever_the_protocol() {
    let app = TestApp::start_with(&[("MLOPS_MAX_REQUEST_BYTES", "4096")]).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 31, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let base = app.stack.url("deployer");
    // Under the limit: answered.
    client::predict(&base, "churn", &rows_json(&sample::customers(2, 33, Variant::Normal))).await.unwrap();
    let big = rows_json(&sample::customers(200, 34, Variant::Normal));
    let (code, answer) = post(
        &format!("{base}/v2/models/churn/infer"),
        "application/json",
        json!({"inputs": [{"name": "age", "shape": [200], "datatype": "BYTES", "data": big}]}).to_string(),
    )
    .await;
    assert_eq!(code, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("request body refused"), "{answer}");
    let (code, _) =
        post(&format!("{base}/invocations"), "application/json", json!({"dataframe_records": big}).to_string()).await;
    assert_eq!(code, 413);
    use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    use mlops_proto::inference::model_infer_request::InferInputTensor;
    let mut grpc = GrpcInferenceServiceClient::connect(base.clone()).await.unwrap();
    let huge = InferInputTensor {
        name: "age".into(),
        datatype: "FP64".into(),
        shape: vec![1000],
        contents: Some(mlops_proto::inference::InferTensorContents {
            fp64_contents: vec![1.0; 1000],
            ..Default::default()
        }),
        ..Default::default()
    };
    let refused = grpc
        .model_infer(mlops_proto::inference::ModelInferRequest {
            model_name: "churn".into(),
            inputs: vec![huge],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(refused.message().contains("too large"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_subscriber_example_sees_promotions_and_rollbacks_as_cloudevents() {
    let app = TestApp::start().await;
    // `cargo test` builds the examples beside the binaries.
    let example = app.stack.opts.bin_dir.join("examples").join("promotions");
    let mut child = tokio::process::Command::new(&example)
        .args([app.stack.nats_url.as_str(), "3"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    // It says so once its subscriptions are in place.
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut listening = String::new();
    tokio::time::timeout(T, stdout.read_line(&mut listening)).await.expect("the example starts").unwrap();
    assert!(listening.starts_with("listening on"), "{listening}");
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 41, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.upload("churn", &sample::csv(1500, 42, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;
    let mut deployer = mlops_proto::deployer_client::DeployerClient::connect(app.stack.url("deployer")).await.unwrap();
    deployer
        .rollback(mlops_proto::RollbackRequest { pipeline: "churn".into(), reason: "by hand".into() })
        .await
        .unwrap();
    let mut printed = String::new();
    let status = tokio::time::timeout(T, async {
        stdout.read_to_string(&mut printed).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("the example ends after 3 events");
    assert!(status.success(), "{printed}");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(
        lines[0].contains("io.mlops.model.promoted.v1") && lines[0].contains("churn now serves v1 (was v0)"),
        "{printed}"
    );
    assert!(lines[1].contains("churn now serves v2 (was v1): passed its quality gates"), "{printed}");
    assert!(
        lines[2].contains("io.mlops.model.rolled_back.v1") && lines[2].contains("from v2 to v1: by hand"),
        "{printed}"
    );
}

/// The platform serving `churn`, the OIP REST inference URL, and its answer for two rows given by
/// named inputs: the reference the other layouts must match.
async fn two_rows_answered(seed: u64) -> (TestApp, String, Vec<f64>) {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, seed, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |_| true).await;
    let base = app.stack.url("deployer");
    let named = json!({"inputs": [
        {"name": "tenure_months", "shape": [2], "datatype": "FP64", "data": [3, 40]},
        {"name": "monthly_charges", "shape": [2], "datatype": "FP64", "data": [80, 35.5]},
        {"name": "support_calls", "shape": [2], "datatype": "FP64", "data": [1, 0]},
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [null, 61]},
        {"name": "contract", "shape": [2], "datatype": "BYTES", "data": ["month-to-month", "two-year"]},
        {"name": "payment_method", "shape": [2], "datatype": "BYTES", "data": ["card", "bank-transfer"]}]});
    let infer = format!("{base}/v2/models/churn/infer");
    let (code, reference) = post(&infer, "application/json", named.to_string()).await;
    assert_eq!(code, 200, "{reference}");
    let expected: Vec<f64> = serde_json::from_value(reference["outputs"][0]["data"].clone()).unwrap();
    (app, infer, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_rest_accepts_the_rows_as_one_2d_tensor() {
    let (_app, infer, expected) = two_rows_answered(51).await;
    // The same rows as one [2, 6] tensor in the model's feature order.
    let matrix = json!({"inputs": [{"name": "input", "shape": [2, 6], "datatype": "BYTES", "data": [
        ["3", "80", "1", "", "month-to-month", "card"], ["40", "35.5", "0", "61", "two-year", "bank-transfer"]]}]});
    let (code, answer) = post(&infer, "application/json", matrix.to_string()).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(serde_json::from_value::<Vec<f64>>(answer["outputs"][0]["data"].clone()).unwrap(), expected);
    let wrong = json!({"inputs": [{"name": "input", "shape": [2, 5], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}]});
    let (code, answer) = post(&infer, "application/json", wrong.to_string()).await;
    assert_eq!(code, 400);
    assert!(answer["error"].as_str().unwrap().contains("a 2-D tensor must be [rows, 6]"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_grpc_accepts_raw_contents_of_every_numeric_datatype_and_one_2d_tensor() {
    use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    use mlops_proto::inference::model_infer_request::InferInputTensor;
    use mlops_proto::inference::{InferTensorContents, ModelInferRequest};
    let (app, _, expected) = two_rows_answered(52).await;
    let base = app.stack.url("deployer");
    // FP32, INT64 as raw little-endian bytes, BOOL, and the same 2-D tensor.
    let mut grpc = GrpcInferenceServiceClient::connect(base.clone()).await.unwrap();
    let tensor = |name: &str, datatype: &str, contents: InferTensorContents| InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![2],
        contents: Some(contents),
        ..Default::default()
    };
    let bytes = |v: &[&str]| InferTensorContents {
        bytes_contents: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    let mut tenure = tensor("tenure_months", "INT64", InferTensorContents::default());
    tenure.contents = None;
    let raw_tenure: Vec<u8> = [3i64, 40].iter().flat_map(|v| v.to_le_bytes()).collect();
    let inputs = [
        tenure,
        tensor(
            "monthly_charges",
            "FP32",
            InferTensorContents { fp32_contents: vec![80.0, 35.5], ..Default::default() },
        ),
        tensor("support_calls", "BOOL", InferTensorContents { bool_contents: vec![true, false], ..Default::default() }),
        tensor("age", "FP64", InferTensorContents { fp64_contents: vec![f64::NAN, 61.0], ..Default::default() }),
        tensor("contract", "BYTES", bytes(&["month-to-month", "two-year"])),
        tensor("payment_method", "BYTES", bytes(&["card", "bank-transfer"])),
    ];
    // Raw contents come for every input or none: give the others' raw bytes too.
    let raw = |t: &InferInputTensor| -> Vec<u8> {
        let c = t.contents.clone().unwrap_or_default();
        match t.datatype.as_str() {
            "INT64" => raw_tenure.clone(),
            "FP32" => c.fp32_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
            "BOOL" => c.bool_contents.iter().map(|b| u8::from(*b)).collect(),
            "FP64" => c.fp64_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
            _ => c
                .bytes_contents
                .iter()
                .flat_map(|b| (b.len() as u32).to_le_bytes().into_iter().chain(b.iter().copied()))
                .collect(),
        }
    };
    let raw_inputs: Vec<Vec<u8>> = inputs.iter().map(raw).collect();
    let request = ModelInferRequest {
        model_name: "churn".into(),
        inputs: inputs
            .iter()
            .cloned()
            .map(|mut t| {
                t.contents = None;
                t
            })
            .collect(),
        raw_input_contents: raw_inputs,
        ..Default::default()
    };
    let r = grpc.model_infer(request).await.unwrap().into_inner();
    // Raw inputs get raw outputs, as from Triton: one entry per output, none typed.
    assert_eq!(r.raw_output_contents.len(), r.outputs.len());
    assert!(r.outputs.iter().all(|o| o.contents.is_none()));
    let got: Vec<f64> =
        r.raw_output_contents[0].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    // NaN is how a missing age travels in FP64 over gRPC; it scores as missing, like null in JSON.
    assert_eq!(got, expected, "raw FP32/INT64/BOOL/FP64/BYTES");
    let ids = &r.raw_output_contents[r.outputs.iter().position(|o| o.name == "prediction_id").unwrap()];
    let first = u32::from_le_bytes(ids[..4].try_into().unwrap()) as usize;
    assert_eq!(first, 36, "a uuid, length-prefixed");
    let matrix = InferInputTensor {
        name: "input".into(),
        datatype: "BYTES".into(),
        shape: vec![2, 6],
        contents: Some(bytes(&[
            "3",
            "80",
            "1",
            "",
            "month-to-month",
            "card",
            "40",
            "35.5",
            "0",
            "61",
            "two-year",
            "bank-transfer",
        ])),
        ..Default::default()
    };
    let r = grpc
        .model_infer(ModelInferRequest { model_name: "churn".into(), inputs: vec![matrix], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&r.outputs[0].contents.as_ref().unwrap().fp64_contents, &expected);
    let bad = InferInputTensor {
        shape: vec![3],
        ..tensor("age", "FP64", InferTensorContents { fp64_contents: vec![1.0, 2.0], ..Default::default() })
    };
    let err = grpc
        .model_infer(ModelInferRequest { model_name: "churn".into(), inputs: vec![bad], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("shape [3] does not match its 2 values"), "{err:?}");
}
