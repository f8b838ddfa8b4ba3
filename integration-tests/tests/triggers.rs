//! What starts a training run, end to end: debounced bursts of data, the cooldown, a cron
//! schedule, degradation alerts; and what a run shows while and after it trains (run records,
//! progress, `mlops runs`, hyper-parameter search).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, sample, wait_until};
use mlops_proto as pb;
use mlops_shared::runs::{Run, RunState, Runs};
use sample::Variant;

const T: Duration = Duration::from_secs(60);

fn trained(app: &TestApp, reason: pb::TrainReason) -> Vec<pb::ModelTrained> {
    app.seen()
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) if t.reason == reason as i32 => Some(t),
            _ => None,
        })
        .collect()
}

fn with_training(extra: &str) -> String {
    let spec = mlops_cli::EXAMPLE_SPEC.replace("  holdout: 0.2\n", &format!("  holdout: 0.2\n{extra}"));
    assert!(spec.contains(extra));
    spec
}

async fn bus(app: &TestApp) -> mlops_shared::bus::Bus {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let args = mlops_shared::config::NatsArgs::local(&app.stack.nats_url);
    mlops_shared::bus::Bus::connect(&args, "test", &shutdown).await.unwrap()
}

async fn runs(app: &TestApp) -> Runs {
    Runs::open(&bus(app).await).await.unwrap()
}

/// A hundred small batches inside the debounce window make one run, on all of them; a batch
/// arriving just after waits for the cooldown, then makes one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_inside_the_debounce_window_makes_one_run_and_the_cooldown_holds_the_next() {
    let app = TestApp::start().await;
    let (debounce, cooldown) = (20, 8);
    app.apply(&with_training(&format!(
        "  window: {{versions: 200}}\n  triggers: {{debounce_secs: {debounce}, cooldown_secs: {cooldown}}}\n"
    )))
    .await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for seed in 0..100 {
        ids.push(app.upload("churn", &sample::csv(100, 1000 + seed, Variant::Normal)).await.dataset_id);
    }
    let took = started.elapsed();
    eprintln!("100 uploads took {took:?}");
    let t = app.wait_event("model.trained", T + Duration::from_secs(debounce), |_| true).await;
    let Decoded::Trained(first) = t.payload else { unreachable!() };
    assert_eq!(first.reason, pb::TrainReason::NewData as i32);
    let accepted: Vec<String> = app
        .seen()
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Validated(v) => Some(v.dataset_id),
            _ => None,
        })
        .collect();
    // A few small batches may be rejected (drift against the previous batch); most are not.
    assert!(accepted.len() >= 50 && accepted.iter().all(|id| ids.contains(id)), "{} accepted", accepted.len());
    if took < Duration::from_secs(debounce * 3 / 4) {
        // Every batch was accepted inside the window (which opened with the first one).
        assert_eq!(first.dataset_ids, accepted, "one run on all hundred batches");
    }
    assert!(started.elapsed() >= Duration::from_secs(debounce), "the run waited for the window to close");

    // One more batch, at once: it waits for the cooldown after the first run was queued.
    let late = app.upload("churn", &sample::csv(100, 2000, Variant::Normal)).await;
    let t = app
        .wait_event(
            "model.trained",
            T,
            |s| matches!(&s.payload, Decoded::Trained(t) if t.dataset_ids.contains(&late.dataset_id)),
        )
        .await;
    let Decoded::Trained(second) = t.payload else { unreachable!() };
    // The record is updated just after the model is announced.
    let store = runs(&app).await;
    let (a, b) = wait_until(T, || async {
        let a = store.get(&first.job_id).await.unwrap().filter(|r| r.state.is_final())?;
        let b = store.get(&second.job_id).await.unwrap().filter(|r| r.state.is_final())?;
        Some((a, b))
    })
    .await
    .expect("both runs recorded as over");
    let listed = store.list().await.unwrap();
    assert!(listed.contains(&a) && listed.contains(&b), "{listed:?}");
    assert!(b.queued_ms - a.queued_ms >= cooldown * 1000, "queued {} ms apart", b.queued_ms - a.queued_ms);
    for r in [&a, &b] {
        assert_eq!((r.reason.as_str(), r.state), ("new_data", RunState::Succeeded), "{r:?}");
    }
    // Every batch has been taken in and acted on: no run waits for a window or a cooldown.
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let runs_made = app.stored_events("mlops.events.model.trained.churn").await.len();
    // One for the burst and one after the cooldown; a third if the burst outlasted its window.
    assert!((2..=3).contains(&runs_made), "{runs_made} runs for 101 batches");
}

