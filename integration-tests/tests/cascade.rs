//! The cascade end to end: real nats-server, real service binaries, real gRPC and HTTP.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, rows_json, sample, spec_with_window, trainings_run, wait_until};
use mlops_proto as pb;
use mlops_shared::runs::RunState;
use sample::Variant;

const T: Duration = Duration::from_secs(60);

async fn promoted(app: &TestApp, version: u64) {
    app.wait_event("model.promoted", T, |s| matches!(&s.payload, Decoded::Promoted(p) if p.version == version)).await;
}

/// The platform with the example pipeline and its first model, trained on `seed`'s rows and
/// promoted; the dataset and its CSV.
async fn serving_v1(seed: u64) -> (TestApp, pb::Dataset, String) {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let csv = sample::csv(2000, seed, Variant::Normal);
    let ds = app.upload("churn", &csv).await;
    promoted(&app, 1).await;
    (app, ds, csv)
}

/// A new customer on a monthly contract with many support calls, and a long-tenure two-year one:
/// the first churns far more.
fn contrast() -> serde_json::Value {
    serde_json::json!([
        {"tenure_months": 1, "monthly_charges": 110, "support_calls": 6, "age": 25, "contract": "month-to-month", "payment_method": "electronic-check"},
        {"tenure_months": 70, "monthly_charges": 30, "support_calls": 0, "age": 60, "contract": "two-year", "payment_method": "card"},
    ])
}

/// (a) upload → validated → trained → evaluated → promoted, each step once, on one trace; the
/// registry holds the version with its lineage, and the same content again is the same dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_promoted_once_with_its_lineage_on_one_trace() {
    let (app, ds, csv) = serving_v1(1).await;
    assert!(!ds.duplicate);
    assert_eq!(ds.dataset_id, mlops_shared::sha256_hex(csv.as_bytes()));

    // The same content again is the same dataset: no second validation, no second training.
    let again = app.upload("churn", &csv).await;
    assert!(again.duplicate);
    assert_eq!(again.dataset_id, ds.dataset_id);
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    app.assert_cascades_stored("churn", 1).await;

    // The registry has version 1 as production, with its lineage.
    let versions = client::models(&app.stack.url("registry"), "churn").await.unwrap();
    assert_eq!(versions.len(), 1);
    let v = &versions[0];
    assert_eq!(v.aliases, ["candidate", "production"]);
    assert_eq!(v.gate, "passed");
    let lineage = v.lineage.clone().unwrap();
    assert_eq!(lineage.dataset_ids, vec![ds.dataset_id.clone()]);
    assert_eq!(lineage.seed, 42);
    assert!(v.holdout_metrics.as_ref().unwrap().values["roc_auc"] > 0.7);

    // One trace spans the cascade: every event from ingestion to promotion carries the trace id
    // that the upload started.
    let mut stored = app.stored("MLOPS_EVENTS", "mlops.events.>").await;
    // The spec's apply came before the upload, in a trace of its own.
    stored.retain(|m| !m.subject.starts_with("mlops.events.pipeline.applied."));
    let trace_of = |m: &async_nats::jetstream::Message| {
        let tp = m.headers.as_ref().and_then(|h| h.get("traceparent")).map(|v| v.to_string()).unwrap_or_default();
        tp.split('-').nth(1).unwrap_or_default().to_owned()
    };
    let traces: Vec<(String, String)> = stored.iter().map(|m| (m.subject.to_string(), trace_of(m))).collect();
    assert_eq!(traces.len(), 6, "{traces:?}");
    assert!(traces[0].1.len() == 32 && traces.iter().all(|(_, t)| *t == traces[0].1), "{traces:?}");
}

