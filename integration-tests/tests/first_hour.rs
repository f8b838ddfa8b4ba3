//! The first hour with your own data, as a new user spends it with the `mlops` binary: a CSV as
//! pandas writes one (float labels `1.0`/`0.0`, booleans `True`/`False`, non-ASCII categories, an
//! `id` column) goes from `mlops schema infer`, unedited, through `pipeline apply` and `ingest` to
//! a served model, predictions, and delayed labels written as integers that measure its quality.
//! Also: a rejected file judged again after its spec is fixed (re-uploaded, and by `data
//! revalidate`), short id prefixes, and the bad-input twins: a label that is a number but no
//! class, an unknown or too short id.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, labels_event, wait_until};

const T: Duration = Duration::from_secs(120);

/// A credit data set as `DataFrame.to_csv(index=False)` writes it: the default is likelier for
/// small incomes, renters and high balances; labels are floats.
fn credit_csv(rows: usize, seed: u64) -> String {
    let mut out = String::from("id,age,income_band,owns_home,balance,default\n");
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let bands = ["< 40K €", "40K - 60K €", "60K - 100K €", "> 100K €"];
    for i in 0..rows {
        let age = 21.0 + (next() * 50.0).floor();
        let band = (next() * 4.0) as usize;
        let owns = next() < 0.5;
        let balance = (next() * 20_000.0 * 100.0).round() / 100.0;
        let risk = 1.5 - band as f64 * 0.9 + if owns { -0.8 } else { 0.6 } + balance / 8_000.0 - (age - 21.0) / 40.0;
        let default = next() < 1.0 / (1.0 + (-risk).exp());
        let _ = writeln!(
            out,
            "{},{age:.1},{},{},{balance},{}",
            100_000 + i * 7,
            bands[band],
            if owns { "True" } else { "False" },
            if default { "1.0" } else { "0.0" }
        );
    }
    out
}

/// Runs the `mlops` binary against the test's platform: (success, stdout, stderr).
fn mlops(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--nats-url", &app.stack.nats_url])
        .args(["--registry-url", &app.stack.url("registry"), "--ingest-url", &app.stack.url("ingest")])
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `mlops` that must succeed: its stdout.
fn ok(app: &TestApp, args: &[&str]) -> String {
    let (success, stdout, stderr) = mlops(app, args);
    assert!(success, "mlops {args:?} failed:\n{stdout}{stderr}");
    stdout
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Predicts `rows` (JSON objects) in chunks: the prediction ids and the versions that answered.
async fn predict(app: &TestApp, pipeline: &str, rows: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in rows.chunks(50) {
        let body = client::predict(&app.stack.url("deployer"), pipeline, &serde_json::Value::from(chunk.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("predict: {e:#}"));
        let version = body["model_version"].as_str().unwrap().to_owned();
        let ids = body["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "prediction_id").unwrap();
        out.extend(ids["data"].as_array().unwrap().iter().map(|id| (id.as_str().unwrap().to_owned(), version.clone())));
    }
    out
}

/// The CSV's rows as the JSON objects a client sends (the model's inputs: the id is not one), and
/// their labels as integers (`1`, `0`).
fn rows_and_labels(csv: &str) -> (Vec<serde_json::Value>, Vec<&'static str>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for line in csv.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        rows.push(serde_json::json!({
            "age": c[1].parse::<f64>().unwrap(), "income_band": c[2], "owns_home": c[3],
            "balance": c[4].parse::<f64>().unwrap(),
        }));
        labels.push(if c[5] == "1.0" { "1" } else { "0" });
    }
    (rows, labels)
}

async fn publish_labels(app: &TestApp, pipeline: &str, labels: &[(&str, &str)]) {
    let event = labels_event(pipeline, labels);
    let bus = app.bus().await;
    let ctx = mlops_shared::events::EventContext::new_run(format!("labels-{}", labels[0].0));
    bus.publish(&format!("labels-{}-{}", labels[0].0, labels.len()), &ctx, &event).await.unwrap();
}

