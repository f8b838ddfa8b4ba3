//! Canary and shadow releases end to end: a new version that passed its gates meets live traffic,
//! is compared with the serving one, and is promoted or rolled back by the deployer itself; manual
//! traffic control; and a second serving replica that follows every change.

use std::collections::BTreeMap;
use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, rows_json, sample, wait_until};
use sample::Variant;

const T: Duration = Duration::from_secs(90);

fn mlops(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--nats-url", &app.stack.nats_url, "--registry-url", &app.stack.url("registry")])
        .args(["--deployer-url", &app.stack.url("deployer")])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn spec(strategy: &str, canary: &str) -> String {
    let spec = mlops_cli::EXAMPLE_SPEC
        .replace("  strategy: direct\n", &format!("  strategy: {strategy}\n  canary: {canary}\n"));
    assert!(spec.contains(canary), "the example's deployment section changed: update this test");
    spec
}

/// Waits until `url` answers with `version` alone, then asserts that it keeps doing so for 20
/// more requests.
async fn serves_only(app: &TestApp, url: &str, version: &str) {
    wait_until(T, || async {
        (drive(app, url, 5, |_| false).await.keys().collect::<Vec<_>>() == [version]).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{url} does not serve v{version} alone"));
    let after = drive(app, url, 20, |_| false).await;
    assert_eq!(after.keys().collect::<Vec<_>>(), [version], "{url}: {after:?}");
}

/// Sends single-row predictions to `url` until `done` is seen (or `limit` requests), counting the
/// answers by version; any failed request fails the test.
async fn drive(app: &TestApp, url: &str, limit: usize, done: impl Fn(&TestApp) -> bool) -> BTreeMap<String, usize> {
    drive_in_order(app, url, limit, done).await.0
}

/// [`drive`], also returning the versions in the order they answered.
async fn drive_in_order(
    app: &TestApp,
    url: &str,
    limit: usize,
    done: impl Fn(&TestApp) -> bool,
) -> (BTreeMap<String, usize>, Vec<String>) {
    let rows = sample::customers(200, 77, Variant::Normal);
    let mut by_version = BTreeMap::new();
    let mut order = Vec::new();
    for i in 0..limit {
        if done(app) {
            break;
        }
        let body = client::predict(url, "churn", &rows_json(&rows[i % rows.len()..=i % rows.len()]))
            .await
            .unwrap_or_else(|e| panic!("request {i} failed: {e:#}"));
        let version = body["model_version"].as_str().unwrap().to_owned();
        *by_version.entry(version.clone()).or_insert(0) += 1;
        order.push(version);
        if i % 50 == 49 {
            // The load's pace, not synchronisation: a breath every 50 requests lets the
            // deployer's release clock and event consumers run between bursts.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (by_version, order)
}

fn promoted(app: &TestApp, version: u64) -> bool {
    app.seen().iter().any(|s| matches!(&s.payload, Decoded::Promoted(p) if p.version == version))
}

fn rolled_back(app: &TestApp) -> Option<mlops_proto::ModelRolledBack> {
    app.seen().into_iter().find_map(|s| match s.payload {
        Decoded::RolledBack(r) => Some(r),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_as_good_as_production_is_promoted_on_every_replica_and_people_can_steer_one() {
    let mut app = TestApp::start().await;
    app.stack.spawn("deployer", "deployer-2", &[("MLOPS_REPLICA_ID", "second")]).await.unwrap();
    app.stack.wait_healthy(T).await.unwrap();
    let second = app.stack.url_of("deployer-2").unwrap();
    // The latency limit applies as configured: a p99 is judged only once both models answered
    // 1,000 requests (canary.rs), so one stall among this canary's first few hundred is not it.
    app.apply(&spec("canary", "{percent: 50, duration_secs: 2, min_requests: 200}")).await;
    // The first model has nothing to be compared with: it serves at once.
    app.upload("churn", &sample::csv(2000, 81, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    app.upload("churn", &sample::csv(2000, 82, Variant::Normal)).await;
    let started = app.wait_event("deployment.canary_started", T, |_| true).await;
    let Decoded::Canary(started) = started.payload else { unreachable!() };
    assert_eq!((started.version, started.champion_version, started.mode.as_str()), (2, 1, "canary"));
    let (ok, listed) = mlops(&app, &["deployments"]);
    assert!(ok && listed.contains("canary of v2 at 50 %"), "{listed}");

    // Live traffic on both replicas: both versions answer until the deployer promotes v2.
    let first = app.stack.url("deployer");
    let (a, b) = tokio::join!(
        drive(&app, &first, 3000, |app| promoted(app, 2)),
        drive(&app, &second, 3000, |app| promoted(app, 2))
    );
    assert!(promoted(&app, 2), "not promoted after the load: {a:?} {b:?} {:?}", rolled_back(&app));
    assert!(a.contains_key("1") && a.contains_key("2"), "{a:?}");
    let event = app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;
    let Decoded::Promoted(event) = event.payload else { unreachable!() };
    assert_eq!(event.previous_version, 1);
    assert!(
        event.reason.contains("as good as the serving model") && event.reason.contains("prediction PSI"),
        "{event:?}"
    );
    // Every replica serves v2 alone.
    for url in [&first, &second] {
        serves_only(&app, url, "2").await;
    }
    let versions = client::models(&app.stack.url("registry"), "churn").await.unwrap();
    assert_eq!(versions[1].aliases, ["candidate", "production"]);
    assert_eq!(versions[0].aliases, ["previous"]);

    // A third version: people narrow its canary, then roll it back by hand.
    app.upload("churn", &sample::csv(2000, 83, Variant::Normal)).await;
    app.wait_event("deployment.canary_started", T, |s| s.summary.contains("v3")).await;
    let (ok, said) = mlops(&app, &["traffic", "churn", "--canary", "20"]);
    assert!(ok && said.contains("canary of v3 at 20 %"), "{said}");
    let (ok, said) = mlops(&app, &["traffic", "churn", "--canary", "0", "--reason", "not before the holidays"]);
    assert!(ok && said.contains("no release in progress"), "{said}");
    let back = wait_until(T, || async { rolled_back(&app) }).await.unwrap();
    assert_eq!((back.from_version, back.to_version), (3, 2));
    assert_eq!(back.reason, "rolled back by hand: not before the holidays");
    let (ok, said) = mlops(&app, &["traffic", "churn", "--canary", "10"]);
    assert!(!ok && said.contains("no canary or shadow release running"), "{said}");
    let (ok, said) = mlops(&app, &["traffic", "churn", "--canary", "150"]);
    assert!(!ok && said.contains("not in [0, 100]"), "{said}");
    // ... and then deploy it to everyone at once.
    let (ok, said) = mlops(&app, &["deploy", "churn@3", "--reason", "after all"]);
    assert!(ok && said.contains("churn now serves v3"), "{said}");
    let deployed = app.wait_event("model.promoted", T, |s| s.summary.starts_with("v3 ")).await;
    let Decoded::Promoted(deployed) = deployed.payload else { unreachable!() };
    assert_eq!(deployed.reason, "deployed by hand: after all");
    wait_until(T, || async {
        (drive(&app, &second, 5, |_| false).await.keys().collect::<Vec<_>>() == ["3"]).then_some(())
    })
    .await
    .expect("the second replica follows a manual deploy");
    let (ok, said) = mlops(&app, &["deploy", "churn@9"]);
    assert!(!ok && said.contains("has no version 9"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_predicts_unlike_production_is_rolled_back_by_itself() {
    let app = TestApp::start().await;
    // Gates a coin-flip model passes, so only the live comparison can stop it.
    let spec = spec("canary", "{percent: 30, duration_secs: 60, min_requests: 100}").replace(
        "  - {metric: roc_auc, min: 0.70, max_drop: 0.02}\n  - {metric: accuracy, min: 0.65}\n",
        "  - {metric: roc_auc, min: 0.3}\n",
    );
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(2000, 91, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.upload("churn", &sample::csv(2000, 92, Variant::NoisyLabels)).await;
    app.wait_event("deployment.canary_started", T, |_| true).await;
    let url = app.stack.url("deployer");
    let seen = drive(&app, &url, 3000, |app| rolled_back(app).is_some()).await;
    let back = rolled_back(&app).unwrap_or_else(|| panic!("not rolled back: {seen:?}"));
    assert_eq!((back.from_version, back.to_version), (2, 1));
    assert!(back.reason.contains("predictions drifted from the serving model's"), "{back:?}");
    // Long before its 60 s were up, and it never became production.
    assert!(!promoted(&app, 2));
    let versions = client::models(&app.stack.url("registry"), "churn").await.unwrap();
    assert_eq!(versions[0].aliases, ["production"]);
    serves_only(&app, &url, "1").await;
}

/// Publishes, as an outside system would (proto3 JSON), the true labels of predictions.
async fn publish_labels(app: &TestApp, labels: &[(String, bool)]) {
    let labels: Vec<serde_json::Value> = labels
        .iter()
        .map(|(id, churned)| serde_json::json!({"predictionId": id, "label": if *churned { "1" } else { "0" }}))
        .collect();
    let body = serde_json::json!({"pipeline": "churn", "labels": labels});
    app.publish_json("mlops.events.labels.arrived.churn", None, &body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_worse_on_delayed_labels_is_rolled_back_by_them() {
    let app = TestApp::start().await;
    // v2 learns the concept backwards. Its gates (measured on its own flipped data) pass, and the
    // prediction-shift limit is off, so only the labels can show that it is wrong.
    app.apply(&spec(
        "canary",
        "{percent: 50, duration_secs: 120, min_requests: 40, max_prediction_psi: 1000, min_labels: 40}",
    ))
    .await;
    app.upload("churn", &sample::csv(2000, 101, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.upload("churn", &sample::csv(2000, 102, Variant::FlippedLabels)).await;
    app.wait_event("deployment.canary_started", T, |_| true).await;

    let url = app.stack.url("deployer");
    let rows = sample::customers(400, 103, Variant::Normal);
    let mut labels = Vec::new();
    let mut answered = BTreeMap::new();
    for (i, row) in rows.iter().cycle().take(4000).enumerate() {
        if rolled_back(&app).is_some() {
            break;
        }
        let body = client::predict(&url, "churn", &rows_json(std::slice::from_ref(row))).await.unwrap();
        *answered.entry(body["model_version"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        let outputs = body["outputs"].as_array().unwrap();
        let ids = outputs.iter().find(|o| o["name"] == "prediction_id").unwrap();
        labels.push((ids["data"][0].as_str().unwrap().to_owned(), row.churned));
        // Ground truth arrives later, in batches.
        if i % 20 == 19 {
            publish_labels(&app, &std::mem::take(&mut labels)).await;
        }
    }
    let back = wait_until(T, || async { rolled_back(&app) }).await.unwrap_or_else(|| panic!("{answered:?}"));
    assert_eq!((back.from_version, back.to_version), (2, 1));
    assert!(
        back.reason.contains("labelled predictions") && back.reason.contains("is below the serving model's"),
        "{back:?}"
    );
    assert!(!back.reason.contains("predictions drifted"), "{back:?}");
    assert!(!promoted(&app, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_release_sees_mirrored_traffic_and_answers_none_of_it() {
    let app = TestApp::start().await;
    app.apply(&spec("shadow", "{percent: 100, duration_secs: 1, min_requests: 200}")).await;
    app.upload("churn", &sample::csv(2000, 95, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.upload("churn", &sample::csv(2000, 96, Variant::Normal)).await;
    let started = app.wait_event("deployment.canary_started", T, |_| true).await;
    assert!(started.summary.starts_with("shadow of v2"), "{}", started.summary);
    let url = app.stack.url("deployer");
    let (during, order) = drive_in_order(&app, &url, 3000, |app| promoted(app, 2)).await;
    assert!(promoted(&app, 2), "{during:?}");
    // A shadow never answers: v1 answers everything until v2 is promoted (the last requests may
    // meet v2 before the promotion event arrives here: a few milliseconds' worth, more on a
    // loaded machine).
    let first_v2 = order.iter().position(|v| v == "2").unwrap_or(order.len());
    assert!(order[first_v2..].iter().all(|v| v == "2") && order.len() - first_v2 <= 50, "{during:?}");
    assert!(first_v2 >= 200, "{during:?}");
    wait_until(T, || async {
        (drive(&app, &url, 5, |_| false).await.keys().collect::<Vec<_>>() == ["2"]).then_some(())
    })
    .await
    .expect("v2 serves after the shadow release");
}