/// OIP v2 over REST: health, metadata and inference from the promoted model, by name and by
/// version; a bad request gets a 4xx with `{"error": ...}` naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_rest_serves_the_model_and_names_what_is_wrong_with_a_bad_request() {
    let (app, ..) = serving_v1(2).await;
    let http = reqwest::Client::new();
    let base = app.stack.url("deployer");
    let live: serde_json::Value =
        http.get(format!("{base}/v2/health/live")).send().await.unwrap().json().await.unwrap();
    assert_eq!(live["live"], true);
    let meta: serde_json::Value =
        http.get(format!("{base}/v2/models/churn")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["versions"][0], "1");
    assert_eq!(meta["inputs"].as_array().unwrap().len(), 6);
    let rows = rows_json(&sample::customers(5, 9, Variant::Normal));
    let body = client::predict(&base, "churn", &rows).await.unwrap();
    let probs: Vec<f64> = body["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 5);
    assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
    let body = client::predict(&base, "churn", &contrast()).await.unwrap();
    let p = body["outputs"][0]["data"].as_array().unwrap();
    assert!(p[0].as_f64().unwrap() > 0.8 && p[1].as_f64().unwrap() < 0.2, "{p:?}");
    let versioned = http
        .post(format!("{base}/v2/models/churn/versions/1/infer"))
        .json(&serde_json::json!({"inputs": [
        {"name": "tenure_months", "shape": [1], "datatype": "FP64", "data": [3]},
        {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [50]},
        {"name": "support_calls", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "age", "shape": [1], "datatype": "FP64", "data": [null]},
        {"name": "contract", "shape": [1], "datatype": "BYTES", "data": ["one-year"]},
        {"name": "payment_method", "shape": [1], "datatype": "BYTES", "data": ["card"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(versioned.status(), 200);

    let cases = [
        ("/v2/models/churn/infer", "{not json", 400, "invalid inference request"),
        (
            "/v2/models/churn/infer",
            r#"{"inputs": [{"name": "tenure_months", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}"#,
            400,
            "must be numeric",
        ),
        (
            "/v2/models/churn/infer",
            r#"{"inputs": [{"name": "tenure_months", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
            400,
            "is missing",
        ),
        (
            "/v2/models/churn/infer",
            r#"{"inputs": [{"name": "colour", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
            400,
            "unknown input `colour`",
        ),
        ("/v2/models/nope/infer", r#"{"inputs": []}"#, 404, "model `nope` is not served"),
        ("/v2/models/churn/versions/7/infer", r#"{"inputs": []}"#, 404, "version 7"),
    ];
    for (path, body, code, needle) in cases {
        let r = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{path} {body}");
        let err: serde_json::Value = r.json().await.unwrap();
        assert!(err["error"].as_str().unwrap().contains(needle), "{err} should mention {needle:?}");
    }
}

/// The gRPC inference request, with typed contents, of one row.
fn grpc_row(model: &str) -> pb::inference::ModelInferRequest {
    use pb::inference::model_infer_request::InferInputTensor;
    use pb::inference::{InferTensorContents, ModelInferRequest};
    let num = |name: &str, v: f64| InferInputTensor {
        name: name.into(),
        datatype: "FP64".into(),
        shape: vec![1],
        contents: Some(InferTensorContents { fp64_contents: vec![v], ..Default::default() }),
        ..Default::default()
    };
    let text = |name: &str, v: &str| InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![1],
        contents: Some(InferTensorContents { bytes_contents: vec![v.as_bytes().to_vec()], ..Default::default() }),
        ..Default::default()
    };
    let inputs = vec![
        num("tenure_months", 1.0),
        num("monthly_charges", 110.0),
        num("support_calls", 6.0),
        num("age", 25.0),
        text("contract", "month-to-month"),
        text("payment_method", "electronic-check"),
    ];
    ModelInferRequest { model_name: model.into(), inputs, ..Default::default() }
}

/// OIP v2 over gRPC, with typed contents: the same probability as REST for the same row, and an
/// unknown model is `NOT_FOUND`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_grpc_serves_the_same_probabilities_as_rest() {
    use pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    let (app, ..) = serving_v1(3).await;
    let base = app.stack.url("deployer");
    let body = client::predict(&base, "churn", &contrast()).await.unwrap();
    let rest_p = body["outputs"][0]["data"][0].as_f64().unwrap();
    let mut grpc = GrpcInferenceServiceClient::connect(base.clone()).await.unwrap();
    let r = grpc.model_infer(grpc_row("churn")).await.unwrap().into_inner();
    let grpc_p = r.outputs[0].contents.as_ref().unwrap().fp64_contents[0];
    assert!((grpc_p - rest_p).abs() < 1e-12, "REST and gRPC disagree: {rest_p} and {grpc_p}");
    let bad = grpc.model_infer(grpc_row("nope")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::NotFound);
}

/// Each row predicted, over REST or gRPC, is logged once for the monitor; then SIGTERM stops
/// every service cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_prediction_is_logged_and_sigterm_stops_every_service_cleanly() {
    use pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    let (mut app, ..) = serving_v1(4).await;
    let base = app.stack.url("deployer");
    client::predict(&base, "churn", &rows_json(&sample::customers(5, 9, Variant::Normal))).await.unwrap();
    client::predict(&base, "churn", &contrast()).await.unwrap();
    let mut grpc = GrpcInferenceServiceClient::connect(base.clone()).await.unwrap();
    grpc.model_infer(grpc_row("churn")).await.unwrap();
    let logged = wait_until(T, || async {
        let n = app.logged_predictions("churn").await.len();
        (n >= 8).then_some(n)
    })
    .await;
    assert_eq!(logged, Some(8), "5 + 2 REST rows and 1 gRPC row");

    let stopped = app.stack.stop(Duration::from_secs(10)).await;
    assert_eq!(stopped.len(), 7);
    assert!(stopped.iter().all(|(_, clean)| *clean), "{stopped:?}");
}

/// (b) a worse data set trains a model that fails its gates and is never promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worse_model_is_not_promoted() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 2, Variant::Normal)).await;
    promoted(&app, 1).await;
    app.upload("churn", &sample::csv(2000, 3, Variant::NoisyLabels)).await;
    let failed =
        app.wait_event("model.evaluated", T, |s| matches!(&s.payload, Decoded::Evaluated(e) if e.version == 2)).await;
    let Decoded::Evaluated(e) = failed.payload else { unreachable!() };
    assert!(!e.passed, "{e:?}");
    assert_eq!(e.production_version, 1);
    let failed_check = e.checks.iter().find(|c| !c.passed).expect("a failed check");
    assert!(failed_check.detail.contains("roc_auc") || failed_check.detail.contains("accuracy"), "{failed_check:?}");
    // Production stays at version 1, in the registry and in serving.
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let promotions = app.stored_events("mlops.events.model.promoted.churn").await;
    assert_eq!(
        promotions.len(),
        1,
        "only v1 is promoted: {:?}",
        promotions.iter().map(|p| &p.summary).collect::<Vec<_>>()
    );
    let versions = client::models(&app.stack.url("registry"), "churn").await.unwrap();
    let v2 = versions.iter().find(|v| v.version == 2).unwrap();
    assert_eq!(v2.gate, "failed");
    assert_eq!(v2.aliases, ["candidate"]);
    assert_eq!(versions[0].aliases, ["production"]);
    let body =
        client::predict(&app.stack.url("deployer"), "churn", &rows_json(&sample::customers(1, 1, Variant::Normal)))
            .await
            .unwrap();
    assert_eq!(body["model_version"], "1");
}

/// The infrastructure gate: a candidate over the spec's artifact-size limit is not promoted, and
/// its measured single-row p99 latency is recorded with the checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_over_the_serving_limits_is_not_promoted() {
    let app = TestApp::start().await;
    let spec = mlops_cli::EXAMPLE_SPEC
        .replace("deployment:\n", "serving_limits: {max_p99_ms: 1000, max_artifact_bytes: 200}\ndeployment:\n");
    assert!(spec.contains("serving_limits"));
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(1500, 4, Variant::Normal)).await;
    let evaluated = app.wait_event("model.evaluated", T, |_| true).await;
    let Decoded::Evaluated(e) = evaluated.payload else { unreachable!() };
    assert!(!e.passed, "{e:?}");
    let size = e.checks.iter().find(|c| c.name == "artifact size <= 200 bytes").expect("a size check");
    assert!(!size.passed && size.detail.contains("bytes"), "{size:?}");
    let latency = e.checks.iter().find(|c| c.name.starts_with("single-row p99 latency")).expect("a latency check");
    assert!(latency.passed && latency.detail.contains("single-row predictions"), "{latency:?}");
    // The metric gates passed: only the size held it back.
    assert_eq!(e.checks.iter().filter(|c| !c.passed).count(), 1, "{:?}", e.checks);
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert!(app.stored_events("mlops.events.model.promoted.>").await.is_empty());
}

/// Asserts that no training job was ever queued and no model trained, once every consumer has
/// settled: the work queue never stored a job, there is no run record and no `model.trained`.
async fn assert_nothing_trained(app: &TestApp) {
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(app.ever_stored("MLOPS_JOBS").await, 0, "a training job was queued");
    let runs = app.runs().await.list().await.unwrap();
    assert!(runs.is_empty(), "{runs:?}");
    assert!(app.stored_events("mlops.events.model.trained.>").await.is_empty());
}

/// 300 good rows made bad three ways: text in a numeric column (row 5), an unknown category
/// (row 7), and a dropped column.
fn bad_csv() -> String {
    sample::csv(300, 4, Variant::Normal)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut cells: Vec<String> = line.split(',').map(str::to_owned).collect();
            if i == 5 {
                cells[2] = "lots".into();
            }
            if i == 7 {
                cells[5] = "lifetime".into();
            }
            cells.remove(3);
            cells.join(",") + "\n"
        })
        .collect()
}