/// A cron schedule queues a run at its slots, with the reason `schedule`, while new data (left out
/// of `on`) starts none; a degradation alert whose window holds only what the scheduled run
/// trained on is recorded as skipped, nothing new to train on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_starts_runs_a_degradation_alert_with_nothing_new_does_not_and_new_data_does_not() {
    let app = TestApp::start().await;
    app.apply(&with_training("  triggers: {schedule: \"*/4 * * * * *\", on: [degradation]}\n")).await;
    let ds = app.upload("churn", &sample::csv(1000, 7, Variant::Normal)).await;
    let t = app
        .wait_event(
            "model.trained",
            T,
            |s| matches!(&s.payload, Decoded::Trained(t) if t.reason == pb::TrainReason::Schedule as i32),
        )
        .await;
    let Decoded::Trained(scheduled) = t.payload else { unreachable!() };
    assert_eq!(scheduled.dataset_ids, vec![ds.dataset_id.clone()]);
    assert!(scheduled.job_id.starts_with("churn-schedule-"), "{}", scheduled.job_id);
    // The slot is in the job id: a multiple of four seconds.
    let slot: i64 = scheduled.job_id.trim_start_matches("churn-schedule-").parse().unwrap();
    assert_eq!(slot % 4000, 0);

    let bus = bus(&app).await;
    let alert = pb::PerformanceDegraded {
        pipeline: "churn".into(),
        version: 1,
        alert_id: "a-1".into(),
        metric: "roc_auc".into(),
        value: 0.61,
        floor: 0.7,
    };
    bus.publish("degraded-a-1", &mlops_shared::events::EventContext::new_run("deg"), &alert).await.unwrap();
    let store = runs(&app).await;
    let records = wait_until(T, || async {
        let records = store.list().await.unwrap();
        let scheduled = records.iter().any(|r| r.reason == "schedule" && r.state == RunState::Succeeded);
        let alerted = records.iter().any(|r| r.job_id == "churn-degradation-a-1" && r.state.is_final());
        (scheduled && alerted).then_some(records)
    })
    .await
    .expect("a scheduled run recorded as succeeded, and the alert's run recorded");
    // The alert's window holds what the scheduled run trained on: nothing new, so no training.
    let alerted = records.iter().find(|r| r.job_id == "churn-degradation-a-1").unwrap();
    assert_eq!((alerted.state, alerted.trigger_event_id.as_str()), (RunState::Skipped, "degraded-a-1"), "{alerted:?}");
    assert!(alerted.stage.starts_with("nothing new to train on"), "{alerted:?}");
    assert!(trained(&app, pb::TrainReason::Degradation).is_empty());
    // The scheduled run trained on the upload, so the policy had taken it in: it queued nothing.
    assert!(records.iter().all(|r| r.reason != "new_data"), "new data is not a trigger of this pipeline: {records:?}");
    assert!(trained(&app, pb::TrainReason::NewData).is_empty());
}

