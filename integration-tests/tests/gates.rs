//! Gates beyond the holdout (slices, the newest data), operators overriding them, model cards,
//! the staleness analysis, and the registry killed under concurrent writes.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, rows_json, sample, wait_until};
use sample::Variant;

const T: Duration = Duration::from_secs(90);

/// Runs `mlops` with the stack's endpoints; (success, stdout + stderr).
fn mlops(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--nats-url", &app.stack.nats_url, "--registry-url", &app.stack.url("registry")])
        .args(["--ingest-url", &app.stack.url("ingest"), "--deployer-url", &app.stack.url("deployer")])
        .args(["--evaluator-url", &app.stack.url("evaluator")])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

async fn served_version(app: &TestApp) -> String {
    let body =
        client::predict(&app.stack.url("deployer"), "churn", &rows_json(&sample::customers(1, 5, Variant::Normal)))
            .await
            .unwrap();
    body["model_version"].as_str().unwrap_or_default().to_owned()
}

fn evaluated(app: &TestApp, version: u64) -> Option<mlops_proto::ModelEvaluated> {
    app.seen().into_iter().find_map(|s| match s.payload {
        Decoded::Evaluated(e) if e.version == version && e.decision.is_none() => Some(e),
        _ => None,
    })
}

/// The example pipeline with a per-slice floor no real model meets, so every candidate fails its
/// gates, and a gate on the newest data.
fn slice_gated_spec() -> String {
    let spec = mlops_cli::EXAMPLE_SPEC.replace(
        "  - {metric: roc_auc, min: 0.70, max_drop: 0.02}\n  - {metric: accuracy, min: 0.65}\n",
        "  - {metric: roc_auc, min: 0.6, slice_min: 0.99}\n  - {metric: roc_auc, on: newest, min: 0.5}\n\
         evaluation: {slices: [contract], min_slice_rows: 20}\n",
    );
    assert!(spec.contains("slice_min"), "the example's gates changed: update this test");
    spec
}

/// The platform with [`slice_gated_spec`] and its first version judged (and failed); the dataset
/// it was trained on and the verdict.
async fn v1_judged() -> (TestApp, mlops_proto::Dataset, mlops_proto::ModelEvaluated) {
    let app = TestApp::start().await;
    app.apply(&slice_gated_spec()).await;
    let first = app.upload("churn", &sample::csv(1500, 41, Variant::Normal)).await;
    let v1 = app.wait_event("model.evaluated", T, |_| true).await;
    let Decoded::Evaluated(v1) = v1.payload else { unreachable!() };
    (app, first, v1)
}

/// Approves `version` as `ana` and waits until it is promoted; the promotion.
async fn approved(app: &TestApp, version: u64, reason: &str) -> mlops_proto::ModelPromoted {
    // Once the registry holds the verdict (it reads `model.evaluated` on a consumer of its own),
    // so that the approval carries the checks as measured.
    let judged = || async {
        let models = client::models(&app.stack.url("registry"), "churn").await.ok()?;
        models.into_iter().find(|m| m.version == version && !m.gate.is_empty())
    };
    wait_until(T, judged).await.expect("the registry recorded the verdict");
    let target = format!("churn@{version}");
    let (ok, said) = mlops(app, &["models", "approve", &target, "--reason", reason, "--by", "ana"]);
    assert!(ok && said.contains(&format!("{target} approved by ana")), "{said}");
    let promoted = app.wait_event("model.promoted", T, |s| s.summary.starts_with(&format!("v{version} "))).await;
    let Decoded::Promoted(promoted) = promoted.payload else { unreachable!() };
    promoted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_and_the_newest_data_are_gated_and_contradictory_thresholds_refused() {
    let (app, first, v1) = v1_judged().await;
    assert!(!v1.passed, "{v1:?}");
    let slice_check = v1.checks.iter().find(|c| c.name == "roc_auc >= 0.99 on every slice of contract").unwrap();
    assert!(!slice_check.passed && slice_check.detail.contains("month-to-month"), "{slice_check:?}");
    let values: Vec<&str> = v1.slices.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(values, ["month-to-month", "one-year", "two-year"]);
    assert_eq!(v1.slices.iter().map(|s| s.rows).sum::<u64>(), v1.candidate_metrics.as_ref().unwrap().rows);
    // One dataset: the newest data the model did not train on is its holdout.
    assert_eq!(v1.newest_dataset_id, first.dataset_id);
    let newest = v1.candidate_newest_metrics.as_ref().unwrap();
    assert_eq!(newest.rows, 300);
    assert!(v1.checks.iter().any(|c| c.name == "roc_auc >= 0.5 on the newest data" && c.passed), "{v1:?}");

    // A spec whose thresholds contradict each other is refused whole; the pipeline keeps its spec.
    let (_, before) = mlops(&app, &["pipeline", "list"]);
    let contradictory = app.dir.path().join("contradictory.yaml");
    let spec = slice_gated_spec();
    std::fs::write(&contradictory, spec.replace("min: 0.6, slice_min: 0.99", "min: 1.5, slice_min: 0.99")).unwrap();
    let (ok, said) = mlops(&app, &["pipeline", "apply", contradictory.to_str().unwrap()]);
    assert!(!ok && said.contains("`min` 1.5 can never be met: `roc_auc` is at most 1"), "{said}");
    let (ok, after) = mlops(&app, &["pipeline", "list"]);
    assert!(ok && after.contains("churn") && after == before, "the revision and spec hash moved: {before} -> {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_approve_and_block_versions_with_reasons_and_the_registry_keeps_the_trail() {
    let (app, ..) = v1_judged().await;
    // The operator approves v1 anyway: the deployer promotes it, saying who and why.
    let promoted = approved(&app, 1, "launch; slice floor is aspirational").await;
    assert!(promoted.reason.contains("approved by ana: launch"), "{promoted:?}");
    assert_eq!(served_version(&app).await, "1");

    // A second version, judged against the first on the same rows, approved too.
    app.upload("churn", &sample::csv(1500, 42, Variant::Normal)).await;
    let v2 = wait_until(T, || async { evaluated(&app, 2) }).await.expect("v2 evaluated");
    assert_eq!(v2.production_version, 1);
    assert!(v2.production_metrics.is_some() && v2.slices.iter().all(|s| !s.production.is_empty()), "{v2:?}");
    approved(&app, 2, "same as v1").await;
    assert_eq!(served_version(&app).await, "2");

    // Blocking the serving version rolls back to the previous one, and it can never serve again.
    let (ok, said) = mlops(&app, &["models", "block", "churn@2", "--reason", "leaks the label", "--by", "bo"]);
    assert!(ok && said.contains("churn@2 blocked by bo"), "{said}");
    let back = app.wait_event("model.rolled_back", T, |_| true).await;
    let Decoded::RolledBack(back) = back.payload else { unreachable!() };
    assert_eq!((back.from_version, back.to_version), (2, 1));
    assert!(back.reason.contains("version 2 blocked by bo: leaks the label"), "{back:?}");
    assert_eq!(served_version(&app).await, "1");
    let (ok, said) = mlops(&app, &["models", "alias", "churn@2", "production"]);
    assert!(!ok && said.contains("version 2 is blocked by bo: leaks the label"), "{said}");
    let (ok, said) = mlops(&app, &["models", "block", "churn@2", "--reason", " ", "--by", "bo"]);
    assert!(!ok && said.contains("needs a `reason`"), "{said}");
    let (ok, said) = mlops(&app, &["models", "approve", "churn@9", "--reason", "x"]);
    assert!(!ok && said.contains("has no version 9"), "{said}");
    let (ok, said) = mlops(&app, &["models", "alias", "churn@9", "champion"]);
    assert!(!ok && said.contains("has no version 9"), "{said}");

    // The registry keeps all of it: the measurements, the decisions and the audit trail.
    let (ok, shown) = mlops(&app, &["models", "show", "churn@2"]);
    assert!(ok, "{shown}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["decision"]["action"], "blocked");
    assert_eq!(shown["slices"].as_array().unwrap().len(), 3);
    assert_eq!(shown["production_metrics"]["version"], 1);
    assert!(shown["newest"]["rows"].as_u64().unwrap() > 0, "{shown}");
    let (ok, audit) = mlops(&app, &["models", "audit", "churn"]);
    assert!(ok && audit.contains("model.approved") && audit.contains("model.blocked"), "{audit}");
    assert!(audit.contains("version 2 by bo: leaks the label"), "{audit}");
    // The blocked version's card says so.
    let html = app.dir.path().join("card.html");
    let (ok, said) = mlops(&app, &["models", "card", "churn@2", "--html", "--out", html.to_str().unwrap()]);
    assert!(ok, "{said}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("<h2>Gate decision</h2>") && html.contains("<b>blocked</b> by bo"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_card_shows_the_gates_slices_decision_and_training_data() {
    let (app, first, v1) = v1_judged().await;
    // Permutation importance of every feature: tenure decides churn in the sample, age barely.
    let importance: Vec<(&str, f64)> = v1.importance.iter().map(|i| (i.feature.as_str(), i.candidate)).collect();
    assert_eq!(importance.len(), 6, "{importance:?}");
    let of = |name: &str| importance.iter().find(|(f, _)| *f == name).unwrap().1;
    assert!(of("tenure_months") > 0.02 && of("tenure_months") > 4.0 * of("age").abs(), "{importance:?}");
    assert!(v1.importance.iter().all(|i| i.production.is_none()) && v1.warnings.is_empty(), "{v1:?}");
    approved(&app, 1, "launch; slice floor is aspirational").await;
    let (ok, card) = mlops(&app, &["models", "card", "churn@1"]);
    assert!(ok, "{card}");
    for expected in [
        "# Model card: churn v1",
        "## Slices",
        "| contract | month-to-month |",
        "Operator decision: **approved** by ana",
        "| roc_auc >= 0.99 on every slice of contract | FAIL |",
        &first.dataset_id,
        "## Training data",
        "| monthly_charges | numeric |",
        "## Feature importance",
        "| Column | Kind | Missing | Power alone | Summary |",
    ] {
        assert!(card.contains(expected), "{expected:?} not in\n{card}");
    }
    let html = app.dir.path().join("card.html");
    let (ok, said) = mlops(&app, &["models", "card", "churn@1", "--html", "--out", html.to_str().unwrap()]);
    assert!(ok, "{said}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("<h2>Gate decision</h2>") && html.contains("<b>approved</b> by ana"), "{html}");
}

/// The validator measures each feature's power alone on labelled data and `mlops data report`
/// lists it; a feature under its `min_power` rejects the version, naming the feature; labels
/// that are coin flips leave every feature powerless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_under_their_min_power_reject_the_data_and_the_report_lists_each_ones_power() {
    let app = TestApp::start().await;
    let demanding = mlops_cli::EXAMPLE_SPEC.replace(
        "{name: age, type: numeric, min: 18, max: 120, nullable: true, mostly: 0.99}",
        "{name: age, type: numeric, min: 18, max: 120, nullable: true, mostly: 0.99, min_power: 0.3}",
    );
    assert_ne!(demanding, mlops_cli::EXAMPLE_SPEC, "the example's age changed: update this test");
    app.apply(&demanding).await;
    let ds = app.upload("churn", &sample::csv(1500, 45, Variant::Normal)).await;
    let rejected = app.wait_event("data.rejected", T, |_| true).await;
    let Decoded::Rejected(r) = rejected.payload else { unreachable!() };
    let low: Vec<(&str, &str)> = r
        .columns
        .iter()
        .flat_map(|c| c.anomalies.iter().map(move |a| (c.column.as_str(), a.kind.as_str())))
        .filter(|(_, kind)| *kind == "low_power")
        .collect();
    assert_eq!(low, [("age", "low_power")], "{r:?}");
    let (ok, report) = mlops(&app, &["data", "report", &ds.dataset_id]);
    assert!(ok, "{report}");
    assert!(report.contains("predictive power of each feature alone"), "{report}");
    let power = |report: &str, name: &str| {
        let line = report.lines().rev().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {report}"));
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap()
    };
    assert!(power(&report, "tenure_months") > 0.3 && power(&report, "age") < 0.3, "{report}");
    // With labels that carry nothing, no feature has power.
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let noise = app.upload("churn", &sample::csv(1500, 46, Variant::NoisyLabels)).await;
    app.wait_event("data.validated", T, |s| s.summary.contains(&noise.dataset_id[..12])).await;
    let (ok, report) = mlops(&app, &["data", "report", &noise.dataset_id]);
    assert!(ok && power(&report, "tenure_months") < 0.1, "{report}");
}

/// A label whose direction turns with `degrees`: old models grow stale as the concept moves.
fn rotated_csv(rows: usize, seed: u64, degrees: f64) -> String {
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let (sin, cos) = degrees.to_radians().sin_cos();
    let mut out = String::from("x,y,label\n");
    for _ in 0..rows {
        let (x, y, noise) = (unit() * 2.0 - 1.0, unit() * 2.0 - 1.0, (unit() - 0.5) * 0.3);
        let label = u8::from(x * cos + y * sin + noise > 0.0);
        out.push_str(&format!("{x:.4},{y:.4},{label}\n"));
    }
    out
}

const ROTATING: &str = "name: rot
features:
  - {name: x, type: numeric}
  - {name: y, type: numeric}
target: {name: label}
training:
  algorithm: logistic_regression
  window: {versions: 1}
  triggers: {on: [drift]}
gates:
  - {metric: roc_auc, min: 0.5}
evaluation:
  staleness: {versions: 5, tolerance: 0.05, schedule: \"*/2 * * * * *\"}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_measures_quality_against_age_and_recommends_a_cadence() {
    let app = TestApp::start().await;
    app.apply(ROTATING).await;
    let (ok, said) = mlops(&app, &["staleness", "rot"]);
    assert!(!ok && said.contains("has no validated training data yet"), "{said}");
    // Three production versions a few seconds apart, each trained on its own concept.
    for (version, degrees) in [(1u64, 0.0), (2, 10.0), (3, 70.0)] {
        let d = app.upload("rot", &rotated_csv(1000, version, degrees)).await;
        app.wait_event(
            "data.validated",
            T,
            |s| matches!(&s.payload, Decoded::Validated(v) if v.dataset_id == d.dataset_id),
        )
        .await;
        let (ok, said) = mlops(&app, &["train", "--pipeline", "rot", "--timeout", "60"]);
        assert!(ok, "{said}");
        app.wait_event("model.promoted", T, |s| s.pipeline == "rot" && s.summary.starts_with(&format!("v{version} ")))
            .await;
        // Not synchronisation: what is measured is quality against age, so the versions are made
        // more than a second apart for their ages to differ.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // The newest data (not trained on: new data starts no run here).
    let newest = app.upload("rot", &rotated_csv(1000, 9, 80.0)).await;
    let report = wait_until(T, || async {
        let (ok, said) = mlops(&app, &["staleness", "rot", "--json"]);
        assert!(ok, "{said}");
        let r: serde_json::Value = serde_json::from_str(&said).unwrap();
        (r["datasetId"] == newest.dataset_id.as_str()).then_some(r)
    })
    .await
    .expect("staleness on the newest data");
    let rows = report["rowsByAge"].as_array().unwrap();
    let versions: Vec<u64> = rows.iter().map(|r| r["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [3, 2, 1], "{report}");
    // All 1,000 rows are unseen by every version; the youngest is the yardstick.
    assert_eq!(report["rows"], 1000);
    assert_eq!(rows[0]["loss"], 0.0);
    assert_eq!(rows[0]["withinTolerance"], true);
    assert_eq!(rows[1]["withinTolerance"], false, "{report}");
    assert!(rows[1]["loss"].as_f64().unwrap() > 0.05 && rows[2]["loss"].as_f64().unwrap() > 0.05, "{report}");
    let ages: Vec<f64> = rows.iter().map(|r| r["ageSecs"].as_f64().unwrap()).collect();
    assert!(ages[0] >= 1.0 && ages[0] < ages[1] && ages[1] < ages[2], "{ages:?}");
    assert_eq!(report["recommendedCadenceSecs"].as_f64().unwrap(), ages[0]);
    let (ok, table) = mlops(&app, &["staleness", "rot", "--versions", "2"]);
    assert!(ok && table.contains("Recommended retraining cadence: every"), "{table}");
    assert_eq!(table.lines().filter(|l| l.starts_with('3') || l.starts_with('2')).count(), 2, "{table}");
    let (ok, said) = mlops(&app, &["staleness", "nope"]);
    assert!(!ok && said.contains("pipeline `nope` not found"), "{said}");

    // The schedule publishes the same report as an event.
    let event = app
        .wait_event(
            "model.staleness_reported",
            T,
            |s| matches!(&s.payload, Decoded::Staleness(r) if r.dataset_id == newest.dataset_id),
        )
        .await;
    let Decoded::Staleness(event) = event.payload else { unreachable!() };
    assert_eq!(event.rows_by_age.len(), 3);
    assert!(!event.cadence_is_lower_bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_killed_under_concurrent_writes_and_a_cascade_loses_nothing() {
    let mut app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1200, 51, Variant::Normal)).await;
    app.wait_event("model.evaluated", T, |_| true).await;
    let registry = app.stack.url("registry");
    let port = registry.rsplit(':').next().unwrap().to_owned();

    // Four writers tag version 1, each write retried until the registry acknowledges it, while a
    // second dataset cascades through training and evaluation.
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let (written, refused) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicUsize::new(0)));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (registry, written, refused) = (registry.clone(), written.clone(), refused.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    let request = mlops_proto::UpdateModelVersionRequest {
                        pipeline: "churn".into(),
                        version: 1,
                        set_tags: [(format!("w{w}-{i}"), "ok".to_owned())].into(),
                        by: format!("writer-{w}"),
                        ..Default::default()
                    };
                    loop {
                        let done = match client::registry(&registry).await {
                            Ok(mut r) => r.update_model_version(request.clone()).await.is_ok(),
                            Err(_) => false,
                        };
                        if done {
                            written.fetch_add(1, Relaxed);
                            break;
                        }
                        refused.fetch_add(1, Relaxed);
                        // A client's retry back-off, not synchronisation.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // The writers' pace, not synchronisation: their 160 writes span the outage.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    let second = app.upload("churn", &sample::csv(1200, 52, Variant::Normal)).await;
    // The registry dies once the writers are under way, and stays down until it has refused a
    // write and the second model is trained: registering that model is the cascade's next step.
    wait_until(T, || async { (written.load(Relaxed) >= 8).then_some(()) }).await.expect("the writers write");
    assert!(app.stored_events("mlops.events.model.registered.churn").await.len() == 1, "v2 registered too soon");
    app.stack.kill("registry").await.unwrap();
    wait_until(T, || async { (refused.load(Relaxed) > 0).then_some(()) })
        .await
        .expect("the registry died while writes were in flight");
    app.wait_event(
        "model.trained",
        T,
        |s| matches!(&s.payload, Decoded::Trained(t) if t.dataset_ids.contains(&second.dataset_id)),
    )
    .await;
    app.stack.spawn("registry", "registry", &[("MLOPS_LISTEN", &format!("127.0.0.1:{port}"))]).await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(written.load(Relaxed), 160, "every write acknowledged in the end");
    let v = client::models(&registry, "churn").await.unwrap();
    let tags = &v[0].tags;
    let missing: Vec<String> =
        (0..4).flat_map(|w| (0..40).map(move |i| format!("w{w}-{i}"))).filter(|k| !tags.contains_key(k)).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    // The cascade went on: the second version is registered and judged, exactly once.
    let judged = wait_until(T, || async {
        let v = client::models(&registry, "churn").await.ok()?;
        (v.len() == 2 && !v[1].gate.is_empty()).then_some(v)
    })
    .await
    .expect("version 2 registered and judged after the restart");
    assert_eq!(judged.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    let (ok, audit) = mlops(&app, &["models", "audit", "churn"]);
    assert!(ok, "{audit}");
    assert_eq!(audit.lines().filter(|l| l.contains("model.registered")).count(), 2, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_artifact_is_refused_even_when_approved_and_never_served() {
    let mut app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1200, 61, Variant::Normal)).await;
    let promoted = app.wait_event("model.promoted", T, |_| true).await;
    let Decoded::Promoted(v1) = promoted.payload else { unreachable!() };
    // A second version, failed by a floor no model meets, then tampered with in the bucket.
    app.apply(&mlops_cli::EXAMPLE_SPEC.replace("{metric: accuracy, min: 0.65}", "{metric: accuracy, min: 0.999}"))
        .await;
    app.upload("churn", &sample::csv(1200, 62, Variant::Normal)).await;
    let v2 = wait_until(T, || async { evaluated(&app, 2) }).await.expect("v2 evaluated");
    assert!(!v2.passed);
    let models = app.js.get_object_store("models").await.unwrap();
    let tamper = |sha: String| {
        let models = models.clone();
        async move {
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut models.get(&sha).await.unwrap(), &mut bytes).await.unwrap();
            let text = String::from_utf8(bytes).unwrap().replacen("\"seed\":42", "\"seed\":43", 1);
            models.put(sha.as_str(), &mut text.as_bytes()).await.unwrap();
        }
    };
    tamper(v2.artifact_sha256.clone()).await;

    // Approved anyway: the deployer refuses it, dead-letters the verdict with the reason, and
    // keeps serving version 1; `production` never moves.
    let (ok, said) = mlops(&app, &["models", "approve", "churn@2", "--reason", "ship it", "--by", "cy"]);
    assert!(ok, "{said}");
    let dead = wait_until(T, || async {
        let d = app.stored("MLOPS_DLQ", "mlops.dlq.mlops.events.model.evaluated.>").await;
        d.into_iter().find(|m| {
            let reason = m.headers.as_ref().and_then(|h| h.get("mlops-dlq-reason")).map(|v| v.to_string());
            reason.is_some_and(|r| r.contains("corrupt or tampered") && r.contains(&v2.artifact_sha256))
        })
    })
    .await;
    assert!(dead.is_some(), "the refused verdict is dead-lettered with its reason");
    assert_eq!(served_version(&app).await, "1");
    let production = client::models(&app.stack.url("registry"), "churn").await.unwrap();
    assert_eq!(production[0].aliases, ["production"]);
    assert!(!production[1].aliases.contains(&"production".to_owned()));

    // The production artifact tampered with too: a restarted deployer refuses it and serves no
    // model for the pipeline rather than a tampered one, and says so.
    tamper(v1.artifact_sha256.clone()).await;
    app.stack.kill("deployer").await.unwrap();
    app.stack.spawn("deployer", "deployer", &[]).await.unwrap();
    app.stack.wait_healthy(T).await.unwrap();
    // The deployer counts each artifact it refuses, by pipeline.
    let metrics = format!("{}/metrics", app.stack.url("deployer"));
    let counted = wait_until(T, || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        let line = text.lines().find(|l| l.starts_with("mlops_artifacts_refused_total{pipeline=\"churn\"}"))?;
        line.rsplit(' ').next()?.parse::<f64>().ok().filter(|n| *n >= 1.0)
    })
    .await;
    assert!(counted.is_some(), "the restarted deployer did not refuse the tampered production artifact");
    let refused =
        client::predict(&app.stack.url("deployer"), "churn", &rows_json(&sample::customers(1, 5, Variant::Normal)))
            .await;
    assert!(refused.is_err(), "{refused:?}");
}

/// A spec drops a feature and new data comes without its column: the champion, trained on that
/// column, cannot read the new rows, so `max_drop` cannot compare. The candidate is refused with
/// that reason (and the way out), not judged against a blind champion nor left stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_champion_that_cannot_read_the_new_data_is_not_compared_blindly() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 51, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let age = "  - {name: age, type: numeric, min: 18, max: 120, nullable: true, mostly: 0.99}\n";
    assert!(mlops_cli::EXAMPLE_SPEC.contains(age), "the example's features changed: update this test");
    // The spec change trains nothing by itself (only new data does), so v1 still serves.
    let dropped =
        mlops_cli::EXAMPLE_SPEC.replace(age, "").replace("  seed: 42\n", "  seed: 42\n  triggers: {on: [new_data]}\n");
    assert!(dropped.contains("triggers"), "the example's training section changed: update this test");
    app.apply(&dropped).await;
    // New data without the column: v2's window holds rows v1 cannot read.
    let csv = sample::csv(1500, 52, Variant::Normal);
    let without_age: Vec<String> = csv
        .lines()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != 4).map(|(_, f)| f).collect::<Vec<_>>().join(","))
        .collect();
    assert!(!without_age[0].contains("age"), "{}", without_age[0]);
    app.upload("churn", &(without_age.join("\n") + "\n")).await;
    let v2 = wait_until(T, || async { evaluated(&app, 2) }).await.expect("v2 judged");
    let blind = v2.checks.iter().find(|c| c.name.starts_with("compared with production v1"));
    let blind = blind.unwrap_or_else(|| panic!("{v2:?}"));
    assert!(!v2.passed && !blind.passed && blind.detail.contains("age"), "{blind:?}");
    assert!(blind.detail.contains("mlops models approve"), "{blind:?}");
}
