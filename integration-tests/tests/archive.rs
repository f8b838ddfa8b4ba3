//! The prediction archive: served predictions compacted into Parquet, found by id with their
//! model's lineage, exported over a time range; compaction exactly once across kill -9 of the
//! monitor and a crash between writing files and committing them; partitions deleted at the end
//! of their retention with an audit record; a file that fails its checksum reported.

use std::collections::HashSet;
use std::time::Duration;

use arrow_array::Array as _;
use arrow_array::cast::AsArray as _;
use mlops_archive::{Archive, Partition};
use mlops_integration_tests::{TestApp, client, prediction_logs, rows_json, sample, wait_until};
use mlops_proto as pb;
use mlops_shared::bus::Bus;
use mlops_shared::events::EventContext;

const T: Duration = Duration::from_secs(90);

/// Flushes every 2 000 predictions or 0.3 s; retention checked twice a second.
const MONITOR_ENV: [(&str, &str); 3] = [
    ("MLOPS_ARCHIVE_FLUSH_SECS", "0.3"),
    ("MLOPS_ARCHIVE_MAX_ROWS", "2000"),
    ("MLOPS_ARCHIVE_RETENTION_CHECK_SECS", "0.5"),
];

/// Every prediction id in a Parquet file.
fn ids_in(path: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    let batches = mlops_data::open(mlops_data::Source::File(file), "out.parquet", &Default::default()).unwrap();
    let mut ids = Vec::new();
    for batch in batches {
        let batch = batch.unwrap();
        let column = batch.column_by_name("prediction_id").unwrap();
        ids.extend(column.as_string::<i32>().iter().map(|s| s.unwrap().to_owned()));
    }
    ids
}

/// `mlops predictions export` of churn's predictions from `from` to `to` into `out`, and more args.
fn export_churn(
    app: &TestApp,
    (from, to): (&str, &str),
    out: &std::path::Path,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec!["predictions", "export", "--pipeline", "churn", "--from", from, "--to", to];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    app.mlops(&args)
}

/// Unix seconds, as the command line takes them.
fn secs(ms: i64) -> String {
    (ms / 1000).to_string()
}

/// Publishes predictions `first..first + n` in messages of 500 at `time`.
async fn publish(bus: &Bus, first: usize, n: usize, time: i64) {
    for start in (first..first + n).step_by(500) {
        let batch = prediction_logs("churn", start, 500.min(first + n - start), time);
        bus.publish(&format!("log-{start}-{time}"), &EventContext::default(), &batch).await.unwrap();
    }
}

