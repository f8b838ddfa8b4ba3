//! Production truth becomes training data, end to end on real services. A model trained on period
//! A serves period B, whose inputs drifted and whose concept turned around. Drift and degradation
//! alerts fire, but the training window holds nothing new, so each is recorded as skipped and
//! waits. Labels arrive; the monitor writes the labelled predictions back as a feedback version,
//! which is validated like an upload and fires the waiting alert; the retrained model is gated
//! against production on that newest feedback, promoted, and restores quality on later traffic.
//! Also: feedback versions formed by age, rows used once, late labels left out, and a version
//! that follows a changed spec quarantined with its report while the loop stays still.

use std::time::{Duration, Instant};

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, labels_event, rows_json, sample, wait_until};
use mlops_proto as pb;
use mlops_shared::runs::RunState;
use sample::{Customer, Variant};

const T: Duration = Duration::from_secs(120);

const FEATURES: &str = "features:
  - {name: tenure_months, type: numeric, min: 0, max: 72}
  - {name: monthly_charges, type: numeric, min: 0, max: 500}
  - {name: support_calls, type: numeric, min: 0, max: 50}
  - {name: age, type: numeric, min: 18, max: 120, nullable: true}
  - {name: contract, type: categorical, categories: [month-to-month, one-year, two-year]}
  - {name: payment_method, type: categorical, categories: [card, bank-transfer, electronic-check, mailed-check]}
";