/// The catalog's record of `dataset` once the validator has judged it.
async fn judged(app: &TestApp, dataset: &str) -> pb::Dataset {
    wait_until(T, || async {
        let d = client::dataset(&app.stack.url("ingest"), dataset).await.ok()?;
        (d.verdict != "pending").then_some(d)
    })
    .await
    .expect("a verdict")
}

/// (c) a rejected data set never reaches a trainer, and its report says why, per column; the
/// catalog keeps the verdict, the report and the profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_data_is_reported_per_column_and_never_trained() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let ds = app.upload("churn", &bad_csv()).await;
    let rejected = app.wait_event("data.rejected", T, |_| true).await;
    let Decoded::Rejected(r) = rejected.payload else { unreachable!() };
    assert_eq!(r.dataset_id, ds.dataset_id);
    let kinds: Vec<(String, String)> =
        r.columns.iter().flat_map(|c| c.anomalies.iter().map(move |a| (c.column.clone(), a.kind.clone()))).collect();
    for expected in
        [("monthly_charges", "type_mismatch"), ("contract", "unknown_category"), ("support_calls", "missing_column")]
    {
        assert!(kinds.contains(&(expected.0.into(), expected.1.into())), "{expected:?} not in {kinds:?}");
    }
    let mc = r.columns.iter().find(|c| c.column == "monthly_charges").unwrap();
    assert_eq!(mc.anomalies[0].example_rows, vec![5]);
    assert!(r.reason.contains("\"lots\" is not a number"), "{}", r.reason);

    // The catalog holds the verdict and the reason, and the quarantined version keeps its full
    // report and profile.
    let verdict = judged(&app, &ds.dataset_id).await;
    assert_eq!(verdict.verdict, "rejected");
    assert!(verdict.verdict_detail.contains("support_calls"));
    assert!(verdict.anomalies.iter().any(|c| c.column == "monthly_charges"));
    let profile = verdict.profile.clone().expect("a profile");
    assert_eq!(profile.rows, 300);
    let contract = profile.columns.iter().find(|c| c.name == "contract").unwrap();
    assert_eq!(contract.count, 300);
    assert!(contract.top_categories.iter().any(|t| t.value == "lifetime" && t.count == 1));

    assert_nothing_trained(&app).await;
}