/// Dead-letter reasons the monitor gave for `labels.arrived`.
async fn monitor_dead_letters(app: &TestApp) -> Vec<String> {
    let header = |m: &async_nats::jetstream::Message, k: &str| {
        m.headers.as_ref().and_then(|h| h.get(k)).map(|v| v.to_string()).unwrap_or_default()
    };
    app.stored("MLOPS_DLQ", "mlops.dlq.mlops.events.labels.arrived.>")
        .await
        .iter()
        .filter(|m| header(m, "mlops-dlq-service") == "monitor")
        .map(|m| header(m, "mlops-dlq-reason"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pandas_csv_goes_from_schema_infer_to_measured_label_quality_unedited() {
    let app = TestApp::start().await;
    let dir = app.dir.path();
    let csv = credit_csv(3000, 7);
    let data = write(dir, "credit.csv", &csv);

    // The proposal: the id checked but not learned from, the labels as the file writes them.
    let spec = ok(&app, &["schema", "infer", &data, "--target", "default"]);
    assert!(spec.contains("name: credit\n"), "{spec}");
    assert!(spec.contains("- {name: id, type: numeric, unique: true}"), "{spec}");
    assert!(spec.contains("target: {name: default, positive: \"1.0\", negative: \"0.0\"}"), "{spec}");
    assert!(spec.contains("\"40K - 60K €\"") && spec.contains("categories: [\"False\", \"True\"]"), "{spec}");
    let spec_file = write(dir, "credit.yaml", &spec);
    ok(&app, &["pipeline", "apply", &spec_file]);

    // The file it was inferred from is accepted, and a model trained on it serves.
    let said = ok(&app, &["ingest", "--pipeline", "credit", &data]);
    assert!(said.contains("accepted: 3000 rows"), "{said}");
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    // `data list` shows 12-character ids; `data show` and `data report` take them.
    let listed = ok(&app, &["data", "list", "--pipeline", "credit"]);
    let dataset = app.seen().into_iter().find(|s| s.kind == "data.validated").unwrap();
    let Decoded::Validated(validated) = dataset.payload else { panic!() };
    let short = &validated.dataset_id[..12];
    assert!(listed.contains(short), "{listed}");
    assert!(ok(&app, &["data", "show", short]).contains(&validated.dataset_id));
    assert!(ok(&app, &["data", "report", short]).contains("accepted, 3000 rows"));

    // Fresh rows are predicted, and their outcomes come back as integers.
    let fresh = credit_csv(400, 8);
    let (rows, labels) = rows_and_labels(&fresh);
    let served = predict(&app, "credit", &rows).await;
    assert!(served.iter().all(|(_, v)| v == "1"));
    let pairs: Vec<(&str, &str)> = served.iter().zip(&labels).map(|((id, _), l)| (id.as_str(), *l)).collect();
    for chunk in pairs.chunks(100) {
        publish_labels(&app, "credit", chunk).await;
    }
    let quality = wait_until(T, || async {
        let r = client::monitor_report(&app.stack.url("monitor"), "credit").await.ok()?;
        r.performance.filter(|p| p.labelled >= 400)
    })
    .await
    .expect("label quality measured on the integer labels");
    assert_eq!((quality.metric.as_str(), quality.version), ("roc_auc", 1));
    assert!(quality.value > 0.7, "{quality:?}");

    // A label that is a number but no class is dead-lettered, naming the classes.
    let one = predict(&app, "credit", &rows[..1]).await;
    publish_labels(&app, "credit", &[(one[0].0.as_str(), "2.0")]).await;
    let reasons = wait_until(T, || async {
        let r = monitor_dead_letters(&app).await;
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("the bad label dead-lettered");
    assert!(reasons[0].contains("are not `1.0` or `0.0`, e.g. \"2.0\""), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_file_is_judged_again_once_its_spec_is_fixed() {
    let app = TestApp::start().await;
    let dir = app.dir.path();
    let csv = credit_csv(600, 9);
    let data = write(dir, "loans.csv", &csv);
    let inferred = ok(&app, &["schema", "infer", &data, "--target", "default", "--name", "loans"]);
    // A first, wrong spec: the classes as a hand might write them.
    let wrong = inferred.replace("positive: \"1.0\", negative: \"0.0\"", "positive: \"yes\", negative: \"no\"");
    ok(&app, &["pipeline", "apply", &write(dir, "wrong.yaml", &wrong)]);
    let (success, _, stderr) = mlops(&app, &["ingest", "--pipeline", "loans", &data]);
    assert!(!success && stderr.contains("labels must be \"yes\" or \"no\""), "{stderr}");
    let rejected = stderr;

    // Fixed, the same bytes are judged again under the new spec, and train.
    ok(&app, &["pipeline", "apply", &write(dir, "fixed.yaml", &inferred)]);
    let said = ok(&app, &["ingest", "--pipeline", "loans", &data]);
    assert!(said.contains("judged under an older spec: validating it again") && said.contains("accepted"), "{said}");
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    // `data revalidate` judges it once more on request; every verdict is kept.
    let validated = app.seen().into_iter().find_map(|s| match s.payload {
        Decoded::Validated(v) => Some(v),
        _ => None,
    });
    let id = validated.expect("a data.validated").dataset_id;
    let said = ok(&app, &["data", "revalidate", &id[..10]]);
    assert!(said.contains("validating it again") && said.contains("accepted"), "{said}");
    let d = client::dataset(&app.stack.remote("ingest"), &id).await.unwrap();
    let past: Vec<&str> = d.history.iter().map(|p| p.verdict.as_str()).collect();
    assert_eq!((d.verdict.as_str(), past), ("accepted", vec!["rejected", "accepted"]));
    assert!(d.history[0].validation_hash != d.validation_hash && d.history[1].validation_hash == d.validation_hash);
    assert!(ok(&app, &["data", "show", &id[..8]]).contains("before  rejected (round 0"));
    // Still one version: accepted again, the same data is already trained on.
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(app.seen().iter().filter(|s| s.kind == "model.trained").count(), 1);

    assert!(rejected.starts_with("error: rejected: ") && rejected.trim().lines().count() == 1, "{rejected}");
    // Bad ids: unknown, too short; each one sentence and a failure.
    for (args, needle) in [
        (vec!["data", "revalidate", "ffffffffffff"], "no dataset \"ffffffffffff\""),
        (vec!["data", "show", &id[..4]], "too short: give at least 8 characters"),
        (vec!["models", "used-by", "0000000000"], "no dataset \"0000000000\""),
    ] {
        let (success, stdout, stderr) = mlops(&app, &args);
        assert!(!success && stderr.contains(needle), "{args:?}: {stdout}{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.trim().lines().count() == 1, "one sentence: {stderr}");
    }
}
