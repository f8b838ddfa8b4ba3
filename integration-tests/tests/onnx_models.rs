//! ONNX models made elsewhere through the whole platform, as a data team would bring them: a
//! scikit-learn pipeline trained by `examples/onnx/train.py` (logistic regression, gradient
//! boosting, an MLP — the last as an MLflow model directory with its weights in an external file)
//! a LightGBM booster (onnxmltools) and a neural network as `torch.onnx.export` writes one are imported with `mlops models import`, judged by the
//! gates, deployed, and answer over OIP REST and gRPC and `/invocations` exactly as `onnxruntime`
//! in Python does on 1,000 rows, and `mlops score` gives the same answers in bulk, bit for bit; they are logged, drift-watched and judged on delayed labels;
//! an ONNX version meets a
//! built-in one in a canary; and every file that does not fit is refused with its reason, nothing
//! registered, the registry unharmed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, labels_event, onnx, rows_json, sample, wait_until};
use mlops_proto as pb;
use sample::Variant;

const T: Duration = Duration::from_secs(120);

/// The example's pipeline, its versions made only by imports (no training trigger), under `name`,
/// its quality watched on delayed labels.
fn imported_only(name: &str) -> String {
    let spec = mlops_cli::EXAMPLE_SPEC
        .replace("name: churn\n", &format!("name: {name}\n"))
        .replace("  seed: 42\n", "  seed: 42\n  triggers: {on: []}\n")
        .replace("  window: 200\n", "  window: 200\n  performance: {metric: roc_auc, min: 0.6, window: 200}\n");
    assert!(spec.contains("triggers: {on: []}"), "the example's training section changed: update this test");
    spec
}

/// What decisions are worth, for the import whose threshold is chosen on its holdout.
const PRICED: &str = "business:\n  value: {tp: 100, fp: -20, fn: -100, tn: 0}\n";

/// The numeric features of the example, which a booster's one float input carries.
const NUMERIC: [&str; 4] = ["tenure_months", "monthly_charges", "support_calls", "age"];
/// Those a network without an imputer takes (`age` may be missing).
const COMPLETE: [&str; 3] = ["tenure_months", "monthly_charges", "support_calls"];
const ALL: [&str; 6] = ["tenure_months", "monthly_charges", "support_calls", "age", "contract", "payment_method"];

/// [`imported_only`] with `features` alone (the data's other columns are ignored).
fn only(name: &str, features: &[&str]) -> String {
    let kept = |line: &&str| match line.trim_start().strip_prefix("- {name: ") {
        Some(rest) => features.iter().any(|f| rest.starts_with(&format!("{f},"))),
        None => true,
    };
    imported_only(name).lines().filter(kept).map(|l| format!("{l}\n")).collect()
}

/// A platform whose services find ONNX Runtime in the test venv.
async fn platform() -> TestApp {
    let library = onnx::library();
    TestApp::start_with(&[("MLOPS_ONNXRUNTIME", library.to_str().expect("UTF-8 path"))]).await
}

/// A platform, a working directory, and 2,000 rows of churn data drawn with `seed`: the CSV's
/// text, and the file holding it.
async fn platform_with_data(seed: u64) -> (TestApp, tempfile::TempDir, String, PathBuf) {
    let app = platform().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let text = sample::csv(2000, seed, Variant::Normal);
    let csv = write(dir.path(), "customers.csv", &text);
    (app, dir, text, csv)
}

/// Runs the `mlops` binary against the test's platform: (success, stdout and stderr).
fn mlops(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--nats-url", &app.stack.nats_url, "--registry-url", &app.stack.url("registry")])
        .args(["--ingest-url", &app.stack.url("ingest"), "--deployer-url", &app.stack.url("deployer")])
        .env("MLOPS_ONNXRUNTIME", onnx::library())
        .args(args)
        .output()
        .expect("running mlops");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing");
    path
}

/// Uploads `csv` to `pipeline` and waits until it is among the pipeline's validated datasets.
async fn validated(app: &TestApp, pipeline: &str, csv: &str) {
    let d = app.upload(pipeline, csv).await;
    let recorded = app.runs().await.wait_for_dataset(pipeline, &d.dataset_id, T).await.expect("the jobs bucket");
    assert!(recorded, "{} of {pipeline} is not validated within {T:?}", d.dataset_id);
}