/// The loop's spec: retrain on the newest version, upload or feedback, on alerts only; gate on
/// the newest data beside production; write feedback every `min_rows` labelled predictions.
fn spec(triggers: &str, feedback: &str) -> String {
    format!(
        "name: churn
{FEATURES}target: {{name: churned, positive: \"1\", negative: \"0\"}}
validation: {{min_rows: 100}}
training:
  algorithm: logistic_regression
  params: {{l2: 1.0, max_iter: 50}}
  window: {{sources: [upload, feedback], versions: 1}}
{triggers}gates:
  - {{metric: roc_auc, min: 0.70}}
  - {{metric: accuracy, on: newest, min: 0.6, max_drop: 0.01}}
deployment: {{strategy: direct, log_sample: 1.0}}
monitoring:
  window: 200
  drift_share: 0.3
  cooldown_secs: 3600
  performance: {{metric: accuracy, min: 0.65, window: 100}}
  feedback: {feedback}
"
    )
}

/// Predicts each customer once; returns (prediction id, served version) per row.
async fn predict(app: &TestApp, rows: &[Customer]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for chunk in rows.chunks(50) {
        let body = client::predict(&app.stack.url("deployer"), "churn", &rows_json(chunk)).await.unwrap();
        let version = body["model_version"].as_str().unwrap().parse().unwrap();
        let ids = body["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "prediction_id").unwrap();
        out.extend(ids["data"].as_array().unwrap().iter().map(|id| (id.as_str().unwrap().to_owned(), version)));
    }
    out
}

/// The true labels of `rows`, served as `served`, published as an outside system would.
async fn label(app: &TestApp, served: &[(String, u64)], rows: &[Customer]) {
    use prost::Message as _;
    let labels: Vec<(&str, &str)> =
        served.iter().zip(rows).map(|((id, _), c)| (id.as_str(), if c.churned { "1" } else { "0" })).collect();
    let event = labels_event("churn", &labels);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("content-type", "application/protobuf");
    let subject = "mlops.events.labels.arrived.churn";
    app.js.publish_with_headers(subject, headers, event.encode_to_vec().into()).await.unwrap().await.unwrap();
}

async fn report(app: &TestApp) -> pb::ReportResponse {
    client::monitor_report(&app.stack.url("monitor"), "churn").await.unwrap()
}

/// The feedback versions in the catalog, oldest first.
async fn feedback_versions(app: &TestApp) -> Vec<pb::Dataset> {
    let mut all = client::datasets(&app.stack.remote("ingest"), "churn", "").await.unwrap();
    all.retain(|d| d.origin == "feedback");
    all.sort_by_key(|d| d.feedback.as_ref().map(|f| f.sequence));
    all
}

/// The prediction ids a feedback version's Parquet file holds, read from the object store.
async fn prediction_ids_in(app: &TestApp, dataset_id: &str) -> Vec<String> {
    let objects = app.bus().await.objects(mlops_shared::bus::DATASETS_BUCKET).await.unwrap();
    let sha = mlops_shared::ids::Sha256::parse(dataset_id.to_owned()).unwrap();
    let bytes = objects.get_verified(&sha).await.unwrap();
    let batches = mlops_data::open(mlops_data::Source::Bytes(bytes.into()), "f.parquet", &Default::default()).unwrap();
    let column = batches.schema.index_of("prediction_id").unwrap();
    let mut ids = Vec::new();
    for batch in batches {
        let batch = batch.unwrap();
        let view = mlops_data::view(batch.column(column));
        ids.extend((0..batch.num_rows()).map(|r| mlops_data::text(view.get(r)).into_owned()));
    }
    ids
}

fn mlops(app: &TestApp, args: &[&str]) -> String {
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--monitor-url", &app.stack.url("monitor"), "--ingest-url", &app.stack.url("ingest")])
        .args(["--registry-url", &app.stack.url("registry"), "--nats-url", &app.stack.nats_url])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mlops {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_truth_retrains_the_model_that_drifted_and_quality_recovers() {
    let app = TestApp::start().await;
    app.apply(&spec("", "{min_rows: 600, max_age_hours: 24}")).await;
    app.upload("churn", &sample::csv(2000, 301, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    // From now on only alerts retrain; the model-shaping spec is unchanged.
    app.apply(&spec("  triggers: {on: [drift, degradation]}\n", "{min_rows: 600, max_age_hours: 24}")).await;

    // Period B: drifted inputs, and the concept turned around.
    let world = sample::customers(1_200, 302, Variant::DriftedFlipped);
    let served = predict(&app, &world).await;
    assert!(served.iter().all(|(_, v)| *v == 1));
    let drift = app.wait_event("monitor.drift_detected", T, |_| true).await;
    let first_alert = Instant::now();
    // The first labels show the quality fall.
    label(&app, &served[..100], &world[..100]).await;
    let degraded = app.wait_event("monitor.performance_degraded", T, |_| true).await;
    let Decoded::Degraded(degraded) = degraded.payload else { unreachable!() };
    assert!(degraded.value < 0.65, "{degraded:?}");

    // Both alerts find the window unchanged (the upload v1 trained on): skipped, not retrained.
    let runs = app.runs().await;
    let skipped = wait_until(T, || async {
        let all = runs.list().await.ok()?;
        let skipped: Vec<_> =
            all.into_iter().filter(|r| r.pipeline == "churn" && r.state == RunState::Skipped).collect();
        (skipped.len() == 2).then_some(skipped)
    })
    .await
    .expect("both alerts recorded as skipped");
    let mut reasons: Vec<&str> = skipped.iter().map(|r| r.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["degradation", "drift"]);
    assert!(skipped.iter().all(|r| r.stage.starts_with("nothing new to train on")), "{skipped:?}");
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(trained(&app).len(), 1, "only v1 was trained");
    let waiting = report(&app).await.feedback.expect("feedback reported");
    assert_eq!((waiting.waiting, waiting.versions, waiting.min_rows), (100, 0, 600));

    // The rest of the labels make 600: a feedback version forms, is validated, and the waiting
    // alert retrains on it.
    label(&app, &served[100..600], &world[100..600]).await;
    let last_label = Instant::now();
    let trained = wait_until(T, || async { trained(&app).get(1).cloned() }).await.expect("a retrained model");
    // Ingest records the verdict as the trainer takes the version: both follow data.validated.
    let fb = wait_until(T, || async {
        let fb = feedback_versions(&app).await;
        fb.iter().all(|d| d.verdict == "accepted").then_some(fb)
    })
    .await
    .expect("the feedback version accepted");
    assert_eq!(fb.len(), 1, "{fb:?}");
    let origin = fb[0].feedback.clone().unwrap();
    assert_eq!((origin.rows, origin.sequence, origin.model_versions.clone()), (600, 1, vec![1]));
    assert_eq!(trained.dataset_ids, [fb[0].dataset_id.clone()]);
    assert!(
        [pb::TrainReason::Drift as i32, pb::TrainReason::Degradation as i32].contains(&trained.reason),
        "{trained:?}"
    );
    // Its rows are exactly the first 600 labelled predictions, each once.
    let mut ids = prediction_ids_in(&app, &fb[0].dataset_id).await;
    ids.sort();
    let mut want: Vec<String> = served[..600].iter().map(|(id, _)| id.clone()).collect();
    want.sort();
    assert_eq!(ids, want);

    // Gated beside production on the newest feedback, and promoted.
    let evaluated = app.wait_event("model.evaluated", T, |s| s.summary.starts_with("v2 ")).await;
    let Decoded::Evaluated(evaluated) = evaluated.payload else { unreachable!() };
    assert!(evaluated.passed && evaluated.newest_dataset_id == fb[0].dataset_id, "{evaluated:?}");
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;
    app.wait_serving("churn", 2, &rows_json(&world[..1]), T).await;
    let (loop_time, from_labels) = (first_alert.elapsed(), last_label.elapsed());

    // Later traffic of the same world: v2's quality on labels is over the floor again.
    let later = sample::customers(300, 303, Variant::DriftedFlipped);
    let served_later = predict(&app, &later).await;
    assert!(served_later.iter().all(|(_, v)| *v == 2));
    label(&app, &served_later, &later).await;
    let recovered = wait_until(T, || async {
        let r = report(&app).await;
        r.performance.filter(|p| p.version == 2 && p.labelled >= 300)
    })
    .await
    .expect("v2's quality measured");
    assert!(recovered.value > 0.65, "{recovered:?}");
    eprintln!(
        "loop: first alert ({}) to v2 serving in {:.2} s, of which {:.2} s from the 600th label; 600 labelled rows \
         formed the feedback version; accuracy on period B: v1 {:.3}, v2 {:.3}",
        drift.summary,
        loop_time.as_secs_f64(),
        from_labels.as_secs_f64(),
        degraded.value,
        recovered.value
    );

    // People see it: the version's origin, the rows waiting, and the card's newest data.
    app.wait_quiet(&["MLOPS_PREDICTIONS", "MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let list = mlops(&app, &["data", "list", "--pipeline", "churn"]);
    let line = list.lines().find(|l| l.starts_with(&fb[0].dataset_id[..12])).unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("feedback") && line.contains("accepted") && line.contains("feedback:churn#1"), "{list}");
    assert!(list.lines().any(|l| l.contains(" upload ") && l.contains("test.csv")), "{list}");
    let text = mlops(&app, &["monitor", "report", "churn"]);
    assert!(text.contains("feedback: 300 labelled rows waiting for the next version (written at 600 rows"), "{text}");
    let card = mlops(&app, &["models", "card", "churn@2"]);
    assert!(card.contains("feedback version 1: 600 labelled production predictions"), "{card}");
    assert!(card.contains("judged beside production on the world as it is now"), "{card}");
    let skipped_line = mlops(&app, &["runs", "list", "--pipeline", "churn"]);
    assert!(skipped_line.contains("skipped"), "{skipped_line}");
}

/// The models trained so far, in order.
fn trained(app: &TestApp) -> Vec<pb::ModelTrained> {
    app.seen()
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_by_age_uses_rows_once_leaves_late_labels_out_and_quarantines_a_changed_schema() {
    let app = TestApp::start().await;
    // Written after 7.2 s whatever the number of rows; only alerts retrain.
    let (triggers, by_age) = ("  triggers: {on: [drift, degradation]}\n", "{min_rows: 100000, max_age_hours: 0.002}");
    app.apply(&spec("", by_age)).await;
    app.upload("churn", &sample::csv(1000, 401, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.apply(&spec(triggers, by_age)).await;

    let rows = sample::customers(200, 402, Variant::Normal);
    let served = predict(&app, &rows).await;
    // 150 labelled at once, and the same labels sent again: each row is used once.
    label(&app, &served[..150], &rows[..150]).await;
    label(&app, &served[..150], &rows[..150]).await;
    let first = wait_until(T, || async {
        let fb = feedback_versions(&app).await;
        fb.into_iter().next().filter(|d| d.verdict == "accepted")
    })
    .await
    .expect("a feedback version written by age");
    let rows_in_first = first.feedback.as_ref().unwrap().rows;
    assert!((1..=150).contains(&rows_in_first), "{first:?}");
    let mut ids = prediction_ids_in(&app, &first.dataset_id).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, rows_in_first, "a prediction twice in one version");

    // The other 50 predictions are older than `max_age_hours` by now (the version came due by
    // the age of a later label): their labels still count for quality, not as feedback.
    label(&app, &served[150..], &rows[150..]).await;
    let r = wait_until(T, || async {
        let f = report(&app).await.feedback?;
        (rows_in_first + f.late == 200).then_some(f)
    })
    .await
    .expect("the late labels counted");
    assert_eq!((r.waiting, r.versions, r.last_dataset_id.as_str()), (0, 1, first.dataset_id.as_str()));
    assert!(r.late >= 50, "{r:?}");

    // The spec gains a feature no logged prediction carried. The next version follows the spec
    // (and says so), holds no value for it, and is quarantined with its report; its rows are
    // used up all the same, so nothing loops.
    let changed = spec(triggers, by_age)
        .replace(FEATURES, &format!("{FEATURES}  - {{name: region, type: categorical, categories: [north, south]}}\n"));
    app.apply(&changed).await;
    let more = sample::customers(100, 403, Variant::Normal);
    let served = predict(&app, &more).await;
    label(&app, &served, &more).await;
    let rejected = app.wait_event("data.rejected", T, |_| true).await;
    assert!(rejected.summary.contains("region"), "{}", rejected.summary);
    let fb = wait_until(T, || async {
        let fb = feedback_versions(&app).await;
        (fb.len() == 2 && fb[1].verdict == "rejected").then_some(fb)
    })
    .await
    .expect("the second feedback version quarantined");
    let hash = mlops_shared::spec::PipelineSpec::from_yaml(&changed).unwrap().validation_hash();
    assert_eq!(fb[1].feedback.as_ref().unwrap().spec_validation_hash, hash);
    app.wait_quiet(&["MLOPS_PREDICTIONS", "MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let r = report(&app).await.feedback.unwrap();
    assert_eq!((r.waiting, r.versions), (0, 2), "{r:?}");
    assert_eq!(feedback_versions(&app).await.len(), 2);
    let list = mlops(&app, &["data", "list", "--pipeline", "churn", "--verdict", "rejected"]);
    assert!(list.contains(&fb[1].dataset_id[..12]) && list.contains("feedback"), "{list}");
    let shown = mlops(&app, &["data", "show", &fb[1].dataset_id]);
    assert!(shown.contains("origin    feedback") && shown.contains("feedback version 2"), "{shown}");
}

/// The monitor SIGKILLed while it writes feedback versions (right after it announced one) and
/// started again on its own data: every labelled prediction ends up in exactly one version, the
/// versions are numbered without a gap, and none is catalogued twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_killed_while_writing_feedback_loses_no_row_and_duplicates_no_version() {
    let mut app = TestApp::start().await;
    let every_100 = "{min_rows: 100, max_age_hours: 24}";
    app.apply(&spec("", every_100)).await;
    app.upload("churn", &sample::csv(1000, 501, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.apply(&spec("  triggers: {on: [drift, degradation]}\n", every_100)).await;
    let rows = sample::customers(1_000, 502, Variant::Normal);
    let served = predict(&app, &rows).await;
    for at in (0..1_000).step_by(100) {
        label(&app, &served[at..at + 100], &rows[at..at + 100]).await;
    }
    app.wait_event("data.arrived", T, |_| true).await;
    app.stack.kill("monitor").await.unwrap();
    app.stack.spawn("monitor", "monitor", &[]).await.unwrap();

    let fb = wait_until(T, || async {
        let fb = feedback_versions(&app).await;
        let rows: u64 = fb.iter().filter_map(|d| d.feedback.as_ref()).map(|f| f.rows).sum();
        (rows == 1_000).then_some(fb)
    })
    .await;
    let Some(fb) = fb else {
        let dlq: Vec<String> =
            app.stored("MLOPS_DLQ", "mlops.dlq.>").await.iter().map(|m| format!("{:?}", m.headers)).collect();
        panic!(
            "not every labelled prediction reached a feedback version: {:?}\n{:?}\ndead letters: {dlq:?}\n{}",
            feedback_versions(&app).await.iter().map(|d| d.feedback.clone()).collect::<Vec<_>>(),
            report(&app).await.feedback,
            app.log("monitor")
        )
    };
    // A version holds every row waiting when it is cut: 100 or more.
    let sequences: Vec<u64> = fb.iter().map(|d| d.feedback.as_ref().unwrap().sequence).collect();
    assert_eq!(sequences, (1..=fb.len() as u64).collect::<Vec<_>>());
    assert!(fb.iter().all(|d| d.feedback.as_ref().unwrap().rows >= 100), "{fb:?}");
    let mut ids = Vec::new();
    for d in &fb {
        ids.extend(prediction_ids_in(&app, &d.dataset_id).await);
    }
    ids.sort();
    let mut want: Vec<String> = served.iter().map(|(id, _)| id.clone()).collect();
    want.sort();
    assert_eq!(ids, want, "each labelled prediction in exactly one version");
    app.wait_quiet(&["MLOPS_PREDICTIONS", "MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let r = report(&app).await.feedback.unwrap();
    assert_eq!((r.waiting, r.versions), (0, fb.len() as u64), "{r:?}");
    assert!(app.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty());
}