/// A run with a hyper-parameter search reports its progress as it goes, records every candidate
/// in the artifact, and `mlops runs list` and `mlops runs watch` show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_run_reports_progress_records_its_candidates_and_the_cli_shows_it() {
    let app = TestApp::start().await;
    let spec = with_training("  search: {params: {num_leaves: [4, 16]}, folds: 2}\n").replace(
        "  algorithm: logistic_regression\n  params: {l2: 1.0, max_iter: 50}",
        "  algorithm: gradient_boosting\n  params: {trees: 150, min_data_in_leaf: 10}",
    );
    app.apply(&spec).await;
    let mut progress = app.nats.subscribe("mlops.progress.train.churn").await.unwrap();
    app.nats.flush().await.unwrap();
    app.upload("churn", &sample::csv(3000, 17, Variant::Normal)).await;
    let mut seen: Vec<Run> = Vec::new();
    let done = tokio::time::timeout(T, async {
        while let Some(msg) = progress.next().await {
            let run: Run = serde_json::from_slice(&msg.payload).expect("progress is a run record");
            let over = run.state.is_final();
            seen.push(run);
            if over {
                break;
            }
        }
    })
    .await;
    assert!(done.is_ok(), "the run did not end: {seen:?}");
    let last = seen.last().unwrap().clone();
    assert_eq!((last.state, last.progress, last.trainer.as_str()), (RunState::Succeeded, 1.0, "trainer"), "{last:?}");
    assert!(
        seen.iter().any(|r| r.state == RunState::Running
            && r.progress > 0.0
            && r.progress < 1.0
            && r.stage.starts_with("searching")),
        "{seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0].progress <= w[1].progress), "progress only goes forward");

    // The artifact keeps every candidate with its fold scores, and the kept one.
    let bytes = bus(&app)
        .await
        .objects("models")
        .await
        .unwrap()
        .get_verified(&mlops_shared::ids::Sha256::parse(last.artifact_sha256.clone()).unwrap())
        .await
        .unwrap();
    let artifact: mlops_shared::model::Artifact = serde_json::from_slice(&bytes).unwrap();
    let search = artifact.manifest.search.expect("the search is recorded");
    assert_eq!((search.folds, search.candidates.len()), (2, 2));
    assert!(search.candidates.iter().all(|c| c.fold_scores.len() == 2 && c.score.is_some()));
    assert_eq!(artifact.manifest.params, search.candidates[search.best].params);

    let mlops = app.stack.opts.bin_dir.join("mlops");
    let cli = |args: &[&str]| {
        let out =
            std::process::Command::new(&mlops).args(["--nats-url", &app.stack.nats_url]).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, listed) = cli(&["runs", "list", "--pipeline", "churn"]);
    assert!(ok, "{listed}");
    let line = listed.lines().find(|l| l.starts_with(&last.job_id)).unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.contains("new_data") && line.contains("succeeded") && line.contains(&last.artifact_sha256[..12]),
        "{line}"
    );
    let (ok, watched) = cli(&["runs", "watch", "--job", &last.job_id]);
    assert!(ok && watched.contains("succeeded: trained by trainer"), "{watched}");
    let (ok, missing) = cli(&["runs", "list", "--pipeline", "nope", "--json"]);
    assert!(ok && missing.trim() == "[]", "{missing}");
}