/// `mlops data report` and `mlops data show` print a quarantined version's anomalies and profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlops_data_report_and_show_print_a_quarantined_version() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let ds = app.upload("churn", &bad_csv()).await;
    assert_eq!(judged(&app, &ds.dataset_id).await.verdict, "rejected");
    let mlops = app.stack.opts.bin_dir.join("mlops");
    let out = std::process::Command::new(&mlops)
        .args(["--ingest-url", &app.stack.url("ingest"), "data", "report", &ds.dataset_id])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    let line = table.lines().find(|l| l.starts_with("monthly_charges")).unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("type_mismatch") && line.contains("block") && line.contains("\"lots\" is not a number"),
        "{line}"
    );
    let out = std::process::Command::new(&mlops)
        .args(["--ingest-url", &app.stack.url("ingest"), "data", "show", &ds.dataset_id])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("300 rows") && shown.lines().any(|l| l.starts_with("tenure_months")), "{shown}");
}

/// A malformed CSV is rejected with the line named, and an upload for a pipeline nobody applied,
/// or of nothing, is refused up front; none of them trains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_misaddressed_uploads_are_refused_by_name() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", "tenure_months,monthly_charges\n1,2\n3\n").await;
    let malformed = app.wait_event("data.rejected", T, |s| s.summary.contains("malformed")).await;
    assert!(malformed.summary.contains("line 3"), "{}", malformed.summary);

    let good = sample::csv(300, 4, Variant::Normal);
    let err = client::upload(&app.stack.url("ingest"), "nope", "x.csv", good.into_bytes()).await.unwrap_err();
    assert!(format!("{err:#}").contains("pipeline `nope` not found"), "{err:#}");
    let err = client::upload(&app.stack.url("ingest"), "churn", "x.csv", vec![]).await.unwrap_err();
    assert!(format!("{err:#}").contains("empty"), "{err:#}");

    assert_nothing_trained(&app).await;
}