/// The last sequence of the prediction log.
async fn last_sequence(app: &TestApp) -> u64 {
    let mut stream = app.js.get_stream("MLOPS_PREDICTIONS").await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

/// Waits until everything in the prediction log is archived and listed in its partitions.
async fn wait_archived(app: &TestApp, archive: &Archive) {
    let last = last_sequence(app).await;
    wait_until(T, || async { archive.listed_through(last).await.ok()?.then_some(()) })
        .await
        .unwrap_or_else(|| panic!("the archive did not reach sequence {last}:\n{}", app.log("monitor")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_predictions_are_archived_shown_by_id_with_lineage_and_exported() {
    let app = TestApp::start_with(&[("MLOPS_ARCHIVE_FLUSH_SECS", "0.3")]).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 31, sample::Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn").await;
    let customers = sample::customers(50, 32, sample::Variant::Normal);
    app.wait_serving("churn", 1, &rows_json(&customers[..1]), T).await;
    let before = mlops_shared::now_unix_ms();
    let online = client::predict(&app.stack.remote("deployer"), "churn", &rows_json(&customers)).await.unwrap();
    let probabilities: Vec<f64> = serde_json::from_value(online["outputs"][0]["data"].clone()).unwrap();
    let ids: Vec<String> = serde_json::from_value(online["outputs"][2]["data"].clone()).unwrap();
    assert_eq!(online["outputs"][2]["name"], "prediction_id");

    // Shown from the archive once compacted: inputs as sent, the answer served, the model's lineage.
    let show = |id: &str| app.mlops(&["predictions", "show", id]);
    let said = wait_until(T, || async {
        let (ok, said, _) = show(&ids[7]);
        (ok && said.contains("archive file")).then_some(said)
    })
    .await
    .unwrap_or_else(|| panic!("prediction {} never archived:\n{}", ids[7], app.log("monitor")));
    let shown: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(shown["pipeline"], "churn");
    assert_eq!(shown["prediction"]["prediction_id"], ids[7].as_str());
    assert_eq!(shown["prediction"]["probability"].as_f64(), Some(probabilities[7]), "the answer served, exactly");
    assert_eq!(shown["prediction"]["model_version"], 1);
    assert_eq!(shown["inputs"]["tenure_months"].as_f64(), Some(customers[7].tenure_months));
    assert_eq!(shown["inputs"]["contract"], customers[7].contract);
    assert_eq!(shown["model"]["version"], 1);
    assert_eq!(shown["model"]["lineage"]["dataset_ids"].as_array().map(Vec::len), Some(1), "{shown}");

    // Bad ids are refused, an unknown one is said to be unknown.
    let (ok, _, err) = show("not an id");
    assert!(!ok && err.contains("is not a prediction id"), "{err}");
    let unknown = uuid::Uuid::now_v7().to_string();
    let (ok, _, err) = show(&unknown);
    assert!(!ok && err.contains("neither in the archive nor in the prediction log"), "{err}");

    // The range exported holds each served prediction once.
    wait_archived(&app, &Archive::open(&app.bus().await).await.unwrap()).await;
    let out = app.drop_dir().join("export.parquet");
    let (from, to) = (secs(before - 60_000), secs(mlops_shared::now_unix_ms() + 60_000));
    let export = |extra: &[&str]| export_churn(&app, (&from, &to), &out, extra);
    let (ok, said, err) = export(&[]);
    assert!(ok, "{said}{err}");
    let mut exported = ids_in(&out);
    exported.sort();
    let mut served = ids.clone();
    served.extend(app.logged_predictions("churn").await.into_iter().map(|p| p.prediction_id));
    served.sort();
    served.dedup();
    assert_eq!(exported, served, "every logged prediction once");
    let (ok, _, err) = export(&["--version", "2"]);
    assert!(!ok && err.contains("no predictions of version 2 of churn"), "{err}");
    let (ok, _, err) = export_churn(&app, ("2020-01-01", "2020-01-02"), std::path::Path::new("x.parquet"), &[]);
    assert!(!ok && err.contains("no predictions of churn were archived"), "{err}");

    // Labels that come later are archived with their prediction's hour: shown, and exported. One
    // from an outside system as JSON, one as protobuf sent twice; the newest counts.
    let label = serde_json::json!({"pipeline": "churn", "labels": [{"predictionId": ids[7], "label": "no"}]});
    app.publish_json("mlops.events.labels.arrived.churn", Some("labels-1"), &label).await;
    let event = mlops_integration_tests::labels_event("churn", &[(&ids[7], "yes"), (&ids[9], "no")]);
    let bus = app.bus().await;
    for _ in 0..2 {
        bus.publish("labels-2", &EventContext::default(), &event).await.unwrap();
    }
    let shown = wait_until(T, || async {
        let (ok, said, _) = show(&ids[7]);
        let shown: serde_json::Value = serde_json::from_str(&said).ok()?;
        (ok && shown["label"]["true_label"] == "yes").then_some(shown)
    })
    .await
    .unwrap_or_else(|| panic!("the label of {} never shown:\n{}", ids[7], app.log("monitor")));
    assert!(shown["label"]["labelled_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{shown}");
    let (ok, said, err) = export(&[]);
    assert!(ok, "{said}{err}");
    let file = std::fs::File::open(&out).unwrap();
    let batches = mlops_data::open(mlops_data::Source::File(file), "out.parquet", &Default::default()).unwrap();
    let mut labelled = Vec::new();
    for batch in batches {
        let batch = batch.unwrap();
        let ids = batch.column_by_name("prediction_id").unwrap().as_string::<i32>().clone();
        let labels = batch.column_by_name("true_label").unwrap().as_string::<i32>().clone();
        labelled.extend(
            (0..batch.num_rows())
                .filter(|&i| labels.is_valid(i))
                .map(|i| (ids.value(i).to_owned(), labels.value(i).to_owned())),
        );
    }
    labelled.sort();
    let mut expected = vec![(ids[7].clone(), "yes".to_owned()), (ids[9].clone(), "no".to_owned())];
    expected.sort();
    assert_eq!(labelled, expected, "each label once, the newest");

    // A file altered in the store is reported by name, never skipped.
    let archive = Archive::open(&app.bus().await).await.unwrap();
    let hour = archive.hours("churn").await.unwrap().pop().unwrap();
    let file = archive.partition("churn", &hour).await.unwrap().remove(0);
    let store = app.js.get_object_store("archive").await.unwrap();
    store.put(file.name.as_str(), &mut &b"not the archived bytes"[..]).await.unwrap();
    let (ok, _, err) = export(&[]);
    assert!(!ok && err.contains(&format!("archive file {} fails its checksum", file.name)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_is_exactly_once_across_crashes_and_old_partitions_expire_with_an_audit_record() {
    let mut app = TestApp::start_with(&MONITOR_ENV).await;
    app.apply(&format!("{}\naudit:\n  retention_days: 30\n", mlops_cli::EXAMPLE_SPEC)).await;
    let bus = app.bus().await;
    let archive = Archive::open(&bus).await.unwrap();
    let now = mlops_shared::now_unix_ms();

    // A compactor that died after writing its files and before committing them: the files are
    // deleted and the predictions archived once.
    app.stack.kill("monitor").await.unwrap();
    publish(&bus, 0, 3000, now).await;
    let watermark = archive.watermark().await.unwrap();
    let mut part = Partition::new("churn", &mlops_archive::hour_of(now));
    let crashed = prediction_logs("churn", 0, 500, now);
    for p in &crashed.predictions {
        part.push(watermark + 1, &p.into());
    }
    let orphan = part.encode(watermark + 1, watermark + 1).unwrap();
    let orphan_name = orphan.entry.name.clone();
    archive.write_files(watermark + 1, &[orphan]).await.unwrap();
    app.stack.spawn("monitor", "monitor-2", &MONITOR_ENV).await.unwrap();
    wait_archived(&app, &archive).await;
    let store = app.js.get_object_store("archive").await.unwrap();
    let gone = |info: Result<async_nats::jetstream::object_store::ObjectInfo, _>| info.map_or(true, |i| i.deleted);
    assert!(gone(store.info(&orphan_name).await), "the uncommitted file {orphan_name} was deleted");

    // A message that is no prediction log is counted in its flush and the next ones are archived.
    let garbage: &'static [u8] = b"\xff\xfe not protobuf";
    app.js.publish("mlops.predictions.churn", garbage.into()).await.unwrap().await.unwrap();
    publish(&bus, 200_000, 500, now).await;
    wait_archived(&app, &archive).await;
    let (mut next, mut unreadable) = (1, 0);
    while let Some(flush) = archive.flush(next).await.unwrap() {
        unreadable += flush.unreadable;
        next = flush.last + 1;
    }
    assert_eq!(unreadable, 1, "the chain of flushes counts the message it could not read");

    // kill -9 while a backlog of 100 000 is compacted 2 000 at a time, then another monitor.
    app.stack.kill("monitor-2").await.unwrap();
    let before = archive.watermark().await.unwrap();
    publish(&bus, 3000, 100_000, now).await;
    let last = last_sequence(&app).await;
    app.stack.spawn("monitor", "monitor-3", &MONITOR_ENV).await.unwrap();
    wait_until(T, || async { (archive.watermark().await.ok()? > before).then_some(()) }).await.unwrap();
    app.stack.kill("monitor-3").await.unwrap();
    let at_kill = archive.watermark().await.unwrap();
    assert!(at_kill < last, "the kill came mid-backlog: archived to {at_kill} of {last}");
    app.stack.spawn("monitor", "monitor-4", &MONITOR_ENV).await.unwrap();
    wait_archived(&app, &archive).await;
    let out = app.drop_dir().join("all.parquet");
    let (from, to) = (secs(now - 60_000), secs(now + 60_000));
    let (ok, said, err) = export_churn(&app, (&from, &to), &out, &[]);
    assert!(ok, "{said}{err}");
    let ids = ids_in(&out);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (103_500, 103_500), "each prediction exactly once");

    // Predictions 40 days old are deleted under a 30-day retention, and the deletion recorded.
    let old = now - 40 * 24 * 3_600_000;
    publish(&bus, 100_000, 700, old).await;
    // The audit record is written first, then the files deleted and the partition dropped.
    let expired = wait_until(T, || async {
        let (ok, said, _) = app.mlops(&["predictions", "expired", "--pipeline", "churn"]);
        let list: Vec<serde_json::Value> = serde_json::from_str(&said).ok()?;
        let file = list.first()?["files"][0]["name"].as_str()?.to_owned();
        let recent = archive.hours("churn").await.ok()? == [mlops_archive::hour_of(now)];
        (ok && recent && gone(store.info(&file).await)).then_some(list)
    })
    .await
    .unwrap_or_else(|| panic!("nothing expired:\n{}", app.log("monitor-4")));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["hour"], mlops_archive::hour_of(old));
    assert_eq!(expired[0]["rows"], 700);
    assert_eq!(expired[0]["retention_days"], 30);
    let old_file = expired[0]["files"][0]["name"].as_str().unwrap().to_owned();
    assert!(gone(store.info(&old_file).await), "{old_file} deleted");
    let (ok, _, err) = export_churn(&app, (&secs(old - 60_000), &secs(old + 60_000)), &out, &[]);
    assert!(!ok && err.contains("no predictions of churn were archived"), "{err}");
    assert_eq!(archive.hours("churn").await.unwrap(), [mlops_archive::hour_of(now)], "the recent hour is kept");
}

/// Waits until every `batch.completed` stored so far has been through the archive's batch log,
/// its files listed.
async fn wait_batches_archived(app: &TestApp, archive: &Archive) {
    let stored = app.stored("MLOPS_EVENTS", "mlops.events.batch.completed.>").await;
    let last = stored.last().map_or(0, |m| m.info().unwrap().stream_sequence);
    let batches = archive.batches();
    wait_until(T, || async { batches.listed_through(last).await.ok()?.then_some(()) })
        .await
        .unwrap_or_else(|| panic!("the archive did not read batch.completed {last}:\n{}", app.log("monitor")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_jobs_rows_are_archived_once_found_by_id_and_exported_unless_the_spec_keeps_them_out() {
    let app = TestApp::start_with(&MONITOR_ENV).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 51, sample::Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn").await;
    let bus = app.bus().await;
    let archive = Archive::open(&bus).await.unwrap();
    let datasets = bus.objects(mlops_shared::bus::DATASETS_BUCKET).await.unwrap();
    let rows = sample::csv(4500, 52, sample::Variant::Normal);
    let dataset = datasets.put(rows.as_bytes()).await.unwrap().to_string();
    let before = mlops_shared::now_unix_ms();
    let request = |batch: &'static str| {
        let body = serde_json::json!({"pipeline": "churn", "datasetId": dataset, "batchId": batch});
        let app = &app;
        async move { app.publish_json("mlops.events.batch.requested.churn", Some(batch), &body).await }
    };
    let completed = |batch: &'static str| {
        let app = &app;
        async move {
            let seen = app.wait_event("batch.completed", T, |s| s.summary.contains(batch)).await;
            let mlops_shared::describe::Decoded::BatchCompleted(done) = seen.payload else { unreachable!() };
            done
        }
    };

    // 4 500 rows archived as three files of at most 2 000, found by id straight from the batch.
    request("nightly-1").await;
    let done = completed("nightly-1").await;
    let files = wait_until(T, || async { archive.batch_files("nightly-1").await.unwrap() })
        .await
        .unwrap_or_else(|| panic!("batch nightly-1 never archived:\n{}", app.log("monitor")));
    let spans: Vec<(u64, u64)> =
        files.iter().filter_map(|f| f.batch.as_ref()).map(|b| (b.first_row, b.last_row)).collect();
    assert_eq!(spans, [(0, 1999), (2000, 3999), (4000, 4499)]);
    // Listed in one write, so no reader ever saw the job with a file missing.
    let kv = bus.js.get_key_value(mlops_shared::bus::ARCHIVE_KV).await.unwrap();
    let writes = futures::StreamExt::count(kv.history("bjob.nightly-1").await.unwrap()).await;
    assert_eq!(writes, 1, "the job's list was written {writes} times");
    let sha = mlops_shared::ids::Sha256::parse(done.output_sha256.clone()).unwrap();
    let output = bus.objects(mlops_shared::bus::BATCHES_BUCKET).await.unwrap().get_verified(&sha).await.unwrap();
    let output = mlops_data::open(mlops_data::Source::Bytes(output.into()), "out.parquet", &Default::default())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let row = |name: &str, i: usize| {
        let (mut i, mut at) = (i, 0);
        while i >= output[at].num_rows() {
            i -= output[at].num_rows();
            at += 1;
        }
        output[at].column_by_name(name).unwrap().slice(i, 1)
    };
    let (ok, said, err) = app.mlops(&["predictions", "show", "nightly-1-4321"]);
    assert!(ok, "{said}{err}");
    let shown: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(shown["source"], format!("archive file {}", files[2].name));
    assert!(files[2].name.ends_with("/batch-nightly-1.4000-4499.parquet"), "{}", files[2].name);
    assert_eq!(shown["prediction"]["prediction_id"], "nightly-1-4321");
    let probability = row("probability", 4321).as_primitive::<arrow_array::types::Float64Type>().value(0);
    assert_eq!(shown["prediction"]["probability"].as_f64(), Some(probability), "the answer the job wrote, exactly");
    assert_eq!(shown["prediction"]["label"], row("label", 4321).as_string::<i32>().value(0));
    assert_eq!(shown["prediction"]["artifact_sha256"], done.artifact_sha256);
    assert!(shown["prediction"].get("stream_sequence").is_none(), "a batch row never went through the log");
    let tenure = row("tenure_months", 4321);
    let tenure = arrow_cast::cast(&tenure, &arrow_schema::DataType::Float64).unwrap();
    assert_eq!(
        shown["inputs"]["tenure_months"].as_f64(),
        Some(tenure.as_primitive::<arrow_array::types::Float64Type>().value(0))
    );
    assert_eq!(shown["inputs"]["customer_id"], row("customer_id", 4321).as_string::<i32>().value(0));
    assert_eq!(shown["model"]["version"], 1);
    let (ok, _, err) = app.mlops(&["predictions", "show", "nightly-1-4500"]);
    assert!(!ok && err.contains("neither in the archive nor in the prediction log"), "{err}");

    // Announced again past the stream's duplicate window (another message id): archived once.
    bus.publish("announced-again", &EventContext::default(), &done).await.unwrap();
    // A pipeline whose spec keeps batches out: its job is not archived.
    app.apply(&format!("{}\naudit:\n  archive_batches: false\n", mlops_cli::EXAMPLE_SPEC)).await;
    request("nightly-2").await;
    completed("nightly-2").await;
    wait_batches_archived(&app, &archive).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    // An announcement naming an output that is not there is reported, and the rest goes on.
    let ghost = pb::BatchCompleted {
        pipeline: "churn".into(),
        batch_id: "ghost".into(),
        output_sha256: "0".repeat(64),
        rows: 3,
        ..Default::default()
    };
    bus.publish("ghost", &EventContext::default(), &ghost).await.unwrap();
    request("nightly-3").await;
    completed("nightly-3").await;
    wait_batches_archived(&app, &archive).await;
    assert!(archive.batch_files("nightly-2").await.unwrap().is_none(), "kept out by the spec");
    // Its rows are still shown, read from the job's output itself.
    let (ok, said, err) = app.mlops(&["predictions", "show", "nightly-2-7"]);
    assert!(ok, "{said}{err}");
    let shown: serde_json::Value = serde_json::from_str(&said).unwrap();
    let (source, at) = (shown["source"].as_str().unwrap_or_default(), &shown["prediction"]["predicted_at"]);
    assert!(source.starts_with("batch output ") && source.ends_with("(not archived)"), "{source}");
    assert_eq!(shown["prediction"]["prediction_id"], "nightly-2-7");
    assert_eq!(
        shown["prediction"]["probability"].as_f64(),
        Some(row("probability", 7).as_primitive::<arrow_array::types::Float64Type>().value(0)),
        "the same rows, the same model"
    );
    assert!(at.as_str().is_some_and(|t| t.ends_with('Z')), "{at}");
    assert_eq!(shown["inputs"]["customer_id"], row("customer_id", 7).as_string::<i32>().value(0));
    assert!(archive.batch_files("ghost").await.unwrap().is_none());
    let batches = archive.batches();
    let (mut next, mut unreadable) = (1, 0);
    while let Some(flush) = batches.flush(next).await.unwrap() {
        (next, unreadable) = (flush.last + 1, unreadable + flush.unreadable);
    }
    assert_eq!(unreadable, 1, "the missing output is counted:\n{}", app.log("monitor"));

    // Exported with the served predictions' columns: each archived batch row once.
    let out = app.drop_dir().join("batches.parquet");
    let (from, to) = (secs(before - 60_000), secs(mlops_shared::now_unix_ms() + 60_000));
    let (ok, said, err) = export_churn(&app, (&from, &to), &out, &[]);
    assert!(ok, "{said}{err}");
    let ids = ids_in(&out);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "no row twice");
    let count = |prefix: &str| ids.iter().filter(|id| id.starts_with(prefix)).count();
    assert_eq!((count("nightly-1-"), count("nightly-2-"), count("nightly-3-")), (4500, 0, 4500));
}
