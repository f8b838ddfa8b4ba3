//! Watching production end to end: the world's concept turns around, delayed labels show the
//! serving model's quality falling under the spec's floor, the monitor raises
//! `monitor.performance_degraded`, that retrains on the newest data, and the new model restores
//! quality on later labels. Also: the drift report's tests per feature, and labels.arrived that
//! name nothing, or a wrong label, dead-lettered with their reasons. Labels travel as proto3 JSON
//! and as protobuf.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, labels_event, rows_json, sample, wait_until};
use mlops_proto as pb;
use sample::{Customer, Variant};

const T: Duration = Duration::from_secs(90);

fn mlops(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--monitor-url", &app.stack.url("monitor")])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Predicts each customer once; returns (prediction id, served version) per row.
async fn predict(app: &TestApp, rows: &[Customer]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in rows.chunks(25) {
        let body = client::predict(&app.stack.url("deployer"), "churn", &rows_json(chunk)).await.unwrap();
        let version = body["model_version"].as_str().unwrap().to_owned();
        let ids = body["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "prediction_id").unwrap();
        out.extend(ids["data"].as_array().unwrap().iter().map(|id| (id.as_str().unwrap().to_owned(), version.clone())));
    }
    out
}

/// Publishes labels as an outside system would: proto3 JSON on `labels.arrived`.
async fn publish_labels(app: &TestApp, pipeline: &str, labels: &[(&str, &str)]) {
    let labels: Vec<serde_json::Value> =
        labels.iter().map(|(id, label)| serde_json::json!({"predictionId": id, "label": label})).collect();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("content-type", "application/json");
    let body = serde_json::json!({"pipeline": pipeline, "labels": labels}).to_string();
    let subject = format!("mlops.events.labels.arrived.{pipeline}");
    app.js.publish_with_headers(subject, headers, body.into()).await.unwrap().await.unwrap();
}

/// The same as protobuf (`mlops.v1.LabelsArrived`), as a system with the platform's protos would.
async fn publish_labels_protobuf(app: &TestApp, pipeline: &str, labels: &[(&str, &str)]) {
    use prost::Message as _;
    let event = labels_event(pipeline, labels);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("content-type", "application/protobuf");
    let subject = format!("mlops.events.labels.arrived.{pipeline}");
    app.js.publish_with_headers(subject, headers, event.encode_to_vec().into()).await.unwrap().await.unwrap();
}

fn label(c: &Customer) -> &'static str {
    if c.churned { "1" } else { "0" }
}

fn degraded(app: &TestApp) -> Vec<pb::PerformanceDegraded> {
    app.seen()
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Degraded(d) => Some(d),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falling_quality_on_delayed_labels_retrains_and_the_new_model_restores_it() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 201, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    // From now on only a quality alert retrains, and quality is watched on delayed labels.
    let watched = mlops_cli::EXAMPLE_SPEC
        .replace("  holdout: 0.2\n", "  holdout: 0.2\n  triggers: {on: [degradation]}\n")
        .replace(
            "  cooldown_secs: 3600\n",
            "  cooldown_secs: 3600\n  performance: {metric: accuracy, min: 0.65, window: 100}\n",
        );
    app.apply(&watched).await;

    // v1 is good on today's world: labels keep it over the floor, and no alert is raised.
    let today = sample::customers(150, 202, Variant::Normal);
    let served = predict(&app, &today).await;
    let labels: Vec<(&str, &str)> = served.iter().zip(&today).map(|((id, _), c)| (id.as_str(), label(c))).collect();
    publish_labels(&app, "churn", &labels).await;
    let report = wait_until(T, || async {
        let r = client::monitor_report(&app.stack.url("monitor"), "churn").await.ok()?;
        r.performance.filter(|p| p.labelled >= 150).map(|p| (r.alert_history.clone(), p))
    })
    .await
    .expect("quality measured on the labels");
    assert!(report.1.value > 0.65 && report.1.version == 1, "{report:?}");
    assert!(report.0.is_empty(), "{report:?}");

    // The concept turns around. New data shows it (not trained on: only alerts retrain) ...
    app.upload("churn", &sample::csv(2000, 203, Variant::FlippedLabels)).await;
    wait_until(T, || async { (app.seen().iter().filter(|x| x.kind == "data.validated").count() >= 2).then_some(()) })
        .await
        .expect("the new data validated");
    // ... and so do the labels of today's predictions.
    let turned = sample::customers(150, 204, Variant::FlippedLabels);
    let served = predict(&app, &turned).await;
    let labels: Vec<(&str, &str)> = served.iter().zip(&turned).map(|((id, _), c)| (id.as_str(), label(c))).collect();
    publish_labels(&app, "churn", &labels).await;

    let alert = wait_until(T, || async { degraded(&app).into_iter().next() }).await.expect("a quality alert");
    assert_eq!((alert.version, alert.metric.as_str(), alert.floor), (1, "accuracy", 0.65));
    assert!(alert.value < 0.65, "{alert:?}");
    // The alert retrains on the newest data, and the new model is promoted.
    let trained = app
        .wait_event(
            "model.trained",
            T,
            |s| matches!(&s.payload, Decoded::Trained(t) if t.reason == pb::TrainReason::Degradation as i32),
        )
        .await;
    assert!(trained.summary.contains("artifact"), "{}", trained.summary);
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;

    // Later labels show the new model restores quality.
    let later = sample::customers(150, 205, Variant::FlippedLabels);
    let served = wait_until(T, || async {
        let s = predict(&app, &later[..5]).await;
        (s.iter().all(|(_, v)| v == "2")).then_some(())
    })
    .await;
    assert!(served.is_some(), "v2 does not serve");
    let served = predict(&app, &later).await;
    let labels: Vec<(&str, &str)> = served.iter().zip(&later).map(|((id, _), c)| (id.as_str(), label(c))).collect();
    publish_labels_protobuf(&app, "churn", &labels).await;
    let restored = wait_until(T, || async {
        let r = client::monitor_report(&app.stack.url("monitor"), "churn").await.ok()?;
        r.performance.filter(|p| p.version == 2 && p.labelled >= 150)
    })
    .await
    .expect("quality of v2 measured");
    assert!(restored.value > 0.65, "{restored:?}");
    // One alert for the episode, in the history: every prediction, label and alert acted on.
    app.wait_quiet(&["MLOPS_PREDICTIONS", "MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(app.stored_events("mlops.events.monitor.performance_degraded.churn").await.len(), 1);
    let (ok, text) = mlops(&app, &["monitor", "report", "churn"]);
    assert!(ok && text.contains("quality of v2 on labels: accuracy") && text.contains("performance v1"), "{text}");
    let (ok, json) = mlops(&app, &["monitor", "report", "churn", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(ok && json["alerts"][0]["kind"] == "performance" && json["performance"]["version"] == 2, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_windows_name_each_features_test_and_bad_labels_are_dead_lettered() {
    // Labels naming no prediction are given up after 8 s (of waiting for their predictions).
    let app = TestApp::start_with(&[("MLOPS_LABEL_WAIT_SECS", "8")]).await;
    let spec = mlops_integration_tests::spec_with_window(100)
        .replace("  cooldown_secs: 3600\n", "  cooldown_secs: 3600\n  performance: {metric: accuracy, min: 0.5}\n");
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(2000, 211, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let drifted = sample::customers(100, 212, Variant::Drifted);
    predict(&app, &drifted).await;
    let alert = app.wait_event("monitor.drift_detected", T, |_| true).await;
    let Decoded::Drift(d) = alert.payload else { unreachable!() };
    // Windows of 100 rows: p-value tests (a distance on so few is noise); the shifted inputs drifted.
    let methods: Vec<(&str, &str)> = d.features.iter().map(|f| (f.feature.as_str(), f.method.as_str())).collect();
    assert_eq!(
        methods,
        [
            ("tenure_months", "ks"),
            ("monthly_charges", "ks"),
            ("support_calls", "ks"),
            ("age", "ks"),
            ("contract", "chi_square"),
            ("payment_method", "chi_square"),
        ]
    );
    let by_name = |n: &str| d.features.iter().find(|f| f.feature == n).unwrap().clone();
    assert!(by_name("tenure_months").drifted && by_name("monthly_charges").drifted && by_name("contract").drifted);
    assert!(!by_name("payment_method").drifted, "{d:?}");
    let prediction = d.prediction.clone().expect("prediction drift is measured");
    assert_eq!(prediction.feature, "prediction");
    let (ok, text) = mlops(&app, &["monitor", "report", "churn"]);
    assert!(ok && text.contains("tenure_months ✗ ks p=") && text.contains("drift "), "{text}");

    // Bad labels: an unknown pipeline, ids that match nothing, a label that is no class, not JSON.
    publish_labels(&app, "nosuch", &[("x", "1")]).await;
    publish_labels(&app, "churn", &[("no-such-prediction", "1")]).await;
    let served = predict(&app, &drifted[..1]).await;
    publish_labels(&app, "churn", &[(served[0].0.as_str(), "maybe")]).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("content-type", "application/json");
    app.js
        .publish_with_headers("mlops.events.labels.arrived.churn", headers, "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let reasons = wait_until(T, || async {
        let dead = app.stored("MLOPS_DLQ", "mlops.dlq.mlops.events.labels.arrived.>").await;
        let reasons: Vec<String> = dead
            .iter()
            .filter(|m| {
                m.headers.as_ref().and_then(|h| h.get("mlops-dlq-service")).is_some_and(|s| s.as_str() == "monitor")
            })
            .map(|m| {
                m.headers.as_ref().and_then(|h| h.get("mlops-dlq-reason")).map(|v| v.to_string()).unwrap_or_default()
            })
            .collect();
        (reasons.len() >= 4).then_some(reasons)
    })
    .await
    .expect("four dead letters from the monitor");
    for needle in [
        "there is no pipeline `nosuch`",
        "1 prediction id(s) match no logged prediction of `churn`",
        "are not `1` or `0`, e.g. \"maybe\"",
        "invalid labels.arrived JSON",
    ] {
        assert!(reasons.iter().any(|r| r.contains(needle)), "no reason mentions {needle:?}: {reasons:?}");
    }
    // The monitor goes on: the report still answers, and a report for a bad name is refused.
    assert!(client::monitor_report(&app.stack.url("monitor"), "churn").await.is_ok());
    let e = client::monitor_report(&app.stack.url("monitor"), "Bad Name").await.unwrap_err();
    assert!(format!("{e:#}").contains("InvalidArgument"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_window_closes_on_time_and_a_rolling_reference_follows_the_traffic() {
    let app = TestApp::start().await;
    let spec = mlops_cli::EXAMPLE_SPEC.replace(
        "  window: 200\n",
        "  window: 1000\n  window_secs: 2\n  reference: rolling\n  features: {contract: {method: psi, threshold: 0.5}}\n",
    );
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(2000, 221, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    // Shifted traffic, far fewer predictions than the window holds: time closes it, and against
    // the training data it has drifted.
    let shifted = sample::customers(60, 222, Variant::Drifted);
    // Each 30 in one request, so that no window closes between two requests on a slow machine.
    let deployer = app.stack.url("deployer");
    client::predict(&deployer, "churn", &rows_json(&shifted[..30])).await.unwrap();
    let first = wait_until(T, || async {
        let r = client::monitor_report(&app.stack.url("monitor"), "churn").await.ok()?;
        r.windows.first().cloned()
    })
    .await
    .expect("a window closed on time");
    assert_eq!(first.rows, 30);
    assert!(first.drifted_share >= 0.3, "{first:?}");
    let contract = first.features.iter().find(|f| f.feature == "contract").unwrap();
    assert_eq!((contract.method.as_str(), contract.threshold), ("psi", 0.5));
    // The same shifted population again is compared with the window before: no drift now.
    client::predict(&deployer, "churn", &rows_json(&shifted[30..])).await.unwrap();
    let second = wait_until(T, || async {
        let r = client::monitor_report(&app.stack.url("monitor"), "churn").await.ok()?;
        (r.windows.len() >= 2).then(|| r.windows[0].clone())
    })
    .await
    .expect("a second window");
    assert_eq!(second.rows, 30);
    assert!(second.drifted_share < 0.3, "{second:?}");
    // This pipeline does not measure quality on labels: its labels are counted and acknowledged,
    // not dead-lettered (a canary may still use them).
    publish_labels(&app, "churn", &[("some-prediction", "1")]).await;
    let scrape = || async {
        let url = format!("{}/metrics", app.stack.url("monitor"));
        client::http_client().unwrap().get(url).send().await.unwrap().text().await.unwrap()
    };
    wait_until(T, || async {
        scrape().await.contains("mlops_labels_ignored_total{pipeline=\"churn\"} 1").then_some(())
    })
    .await
    .expect("the label is counted as ignored");
    assert!(app.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty());
    // What the monitor exports for dashboards: drift scores, predictions read, its queue depth.
    let metrics = scrape().await;
    for name in [
        "mlops_drift_score{",
        "mlops_drift_detected{",
        "mlops_monitor_predictions_total 60",
        "mlops_consumer_pending{",
        "mlops_handler_seconds_bucket{",
    ] {
        assert!(metrics.contains(name), "no {name} in:\n{metrics}");
    }
}

/// Logs `n` predictions of `pipeline` served by a model the monitor cannot fetch yet: `v1`'s
/// artifact with one more byte of JSON whitespace, so another sha256, not yet in the bucket.
/// Returns that artifact's sha256 and bytes, for the test to store when it wants.
async fn log_for_an_unfetchable_model(
    app: &TestApp,
    pipeline: &str,
    v1: &pb::ModelPromoted,
    n: usize,
) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    let models = app.js.get_object_store("models").await.unwrap();
    let mut bytes = Vec::new();
    models.get(&v1.artifact_sha256).await.unwrap().read_to_end(&mut bytes).await.unwrap();
    bytes.push(b'\n');
    let late_sha = mlops_shared::sha256_hex(&bytes);
    let bus = app.bus().await;
    for (i, c) in sample::customers(n, 232, Variant::Normal).iter().enumerate() {
        let log = pb::PredictionLogged {
            pipeline: pipeline.into(),
            prediction_id: format!("{pipeline}-{i}"),
            version: 1,
            artifact_sha256: late_sha.clone(),
            numeric: [
                ("tenure_months".to_owned(), c.tenure_months),
                ("monthly_charges".to_owned(), c.monthly_charges),
                ("support_calls".to_owned(), c.support_calls),
            ]
            .into(),
            categorical: [("contract".to_owned(), c.contract.to_owned())].into(),
            score: 0.5,
            time_unix_ms: mlops_shared::now_unix_ms(),
            ..Default::default()
        };
        let ctx = mlops_shared::events::EventContext::new_run(log.prediction_id.clone());
        bus.publish(&log.prediction_id, &ctx, &log).await.unwrap();
    }
    (late_sha, bytes)
}

/// Two pipelines, `churn` served as usual and `slow`, and v1's promotion.
async fn churn_and_slow(env: &[(&str, &str)]) -> (TestApp, pb::ModelPromoted) {
    let app = TestApp::start_with(env).await;
    app.apply(&mlops_integration_tests::spec_with_window(40)).await;
    app.apply(&mlops_integration_tests::spec_with_window(40).replace("name: churn", "name: slow")).await;
    app.upload("churn", &sample::csv(2000, 231, Variant::Normal)).await;
    let promoted = app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let Decoded::Promoted(v1) = promoted.payload else { unreachable!() };
    (app, v1)
}

async fn windows_of(app: &TestApp, pipeline: &str) -> Vec<pb::WindowReport> {
    client::monitor_report(&app.stack.url("monitor"), pipeline).await.unwrap().windows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_whose_model_is_slow_to_load_holds_up_no_other() {
    let (app, v1) = churn_and_slow(&[]).await;
    let (late_sha, bytes) = log_for_an_unfetchable_model(&app, "slow", &v1, 40).await;

    // Meanwhile `churn` is served and watched as usual: its window closes while `slow` waits.
    predict(&app, &sample::customers(40, 233, Variant::Normal)).await;
    wait_until(T, || async { (!windows_of(&app, "churn").await.is_empty()).then_some(()) })
        .await
        .expect("churn's window closed while slow's model could not be fetched");
    assert!(windows_of(&app, "slow").await.is_empty());

    // Once the model can be fetched, `slow`'s predictions are all counted: none was lost.
    let models = app.js.get_object_store("models").await.unwrap();
    models.put(late_sha.as_str(), &mut bytes.as_slice()).await.unwrap();
    let window = wait_until(T, || async { windows_of(&app, "slow").await.first().cloned() })
        .await
        .expect("slow's window closed once its model could be fetched");
    assert_eq!(window.rows, 40, "{window:?}");
}

/// A stalled pipeline whose queue is full has its predictions left out of its windows (counted),
/// and intake goes on for the others at once rather than after its model loading gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pipeline_with_a_full_queue_holds_up_no_other() {
    // Room for churn's window of 40 while its model loads, not for slow's 100.
    let (app, v1) = churn_and_slow(&[("MLOPS_MONITOR_WINDOW_QUEUE", "45")]).await;
    log_for_an_unfetchable_model(&app, "slow", &v1, 100).await;
    predict(&app, &sample::customers(40, 233, Variant::Normal)).await;
    wait_until(T, || async { (!windows_of(&app, "churn").await.is_empty()).then_some(()) })
        .await
        .expect("churn's window closed while slow's queue was full");
    let metrics = reqwest::get(format!("{}/metrics", app.stack.url("monitor"))).await.unwrap().text().await.unwrap();
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("mlops_monitor_window_dropped_total{pipeline=\"slow\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    // 100 less the 45 queued and the one or two the task took while it tries to load its model.
    assert!(dropped.is_some_and(|d| (50.0..=55.0).contains(&d)), "{metrics}");
    assert!(!metrics.contains("mlops_monitor_window_dropped_total{pipeline=\"churn\"}"), "{metrics}");
}

/// Publishes the true labels of the predictions `served` once the monitor has kept them all (so
/// that each matches at once: the monitor measures the labels that matched before it waits for
/// the others), and waits for the value alert.
async fn labelled(app: &TestApp, served: &[(String, f64, bool)], customers: &[Customer]) -> pb::PerformanceDegraded {
    let logged = || async { (app.logged_predictions("churn").await.len() >= served.len()).then_some(()) };
    wait_until(T, logged).await.expect("every prediction logged");
    app.wait_settled("MLOPS_PREDICTIONS", T).await;
    let labels: Vec<(&str, &str)> =
        served.iter().zip(customers).map(|((id, _, _), c)| (id.as_str(), label(c))).collect();
    publish_labels(app, "churn", &labels).await;
    wait_until(T, || async { degraded(app).into_iter().next() }).await.expect("a value alert")
}

/// The platform with [`priced_spec`] applied and its first version trained on `seed`'s rows and
/// promoted; that version as the registry holds it, and its decision.
async fn priced_v1(floor: f64, business: &str, seed: u64) -> (TestApp, pb::ModelVersion, pb::BusinessDecision) {
    let app = TestApp::start().await;
    app.apply(&priced_spec(floor, business)).await;
    app.upload("churn", &sample::csv(2000, seed, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let v1 = client::models(&app.stack.url("registry"), "churn").await.unwrap().remove(0);
    let decision = v1.business.clone().expect("a priced model records its decision");
    (app, v1, decision)
}

/// The example spec gated and watched on `business_value` (realised floor `floor`), with
/// `business` (YAML lines under `business:`).
fn priced_spec(floor: f64, business: &str) -> String {
    mlops_cli::EXAMPLE_SPEC
        .replace("  - {metric: accuracy, min: 0.65}\n", "  - {metric: business_value, min: 0}\n")
        .replace(
            "  cooldown_secs: 3600\n",
            &format!("  cooldown_secs: 3600\n  performance: {{metric: business_value, min: {floor}, window: 50}}\n"),
        )
        + "business:\n"
        + business
}

/// The `model.evaluated` of `version`, seen already.
fn evaluated(app: &TestApp, version: u64) -> pb::ModelEvaluated {
    app.seen()
        .into_iter()
        .find_map(|s| match s.payload {
            Decoded::Evaluated(e) if e.version == version => Some(e),
            _ => None,
        })
        .expect("model.evaluated")
}

/// Serves `customers` 40 at a time: each one's prediction id, probability and whether the label
/// served was the positive class.
async fn serve(app: &TestApp, customers: &[Customer]) -> Vec<(String, f64, bool)> {
    let mut served = Vec::new();
    for chunk in customers.chunks(40) {
        let body = client::predict(&app.stack.url("deployer"), "churn", &rows_json(chunk)).await.unwrap();
        let output = |name: &str| {
            let o = body["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap();
            o["data"].as_array().unwrap().clone()
        };
        let (ids, scores, labels) = (output("prediction_id"), output("probability"), output("label"));
        for ((id, score), label) in ids.iter().zip(&scores).zip(&labels) {
            served.push((id.as_str().unwrap().to_owned(), score.as_f64().unwrap(), label.as_str().unwrap() == "1"));
        }
    }
    served
}

/// `business.value` end to end: the trainer picks the threshold that maximises the value of a
/// decision on the holdout (misses cost five times a false alarm, so it lies under 0.5), the gate
/// judges `business_value` and `model.evaluated` carries it, the served label follows the
/// threshold, the monitor prices the decisions served once their labels arrive and alerts under
/// the floor, and the model card draws the value curve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priced_decisions_set_the_threshold_the_gate_the_served_label_and_the_realised_value() {
    use mlops_shared::spec::{BUSINESS_VALUE, ValueMatrix};
    let (app, v1, decision) = priced_v1(90.0, "  value: {tp: 100, fp: -20, fn: -100, tn: 0}\n", 301).await;
    let matrix = ValueMatrix { tp: 100.0, fp: -20.0, fn_: -100.0, tn: 0.0 };

    // The threshold, the value at it and the curve, in the registry as the trainer chose them.
    let holdout = v1.holdout_metrics.clone().unwrap_or_default();
    assert_eq!(holdout.values.get(BUSINESS_VALUE), Some(&decision.value), "{holdout:?}");
    assert_eq!(decision.curve.len(), 101);
    assert!(decision.threshold > 0.0 && decision.threshold < 0.5, "{decision:?}");
    let best = decision.curve.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(decision.value >= best, "the chosen threshold is worth less than a point of the curve: {decision:?}");
    let trained = app.wait_event("model.trained", T, |_| true).await;
    assert!(trained.summary.contains(&format!("decides at {:.3}", decision.threshold)), "{}", trained.summary);
    eprintln!("{}", trained.summary);
    // The gate judged it, and the event says so.
    let evaluated = evaluated(&app, 1);
    let candidate = evaluated.candidate_metrics.unwrap_or_default();
    assert_eq!(candidate.values.get(BUSINESS_VALUE), Some(&decision.value), "{candidate:?}");
    let gate = evaluated.checks.iter().find(|c| c.name.starts_with("business_value >= 0")).expect("a value gate");
    assert!(gate.passed, "{gate:?}");

    // The served label follows the threshold, not 0.5.
    let customers = sample::customers(120, 302, Variant::Normal);
    let served = serve(&app, &customers).await;
    for (id, score, positive) in &served {
        assert_eq!(*positive, *score >= decision.threshold, "{id}: score {score}, threshold {}", decision.threshold);
    }
    assert!(
        served.iter().any(|(_, s, positive)| *positive && *s < 0.5),
        "no served score between the threshold {} and 0.5: the test proves nothing",
        decision.threshold
    );

    // Labels arrive: the monitor prices the newest 50 decisions served, under the floor of 90.
    let alert = labelled(&app, &served, &customers).await;
    let newest = served.iter().zip(&customers).rev().take(50);
    let expected = newest.map(|((_, _, positive), c)| matrix.of(*positive, c.churned)).sum::<f64>() / 50.0;
    assert_eq!((alert.version, alert.metric.as_str(), alert.floor), (1, BUSINESS_VALUE, 90.0));
    assert!((alert.value - expected).abs() < 1e-9, "realised {} expected {expected}", alert.value);
    eprintln!("realised value of the newest 50 decisions: {expected:.2}");

    // The card shows the threshold and draws the curve.
    let (ok, html, err) = app.mlops(&["models", "card", "churn@1", "--html"]);
    assert!(ok, "{err}");
    assert!(html.contains("<h2>Business value</h2>") && html.contains("<svg"), "{html}");
    assert!(html.contains(&format!("{:.4}: a score at or above it is labelled `1`", decision.threshold)), "{html}");
}

/// `business.amount`: each decision is worth the matrix's value times the row's
/// `monthly_charges`. The trainer and the evaluator price the holdout alike, and the monitor
/// prices each decision served by the amount it was served with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_priced_by_each_rows_amount_are_valued_alike_in_training_evaluation_and_production() {
    use mlops_shared::spec::{BUSINESS_VALUE, ValueMatrix};
    let business = "  value: {tp: 1, fp: -0.2, fn: -1, tn: 0}\n  amount: monthly_charges\n";
    let (app, _, decision) = priced_v1(100_000.0, business, 311).await;
    let matrix = ValueMatrix { tp: 1.0, fp: -0.2, fn_: -1.0, tn: 0.0 };
    // In money now: far from the -1..1 of a count.
    assert!(decision.value > 1.0, "{decision:?}");
    let candidate = evaluated(&app, 1).candidate_metrics.unwrap_or_default();
    let evaluated_value = candidate.values.get(BUSINESS_VALUE).copied().unwrap_or(f64::NAN);
    assert!((evaluated_value - decision.value).abs() < 1e-6, "evaluator {evaluated_value}, trainer {decision:?}");

    let customers = sample::customers(100, 312, Variant::Normal);
    let served = serve(&app, &customers).await;
    let alert = labelled(&app, &served, &customers).await;
    let newest = served.iter().zip(&customers).rev().take(50);
    let expected =
        newest.map(|((_, _, positive), c)| matrix.of(*positive, c.churned) * c.monthly_charges).sum::<f64>() / 50.0;
    assert_eq!(alert.metric, BUSINESS_VALUE);
    assert!((alert.value - expected).abs() < 1e-6, "realised {} expected {expected}", alert.value);
}