/// A pipeline that asks for gradient-boosted trees gets them, through the gates, served by the
/// same shared prediction code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boosted_trees_are_trained_gated_and_served() {
    let app = TestApp::start().await;
    let spec = mlops_cli::EXAMPLE_SPEC.replace(
        "  algorithm: logistic_regression\n  params: {l2: 1.0, max_iter: 50}",
        "  algorithm: gradient_boosting\n  params: {trees: 50, num_leaves: 15}",
    );
    assert!(spec.contains("gradient_boosting"));
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(3000, 21, Variant::Normal)).await;
    promoted(&app, 1).await;
    let versions = client::models(&app.stack.url("registry"), "churn").await.unwrap();
    assert_eq!(versions[0].algorithm, "gradient_boosting");
    assert!(versions[0].holdout_metrics.as_ref().unwrap().values["roc_auc"] > 0.7);
    let contrast = serde_json::json!([
        {"tenure_months": 1, "monthly_charges": 110, "support_calls": 6, "age": 25, "contract": "month-to-month", "payment_method": "electronic-check"},
        {"tenure_months": 70, "monthly_charges": 30, "support_calls": 0, "age": 60, "contract": "two-year", "payment_method": "card"},
    ]);
    let body = client::predict(&app.stack.url("deployer"), "churn", &contrast).await.unwrap();
    let p: Vec<f64> = body["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(p[0] > p[1], "{p:?}");
}