/// `examples/onnx/train.py` on `csv`: the `.onnx` file of `model`.
fn train(dir: &Path, csv: &Path, model: &str) -> PathBuf {
    let out = dir.join(format!("{model}.onnx"));
    onnx::python("examples/onnx/train.py", &[csv, &out, Path::new("--model"), Path::new(model)]);
    out
}

/// The largest difference between what `pipeline` serves (REST and gRPC, 1,000 rows in one
/// request each) and what onnxruntime in Python answers with `model` on the same rows; the REST
/// answers' labels are then published as delayed ground truth.
/// An imported model under a priced spec decides by the threshold its import chose (under 0.5:
/// a miss costs five times a false alarm), as a trained one does.
async fn served_by_its_threshold(app: &TestApp, pipeline: &str, version: &serde_json::Value) {
    let threshold = version["business"]["threshold"].as_f64().unwrap_or_else(|| panic!("no threshold: {version}"));
    assert!(threshold > 0.0 && threshold < 0.5, "{version}");
    let rows = rows_json(&sample::customers(200, 12, Variant::Normal));
    let body = client::predict(&app.stack.url("deployer"), pipeline, &rows).await.expect("REST predict");
    let output = |name: &str| {
        let o = body["outputs"].as_array().expect("outputs").iter().find(|o| o["name"] == name).expect(name);
        o["data"].as_array().expect("data").clone()
    };
    let answers: Vec<(f64, bool)> =
        output("probability").iter().zip(output("label")).map(|(p, l)| (p.as_f64().unwrap(), l == "1")).collect();
    assert!(answers.iter().all(|(p, positive)| *positive == (*p >= threshold)), "{threshold}: {answers:?}");
    assert!(answers.iter().any(|(p, positive)| *positive && *p < 0.5), "none between {threshold} and 0.5");
}