/// The same job inputs give the same artifact bytes on another worker: a manual run trained by one
/// trainer process, then the same window trained again by a second process after the first is
/// gone, make the same sha256 (and so no second version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_worker_trains_the_same_artifact_bit_for_bit() {
    let mut app = TestApp::start().await;
    let spec = mlops_cli::EXAMPLE_SPEC.replace(
        "  algorithm: logistic_regression\n  params: {l2: 1.0, max_iter: 50}",
        "  algorithm: gradient_boosting\n  params: {trees: 40, min_data_in_leaf: 10}",
    );
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(2000, 23, Variant::Normal)).await;
    let first = app.wait_event("model.trained", T, |_| true).await;
    let Decoded::Trained(first) = first.payload else { unreachable!() };
    assert_eq!(first.trainer_id, "trainer");
    app.stack.kill("trainer").await.unwrap();
    app.stack.spawn("trainer", "trainer-2", &[]).await.unwrap();
    app.stack.wait_healthy(T).await.unwrap();
    let mlops = app.stack.opts.bin_dir.join("mlops");
    let out = std::process::Command::new(&mlops)
        .args(["--nats-url", &app.stack.nats_url, "train", "--pipeline", "churn", "--timeout", "60"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = app
        .wait_event("model.trained", T, |s| matches!(&s.payload, Decoded::Trained(t) if t.trainer_id == "trainer-2"))
        .await;
    let Decoded::Trained(again) = again.payload else { unreachable!() };
    assert_eq!(again.dataset_ids, first.dataset_ids);
    assert_eq!(again.artifact_sha256, first.artifact_sha256, "another worker, the same bytes");
    let versions = mlops_integration_tests::client::models(&app.stack.url("registry"), "churn").await.unwrap();
    assert_eq!(versions.len(), 1, "the same artifact is the same version");
}

/// A spec whose model-shaping parts changed retrains at once, with reason `spec_changed`, and the
/// new version's lineage names the revision and the git commit it came from. A change of
/// monitoring or deployment settings only is applied without training, and so is a model change
/// where `training.triggers.on` leaves `spec_changed` out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_spec_retrains_and_its_lineage_names_the_commit() {
    let app = TestApp::start().await;
    let registry = app.stack.remote("registry");
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let ds = app.upload("churn", &sample::csv(1000, 31, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    let stronger =
        mlops_cli::EXAMPLE_SPEC.replace("params: {l2: 1.0, max_iter: 50}", "params: {l2: 0.1, max_iter: 50}");
    let p = client::apply_pipeline_from(&registry, &stronger, None, "c0ffee1", None).await.unwrap();
    assert_eq!((p.revision, p.commit.as_str()), (2, "c0ffee1"));
    let t = app
        .wait_event(
            "model.trained",
            T,
            |s| matches!(&s.payload, Decoded::Trained(t) if t.reason == pb::TrainReason::SpecChanged as i32),
        )
        .await;
    let Decoded::Trained(t) = t.payload else { unreachable!() };
    assert_eq!(t.dataset_ids, [ds.dataset_id]);
    app.wait_event("model.registered", T, |s| s.summary.starts_with("v2 ")).await;
    let versions = client::models(&registry, "churn").await.unwrap();
    let lineage = versions.iter().find(|v| v.version == 2).and_then(|v| v.lineage.clone()).unwrap();
    assert_eq!((lineage.spec_hash.as_str(), lineage.spec_commit.as_str()), (p.spec_hash.as_str(), "c0ffee1"));
    assert_eq!(mlops_shared::runs::reason_name(lineage.reason), "spec_changed");
    let applied = app.wait_event("pipeline.applied", T, |s| s.summary.starts_with("revision 2")).await;
    assert!(applied.summary.contains("from commit c0ffee1: the model changes"), "{}", applied.summary);

    // Monitoring and deployment only: applied, nothing trains.
    let quieter =
        stronger.replace("cooldown_secs: 3600", "cooldown_secs: 600").replace("log_sample: 1.0", "log_sample: 0.5");
    client::apply_pipeline_from(&registry, &quieter, None, "c0ffee2", None).await.unwrap();
    app.wait_event("pipeline.applied", T, |s| s.summary.contains("the model does not change")).await;
    // A model change with `spec_changed` left out of `on`: applied, nothing trains.
    let held = quieter
        .replace("params: {l2: 0.1, max_iter: 50}", "params: {l2: 3.0, max_iter: 50}")
        .replace("  holdout: 0.2\n", "  holdout: 0.2\n  triggers: {on: [new_data, drift, degradation]}\n");
    client::apply_pipeline_from(&registry, &held, None, "c0ffee3", None).await.unwrap();
    app.wait_event("pipeline.applied", T, |s| s.summary.starts_with("revision 4")).await;
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(trained(&app, pb::TrainReason::SpecChanged).len(), 1);
    assert_eq!(app.stored_events("mlops.events.model.trained.churn").await.len(), 2);
}