/// Serving-time data (the serving environment) may lack the label: it is validated, profiled and
/// catalogued with its schema, and never trained on. An unknown environment is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_data_without_labels_is_validated_and_never_trained() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let full = sample::csv(300, 8, Variant::Normal);
    let label = full.lines().next().unwrap().split(',').position(|h| h == "churned").unwrap();
    let unlabelled: String = full
        .lines()
        .map(|l| {
            l.split(',').enumerate().filter(|(i, _)| *i != label).map(|(_, c)| c).collect::<Vec<_>>().join(",") + "\n"
        })
        .collect();
    let header = |environment: &str| pb::UploadHeader {
        pipeline: "churn".into(),
        source: "serving.csv".into(),
        environment: environment.into(),
        ..Default::default()
    };
    let url = app.stack.url("ingest");
    let err = client::upload_with(&url, header("staging"), unlabelled.clone().into_bytes()).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("environment \"staging\" is not `training`, `serving` or `features`"),
        "{err:#}"
    );
    let ds = client::upload_with(&url, header("serving"), unlabelled.into_bytes()).await.unwrap();
    assert_eq!(ds.environment, "serving");
    let seen = app.wait_event("data.validated", T, |_| true).await;
    let Decoded::Validated(v) = seen.payload else { unreachable!() };
    assert_eq!((v.dataset_id.as_str(), v.environment.as_str(), v.rows), (ds.dataset_id.as_str(), "serving", 300));
    let profile = v.profile.expect("a profile");
    assert!(profile.columns.iter().all(|c| c.name != "churned"));
    let tenure = profile.schema.iter().find(|f| f.name == "tenure_months").expect("schema recorded");
    assert_eq!((tenure.r#type.as_str(), tenure.role.as_str()), ("Float64", "feature"));
    let listed = wait_until(T, || async {
        let d = client::dataset(&url, &ds.dataset_id).await.ok()?;
        (d.verdict == "accepted").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(listed.environment, "serving");

    // Training data without the label is refused. (Other rows: the same content is the same
    // version, whatever the environment it arrives in.)
    let other = sample::csv(300, 9, Variant::Normal);
    let training = app
        .upload(
            "churn",
            &other.lines().map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_owned() + "\n").collect::<String>(),
        )
        .await;
    let rejected = app.wait_event("data.rejected", T, |_| true).await;
    let Decoded::Rejected(r) = rejected.payload else { unreachable!() };
    assert_eq!(r.dataset_id, training.dataset_id);
    assert!(r.reason.contains("churned: the target column is absent"), "{}", r.reason);

    assert_nothing_trained(&app).await;
}

/// A batch whose inputs moved far from the previous accepted version is quarantined by the
/// spec's drift comparators, and never trained on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_drifted_from_the_previous_version_is_rejected() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 31, Variant::Normal)).await;
    app.wait_event("data.validated", T, |_| true).await;
    // Another batch from the same population passes the comparators.
    app.upload("churn", &sample::csv(1500, 32, Variant::Normal)).await;
    wait_until(T, || async { (app.seen().iter().filter(|s| s.kind == "data.validated").count() == 2).then_some(()) })
        .await
        .expect("the second normal batch is accepted");
    let ds = app.upload("churn", &sample::csv(1500, 33, Variant::Drifted)).await;
    let rejected = app.wait_event("data.rejected", T, |_| true).await;
    let Decoded::Rejected(r) = rejected.payload else { unreachable!() };
    assert_eq!(r.dataset_id, ds.dataset_id);
    let drifted: Vec<&str> = r
        .columns
        .iter()
        .filter(|c| c.anomalies.iter().any(|a| a.kind == "drift" && a.blocking))
        .map(|c| c.column.as_str())
        .collect();
    assert_eq!(drifted, ["contract", "monthly_charges"], "{r:?}");
}

/// (d) drifted prediction traffic makes the monitor raise one alert, which waits for new data (the
/// data v1 trained on holds nothing new) and then triggers exactly one retraining, on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_triggers_exactly_one_retraining() {
    let app = TestApp::start().await;
    app.apply(&spec_with_window(100)).await;
    app.upload("churn", &sample::csv(2000, 5, Variant::Normal)).await;
    promoted(&app, 1).await;
    let base = app.stack.url("deployer");

    // One window of ordinary traffic: no drift.
    for chunk in sample::customers(100, 6, Variant::Normal).chunks(50) {
        client::predict(&base, "churn", &rows_json(chunk)).await.unwrap();
    }
    let monitor = mlops_proto::monitor_client::MonitorClient::connect(app.stack.url("monitor")).await.unwrap();
    let report = wait_until(T, || {
        let mut m = monitor.clone();
        async move {
            let r = m.report(pb::ReportRequest { pipeline: "churn".into() }).await.ok()?.into_inner();
            (!r.windows.is_empty()).then_some(r)
        }
    })
    .await
    .expect("a closed window");
    assert_eq!(report.windows[0].alert_id, "");
    assert!(report.windows[0].drifted_share < 0.3, "{:?}", report.windows[0]);

    // Three windows of a shifted population: one alert, then the cooldown holds. The alert finds
    // nothing new to train on (the data v1 trained on) and waits for new data, which it retrains on.
    for chunk in sample::customers(300, 7, Variant::Drifted).chunks(50) {
        client::predict(&base, "churn", &rows_json(chunk)).await.unwrap();
    }
    app.wait_event("monitor.drift_detected", T, |_| true).await;
    let runs = app.runs().await;
    let skipped = wait_until(T, || async {
        let all = runs.list().await.ok()?;
        all.into_iter().find(|r| r.reason == "drift" && r.state == RunState::Skipped)
    })
    .await
    .expect("the drift alert recorded as skipped: nothing new");
    assert!(skipped.stage.starts_with("nothing new to train on"), "{skipped:?}");
    let new = app.upload("churn", &sample::csv(2000, 8, Variant::Normal)).await;
    let retrained = app
        .wait_event(
            "model.trained",
            T,
            |s| matches!(&s.payload, Decoded::Trained(t) if t.reason == pb::TrainReason::Drift as i32),
        )
        .await;
    let Decoded::Trained(retrained) = retrained.payload else { unreachable!() };
    assert_eq!(retrained.dataset_ids, [new.dataset_id]);
    let report = wait_until(T, || {
        let mut m = monitor.clone();
        async move {
            let r = m.report(pb::ReportRequest { pipeline: "churn".into() }).await.ok()?.into_inner();
            (r.windows.len() >= 4).then_some(r)
        }
    })
    .await
    .expect("four closed windows");
    assert_eq!(report.alerts, 1, "{report:?}");
    assert!(report.windows[..3].iter().all(|w| w.drifted_share >= 0.3), "{report:?}");
    // Every window has been judged and every alert acted on: one alert, one retraining.
    app.wait_quiet(&["MLOPS_PREDICTIONS", "MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let drift_alerts = app.stored_events("mlops.events.monitor.drift_detected.churn").await.len();
    let drift_trainings = app
        .stored_events("mlops.events.model.trained.churn")
        .await
        .into_iter()
        .filter(|s| matches!(&s.payload, Decoded::Trained(t) if t.reason == pb::TrainReason::Drift as i32))
        .count();
    assert_eq!((drift_alerts, drift_trainings), (1, 1));
}

/// (e) with two trainer processes on one work queue, each job is trained exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trainers_train_each_job_once() {
    let mut app = TestApp::start().await;
    app.stack.spawn("trainer", "trainer-2", &[]).await.unwrap();
    app.stack.wait_healthy(T).await.unwrap();
    // Six pipelines, one dataset each: six jobs (jobs of one pipeline would coalesce).
    let jobs = 6;
    for seed in 0..jobs {
        let name = format!("churn{seed}");
        app.apply(&mlops_cli::EXAMPLE_SPEC.replace("name: churn\n", &format!("name: {name}\n"))).await;
        app.upload(&name, &sample::csv(1500, 100 + seed, Variant::Normal)).await;
    }
    let all_trained = wait_until(T, || async {
        let n = app.stored_events("mlops.events.model.trained.>").await.len();
        (n >= jobs as usize).then_some(n)
    })
    .await;
    assert!(all_trained.is_some(), "not every job was trained");
    // Nothing is in flight or waiting to be redelivered: every training that will ever run for
    // these jobs has run.
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let trained: Vec<(String, String)> = app
        .stored_events("mlops.events.model.trained.>")
        .await
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) => Some((t.job_id, t.trainer_id)),
            _ => None,
        })
        .collect();
    let mut ids: Vec<&String> = trained.iter().map(|(j, _)| j).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((trained.len(), ids.len()), (jobs as usize, jobs as usize), "{trained:?}");
    assert!(trained.iter().all(|(_, t)| t == "trainer" || t == "trainer-2"), "{trained:?}");
    eprintln!("jobs per trainer: {:?}", trained.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>());
    // The stream keeps one `model.trained` per job however often it was published; the trainers
    // count every training they ran.
    let mut trainings = 0;
    for trainer in ["trainer", "trainer-2"] {
        trainings += trainings_run(&app.stack.url_of(trainer).unwrap()).await;
    }
    assert_eq!(trainings, jobs, "a job was trained twice");
    for seed in 0..jobs {
        let versions = client::models(&app.stack.url("registry"), &format!("churn{seed}")).await.unwrap();
        assert_eq!(versions.len(), 1);
    }
}