async fn served_against_python(app: &TestApp, dir: &Path, pipeline: &str, model: &Path, features: &[&str]) -> f64 {
    let rows = sample::customers(1000, 11, Variant::Normal);
    let csv = write(dir, "rows.csv", &sample::csv(1000, 11, Variant::Normal));
    let answers = dir.join("answers.json");
    onnx::python("scripts/onnx-tool.py", &[Path::new("predict"), model, &csv, &answers]);
    let python: Vec<f64> = serde_json::from_slice(&std::fs::read(&answers).expect("answers")).expect("JSON");
    let base = app.stack.url("deployer");
    let mut json = rows_json(&rows);
    for row in json.as_array_mut().expect("rows") {
        row.as_object_mut().expect("a row").retain(|k, _| features.contains(&k.as_str()));
    }
    let body = client::predict(&base, pipeline, &json).await.expect("REST predict");
    let rest: Vec<f64> =
        body["outputs"][0]["data"].as_array().expect("data").iter().map(|v| v.as_f64().unwrap()).collect();
    let ids = body["outputs"].as_array().expect("outputs").iter().find(|o| o["name"] == "prediction_id").expect("ids");
    let labels: Vec<(String, &str)> = ids["data"]
        .as_array()
        .expect("ids")
        .iter()
        .zip(&rows)
        .map(|(id, c)| (id.as_str().expect("an id").to_owned(), if c.churned { "1" } else { "0" }))
        .collect();
    let labels: Vec<(&str, &str)> = labels.iter().map(|(id, l)| (id.as_str(), *l)).collect();
    let ctx = mlops_shared::events::EventContext::new_run(format!("labels-{pipeline}"));
    app.bus()
        .await
        .publish(&format!("labels-{pipeline}"), &ctx, &labels_event(pipeline, &labels))
        .await
        .expect("labels");
    assert_eq!(batch_scored(app, dir, pipeline, &csv), rest, "{pipeline}: `mlops score` answers as serving does");
    let grpc = grpc_predict(&base, pipeline, &rows, features).await;
    // MLflow's scoring protocol too: the first rows of the same CSV, ids and labels included.
    let head: String =
        std::fs::read_to_string(&csv).expect("rows").lines().take(11).map(|l| format!("{l}\n")).collect();
    let mlflow = reqwest::Client::new()
        .post(format!("{base}/invocations?pipeline={pipeline}"))
        .header("content-type", "text/csv")
        .body(head)
        .send()
        .await
        .expect("invocations")
        .json::<serde_json::Value>()
        .await
        .expect("JSON");
    let invocations: Vec<f64> =
        mlflow["predictions"].as_array().expect("predictions").iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!((rest.len(), grpc.len(), invocations.len(), python.len()), (1000, 1000, 10, 1000));
    let ours = rest.iter().chain(&grpc).chain(&invocations);
    ours.zip(python.iter().chain(&python).chain(&python)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

/// The probabilities `mlops score` writes for the rows of `csv`, scored in bulk by the version in
/// production.
fn batch_scored(app: &TestApp, dir: &Path, pipeline: &str, csv: &Path) -> Vec<f64> {
    use arrow_array::cast::AsArray as _;
    let out = dir.join(format!("{pipeline}-scored.parquet"));
    let args = ["score", "--pipeline", pipeline, "--input", csv.to_str().expect("UTF-8")];
    let (ok, said) = mlops(app, &[&args[..], &["--out", out.to_str().expect("UTF-8"), "--keep", ""]].concat());
    assert!(ok, "{said}");
    let file = std::fs::File::open(&out).expect("the output");
    let batches =
        mlops_data::open(mlops_data::Source::File(file), "out.parquet", &Default::default()).expect("Parquet");
    let mut probabilities = Vec::new();
    for batch in batches {
        let batch = batch.expect("a batch");
        let column = batch.column_by_name("probability").expect("probability");
        probabilities.extend(column.as_primitive::<arrow_array::types::Float64Type>().values().iter().copied());
    }
    probabilities
}

/// The probabilities OIP gRPC answers for `rows`, in one request.
async fn grpc_predict(base: &str, pipeline: &str, rows: &[sample::Customer], features: &[&str]) -> Vec<f64> {
    use pb::inference::model_infer_request::InferInputTensor;
    use pb::inference::{InferTensorContents, ModelInferRequest};
    let n = rows.len() as i64;
    let number = |name: &str, f: &dyn Fn(&sample::Customer) -> f64| InferInputTensor {
        name: name.into(),
        datatype: "FP64".into(),
        shape: vec![n],
        contents: Some(InferTensorContents { fp64_contents: rows.iter().map(f).collect(), ..Default::default() }),
        ..Default::default()
    };
    let text = |name: &str, f: &dyn Fn(&sample::Customer) -> String| InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![n],
        contents: Some(InferTensorContents {
            bytes_contents: rows.iter().map(|r| f(r).into_bytes()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let inputs = vec![
        number("tenure_months", &|c| c.tenure_months),
        number("monthly_charges", &|c| c.monthly_charges),
        number("support_calls", &|c| c.support_calls),
        number("age", &|c| c.age.unwrap_or(f64::NAN)),
        text("contract", &|c| c.contract.to_string()),
        text("payment_method", &|c| c.payment_method.to_string()),
    ];
    let inputs = inputs.into_iter().filter(|i| features.contains(&i.name.as_str())).collect();
    let request = ModelInferRequest { model_name: pipeline.into(), inputs, ..Default::default() };
    let mut grpc = pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient::connect(base.to_owned())
        .await
        .expect("connecting");
    let r = grpc.model_infer(request).await.expect("gRPC infer").into_inner();
    let probability = r.outputs.iter().find(|o| o.name == "probability").expect("a probability output");
    probability.contents.as_ref().expect("contents").fp64_contents.clone()
}

/// A version as `mlops models show` prints it.
fn show(app: &TestApp, target: &str) -> serde_json::Value {
    let (ok, out) = mlops(app, &["models", "show", target]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_export_is_imported_gated_served_and_answers_as_onnxruntime_does() {
    let (app, dir, csv_text, csv) = platform_with_data(7).await;
    // One pipeline per export, each with the same validated data.
    let mlflow = dir.path().join("mlp-mlflow");
    onnx::python("scripts/onnx-tool.py", &[Path::new("mlflow"), &train(dir.path(), &csv, "mlp"), &mlflow]);
    assert!(mlflow.join("model.onnx.data").exists(), "the MLP's weights are in an external file");
    let exports = [("churn_logreg", train(dir.path(), &csv, "logreg")), ("churn_gbc", train(dir.path(), &csv, "gbc"))];
    for (pipeline, _) in &exports {
        // The boosted one's decisions are priced: its import picks its own threshold.
        let priced = if *pipeline == "churn_gbc" { PRICED } else { "" };
        app.apply(&(imported_only(pipeline) + priced)).await;
        validated(&app, pipeline, &csv_text).await;
    }
    app.apply(&imported_only("churn_mlp")).await;
    validated(&app, "churn_mlp", &csv_text).await;
    // LightGBM through onnxmltools, and a network as PyTorch exports one: one float input each,
    // so pipelines of numeric features.
    let lgbm = dir.path().join("lgbm.onnx");
    onnx::python("scripts/onnx-tool.py", &[Path::new("lgbm"), &csv, &lgbm]);
    let nn = dir.path().join("nn.onnx");
    onnx::python("scripts/onnx-tool.py", &[Path::new("mlp"), &csv, &nn]);
    for (pipeline, features) in [("churn_lgbm", &NUMERIC[..]), ("churn_nn", &COMPLETE[..])] {
        app.apply(&only(pipeline, features)).await;
        validated(&app, pipeline, &csv_text).await;
    }

    let mlflow_arg = mlflow.to_str().expect("UTF-8");
    let (lgbm_arg, nn_arg) = (lgbm.to_str().expect("UTF-8"), nn.to_str().expect("UTF-8"));
    let imports = exports.iter().map(|(p, f)| (*p, f.to_str().expect("UTF-8"))).chain([
        ("churn_mlp", mlflow_arg),
        ("churn_lgbm", lgbm_arg),
        ("churn_nn", nn_arg),
    ]);
    for (pipeline, path) in imports {
        let (ok, said) = mlops(&app, &["models", "import", pipeline, path, "--description", "from the notebook"]);
        assert!(ok && said.contains(&format!("as {pipeline}@1")), "{said}");
        let promoted = app.wait_event("model.promoted", T, |s| s.pipeline == pipeline).await;
        assert!(promoted.summary.starts_with("v1 "), "{}", promoted.summary);
        let model = if pipeline == "churn_mlp" { mlflow.join("model.onnx") } else { PathBuf::from(path) };
        let features: &[&str] = match pipeline {
            "churn_lgbm" => &NUMERIC,
            "churn_nn" => &COMPLETE,
            _ => &ALL,
        };
        let diff = served_against_python(&app, dir.path(), pipeline, &model, features).await;
        assert!(diff <= 1e-6, "{pipeline}: served answers differ from onnxruntime's by up to {diff}");

        let v = show(&app, &format!("{pipeline}@1"));
        assert_eq!(v["algorithm"], "onnx", "{v}");
        assert_eq!(v["gate"], "passed", "{v}");
        assert_eq!(v["description"], "from the notebook", "{v}");
        let lineage = &v["lineage"];
        assert_eq!(lineage["reason"], "imported", "{v}");
        assert!(lineage["trainer_id"].as_str().unwrap().starts_with("imported by "), "{v}");
        assert!(lineage["code_version"].as_str().unwrap().starts_with("onnx sha256:"), "{v}");
        assert_eq!(lineage["dataset_ids"].as_array().unwrap().len(), 1, "{v}");
        let (ok, card) = mlops(&app, &["models", "card", &format!("{pipeline}@1")]);
        assert!(ok && card.contains("onnx sha256:") && card.contains("roc_auc"), "{card}");
        if pipeline == "churn_gbc" {
            served_by_its_threshold(&app, pipeline, &v).await;
        }
    }

    // OIP metadata names the engine; every served row was logged for the monitor.
    let meta = reqwest::get(format!("{}/v2/models/churn_logreg", app.stack.url("deployer")))
        .await
        .expect("metadata")
        .json::<serde_json::Value>()
        .await
        .expect("JSON");
    assert_eq!(meta["platform"], "onnxruntime_onnx", "{meta}");
    let logged = wait_until(T, || async {
        let n = app.logged_predictions("churn_logreg").await.len();
        (n >= 2010).then_some(n)
    })
    .await;
    assert_eq!(logged, Some(2010), "1,000 rows over REST, 1,000 over gRPC and 10 over /invocations");
    // The monitor watches the imported version as any other: drift windows against the reference
    // profile made at import (features and predictions), and quality on the delayed labels.
    let monitor = app.stack.url("monitor");
    let report = wait_until(T, || async {
        let r = client::monitor_report(&monitor, "churn_logreg").await.ok()?;
        let labelled = r.performance.as_ref().is_some_and(|p| p.labelled >= 1000);
        (r.windows.len() >= 10 && labelled).then_some(r)
    })
    .await
    .expect("drift windows and quality on labels");
    let window = &report.windows[0];
    assert_eq!((window.version, window.rows, window.features.len()), (1, 200, 6), "{window:?}");
    assert!(window.prediction.is_some(), "{window:?}");
    let quality = report.performance.expect("checked above");
    assert!(quality.metric == "roc_auc" && quality.value > 0.6, "{quality:?}");
    // Nothing to retrain: the platform did not train it.
    let (ok, said) = mlops(&app, &["reproduce", "churn_logreg@1"]);
    assert!(!ok && said.contains("was imported"), "{said}");
    // The same file again is the same version, not a second one, and is not judged again.
    let (ok, said) = mlops(&app, &["models", "import", "churn_logreg", exports[0].1.to_str().unwrap()]);
    assert!(ok && said.contains("imported before, on the same data, as churn_logreg@1"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onnx_version_meets_a_built_in_one_in_a_canary() {
    let (app, dir, csv_text, csv) = platform_with_data(81).await;
    let spec = mlops_cli::EXAMPLE_SPEC.replace(
        "  strategy: direct\n",
        "  strategy: canary\n  canary: {percent: 50, duration_secs: 2, min_requests: 200}\n",
    );
    app.apply(&spec).await;
    app.upload("churn", &csv_text).await;
    // The built-in trainer's model serves first.
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    assert_eq!(show(&app, "churn@1")["algorithm"], "logistic_regression");

    let model = train(dir.path(), &csv, "logreg");
    let (ok, said) = mlops(&app, &["models", "import", "churn", model.to_str().unwrap()]);
    assert!(ok && said.contains("as churn@2"), "{said}");
    let started = app.wait_event("deployment.canary_started", T, |_| true).await;
    let Decoded::Canary(started) = started.payload else { unreachable!("a canary event") };
    assert_eq!((started.version, started.champion_version), (2, 1));

    // Live traffic until the deployer decides: both versions answer, then the ONNX one alone.
    let rows = sample::customers(200, 77, Variant::Normal);
    let base = app.stack.url("deployer");
    let mut answered = std::collections::BTreeSet::new();
    let promoted =
        |app: &TestApp| app.seen().iter().any(|s| matches!(&s.payload, Decoded::Promoted(p) if p.version == 2));
    for i in 0..3000 {
        if promoted(&app) {
            break;
        }
        let body = client::predict(&base, "churn", &rows_json(&rows[i % 200..=i % 200])).await.expect("a prediction");
        answered.insert(body["model_version"].as_str().unwrap().to_owned());
    }
    let event = app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;
    let Decoded::Promoted(event) = event.payload else { unreachable!("a promotion") };
    assert_eq!(event.previous_version, 1);
    assert!(event.reason.contains("as good as the serving model"), "{event:?}");
    assert_eq!(answered.into_iter().collect::<Vec<_>>(), ["1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_do_not_fit_are_refused_with_the_reason_and_nothing_is_registered() {
    let (app, dir, csv_text, csv) = platform_with_data(5).await;
    app.apply(&imported_only("churn")).await;
    validated(&app, "churn", &csv_text).await;
    // A pipeline with no data yet, and one whose models may be at most 100 bytes.
    app.apply(&imported_only("empty")).await;
    app.apply(
        &imported_only("tiny").replace("deployment:\n", "serving_limits: {max_artifact_bytes: 100}\ndeployment:\n"),
    )
    .await;
    validated(&app, "tiny", &csv_text).await;

    let good = train(dir.path(), &csv, "logreg");
    let bytes = std::fs::read(&good).expect("the model");
    let made = |name: &str, args: &[&Path]| {
        let out = dir.path().join(name);
        onnx::python("scripts/onnx-tool.py", &[args, &[out.as_path()]].concat());
        out
    };
    let zipmap = made("zipmap.onnx", &[Path::new("zipmap"), &csv]);
    let nan = made("nan.onnx", &[Path::new("nan")]);
    let unknown_op = made("unknown.onnx", &[Path::new("unknown-op")]);
    let not_onnx = write(dir.path(), "notes.onnx", "this is not a model\n");
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("writing");
    let other_features = onnx::fixtures().join("logreg.onnx");
    let mlflow = dir.path().join("mlflow");
    onnx::python("scripts/onnx-tool.py", &[Path::new("mlflow"), &train(dir.path(), &csv, "mlp"), &mlflow]);
    std::fs::remove_file(mlflow.join("model.onnx.data")).expect("removing the weights");
    let path = |p: &Path| p.to_str().expect("UTF-8").to_owned();

    let cases: Vec<(&str, String, &str)> = vec![
        ("churn", path(&not_onnx), "not an ONNX model"),
        ("churn", path(&truncated), "not an ONNX model"),
        ("churn", path(&unknown_op), "Mystery"),
        ("churn", path(&other_features), "input `tenure`: not a feature of the pipeline"),
        ("churn", path(&zipmap), "'zipmap': False"),
        ("churn", path(&nan), "the answer for data row 0 is NaN"),
        ("churn", path(&mlflow), "model.onnx.data"),
        ("churn", path(dir.path()), "not an MLflow model (no MLmodel file)"),
        ("churn", path(&dir.path().join("missing.onnx")), "missing.onnx"),
        ("tiny", path(&good), "serving_limits.max_artifact_bytes: 100"),
        ("empty", path(&good), "has no validated data"),
        ("nope", path(&good), "no pipeline `nope`"),
    ];
    for (pipeline, file, reason) in &cases {
        let (ok, said) = mlops(&app, &["models", "import", pipeline, file]);
        assert!(!ok, "{file} was imported into {pipeline}: {said}");
        assert!(said.contains(reason), "{file}: expected {reason:?} in:\n{said}");
        assert!(!said.contains("panicked"), "{said}");
    }
    // Other clients, over gRPC: a file named outside the graph's directory, a named one left out.
    let registry = app.stack.url("registry");
    let header = || pb::ImportModelHeader { pipeline: "churn".into(), ..Default::default() };
    let files = |graph: Vec<u8>, external: Vec<(String, Vec<u8>)>| mlops_cli::onnx_import::ModelFiles {
        file_name: "by-grpc.onnx".into(),
        graph,
        external,
    };
    let escape = files(bytes.clone(), vec![("../escape.bin".into(), vec![1])]);
    let e = client::import_model(&registry, header(), escape, None).await.expect_err("refused");
    assert!(e.to_string().contains("without `..`"), "{e:#}");
    let weightless = files(std::fs::read(mlflow.join("model.onnx")).expect("the graph"), vec![]);
    let e = client::import_model(&registry, header(), weightless, None).await.expect_err("refused");
    assert!(e.to_string().contains("`model.onnx.data`, which the import did not include"), "{e:#}");
    for pipeline in ["churn", "empty", "tiny"] {
        let versions = client::models(&app.stack.url("registry"), pipeline).await.expect("the registry answers");
        assert!(versions.is_empty(), "{pipeline}: {versions:?}");
    }
    // The registry is unharmed: the good file goes in after all of them.
    let (ok, said) = mlops(&app, &["models", "import", "churn", &path(&good), "--trained-on", "nonexistent"]);
    assert!(!ok && said.contains("--trained-on"), "{said}");
    let (ok, said) = mlops(&app, &["models", "import", "churn", &path(&good)]);
    assert!(ok && said.contains("as churn@1"), "{said}");
}