/// The spec's training window: with `versions: 2`, each run trains on the two newest accepted
/// versions, and the model's lineage lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_train_on_the_spec_window_of_versions() {
    let app = TestApp::start().await;
    let spec = mlops_cli::EXAMPLE_SPEC.replace("  holdout: 0.2\n", "  holdout: 0.2\n  window: {versions: 2}\n");
    assert!(spec.contains("window"));
    app.apply(&spec).await;
    let mut ids = Vec::new();
    for (i, seed) in [71, 72, 73].into_iter().enumerate() {
        ids.push(app.upload("churn", &sample::csv(800, seed, Variant::Normal)).await.dataset_id);
        wait_until(T, || async { (app.seen().iter().filter(|s| s.kind == "model.trained").count() > i).then_some(()) })
            .await
            .expect("trained");
    }
    let windows: Vec<Vec<String>> = app
        .stored_events("mlops.events.model.trained.churn")
        .await
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) => Some(t.dataset_ids),
            _ => None,
        })
        .collect();
    assert_eq!(windows, [vec![ids[0].clone()], ids[..2].to_vec(), ids[1..].to_vec()]);
}

/// A trainer killed with SIGKILL in the middle of a job: the job goes to another trainer once its
/// ack wait passes, and exactly one model version results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainer_killed_mid_job_hands_it_over_and_one_version_results() {
    let mut app = TestApp::start_with(&[("MLOPS_JOB_ACK_WAIT_SECS", "3")]).await;
    // Enough trees that the job takes seconds.
    let spec = mlops_cli::EXAMPLE_SPEC.replace(
        "  algorithm: logistic_regression\n  params: {l2: 1.0, max_iter: 50}",
        "  algorithm: gradient_boosting\n  params: {trees: 1500, min_data_in_leaf: 5}",
    );
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(4000, 81, Variant::Normal)).await;
    // The run record says when the first trainer has taken the job.
    let runs = app.runs().await;
    let started = wait_until(T, || async {
        let runs = runs.list().await.ok()?;
        runs.into_iter().find(|r| r.state == RunState::Running && r.trainer == "trainer")
    })
    .await;
    assert!(started.is_some(), "the first trainer never started the job");
    app.stack.spawn("trainer", "trainer-2", &[("MLOPS_JOB_ACK_WAIT_SECS", "3")]).await.unwrap();
    app.stack.wait_healthy(T).await.unwrap();
    assert!(app.seen().iter().all(|s| s.kind != "model.trained"), "the job finished before the kill");
    app.stack.kill("trainer").await.unwrap();
    let trained = app.wait_event("model.trained", 3 * T, |_| true).await;
    let Decoded::Trained(t) = trained.payload else { unreachable!() };
    assert_eq!(t.trainer_id, "trainer-2");
    promoted(&app, 1).await;
    // The job the killed trainer held was redelivered and is acknowledged now: nothing waits.
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(app.stored_events("mlops.events.model.trained.churn").await.len(), 1);
    assert_eq!(trainings_run(&app.stack.url_of("trainer-2").unwrap()).await, 1, "trainer-2 trained it once");
    assert_eq!(client::models(&app.stack.url("registry"), "churn").await.unwrap().len(), 1);
    let runs = runs.list().await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].state, runs[0].trainer.as_str()), (RunState::Succeeded, "trainer-2"), "{runs:?}");
}

/// `mlops train` asks for a run now: it trains on the window, records the manual reason, and waits
/// for the model. A request for a pipeline without data is dead-lettered with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_training_runs_on_request() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.apply(&mlops_cli::EXAMPLE_SPEC.replace("name: churn\n", "name: empty\n")).await;
    let ds = app.upload("churn", &sample::csv(1000, 91, Variant::Normal)).await;
    promoted(&app, 1).await;
    let mlops = app.stack.opts.bin_dir.join("mlops");
    let run = |args: &[&str]| {
        std::process::Command::new(&mlops).args(["--nats-url", &app.stack.nats_url]).args(args).output().unwrap()
    };
    let out = run(&["train", "--pipeline", "churn", "--by", "tester", "--timeout", "60"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("trained by trainer") && said.contains("on 1 dataset(s)"), "{said}");
    let manual: Vec<pb::ModelTrained> = app
        .stored_events("mlops.events.model.trained.churn")
        .await
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) if t.reason == pb::TrainReason::Manual as i32 => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(manual[0].dataset_ids, vec![ds.dataset_id.clone()]);

    let out = run(&["train", "--pipeline", "empty", "--no-wait"]);
    assert!(out.status.success());
    let dead = wait_until(T, || async {
        let d = app.stored("MLOPS_DLQ", "mlops.dlq.>").await;
        (!d.is_empty()).then_some(d)
    })
    .await
    .expect("dead-lettered");
    let reason = dead[0].headers.as_ref().and_then(|h| h.get("mlops-dlq-reason")).map(|v| v.to_string());
    assert!(reason.unwrap_or_default().contains("`empty` has no accepted training data yet"));
}

/// Jobs queued for one pipeline while no trainer takes them coalesce: the newest replaces the one
/// waiting, and one training runs, on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_of_a_pipeline_coalesce_into_one() {
    let mut app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let ds = app.upload("churn", &sample::csv(1500, 61, Variant::Normal)).await;
    promoted(&app, 1).await;
    app.stack.kill("trainer").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus =
        mlops_shared::bus::Bus::connect(&mlops_shared::config::NatsArgs::local(&app.stack.nats_url), "test", &shutdown)
            .await
            .unwrap();
    let ctx = mlops_shared::events::EventContext::new_run("burst");
    for i in 1..=3 {
        let job = pb::TrainJob {
            job_id: format!("burst-{i}"),
            pipeline: "churn".into(),
            dataset_ids: vec![ds.dataset_id.clone()],
            reason: pb::TrainReason::NewData as i32,
            trigger_event_id: String::new(),
        };
        bus.publish(&job.job_id, &ctx, &job).await.unwrap();
    }
    let jobs = app.js.get_stream("MLOPS_JOBS").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(jobs, 1, "three jobs for one pipeline, one queued");
    app.stack.spawn("trainer", "trainer-2", &[]).await.unwrap();
    app.wait_event("model.trained", T, |s| matches!(&s.payload, Decoded::Trained(t) if t.job_id == "burst-3")).await;
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let trained: Vec<String> = app
        .stored_events("mlops.events.model.trained.churn")
        .await
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) => Some(t.job_id),
            _ => None,
        })
        .collect();
    assert_eq!(trained.len(), 2, "the first model and one for the burst: {trained:?}");
}
