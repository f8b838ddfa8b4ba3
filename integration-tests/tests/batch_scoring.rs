//! `mlops score`: a whole file scored by the model in production, written as Parquet, with the
//! same answers the deployer gives online for the same rows; inputs that do not fit the model are
//! refused before anything is scored, naming what is wrong.

use std::time::Duration;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, UInt64Type};
use mlops_integration_tests::{TestApp, client, dlq_reason, rows_json, sample, wait_until};
use sample::Variant;

const T: Duration = Duration::from_secs(90);

fn read_parquet(path: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    mlops_data::open(mlops_data::Source::File(file), "out.parquet", &Default::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_scored_in_bulk_gets_the_answers_served_online_and_bad_input_is_refused() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 21, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn").await;
    let customers = sample::customers(300, 22, Variant::Normal);
    app.wait_serving("churn", 1, &rows_json(&customers[..1]), T).await;

    // The same 300 customers as a file (with their ids and labels) and online.
    let dir = app.drop_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("customers.csv");
    std::fs::write(&input, sample::csv(300, 22, Variant::Normal)).unwrap();
    let out = dir.join("scored.parquet");
    let score = |input: &std::path::Path, out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["score", "--pipeline", "churn", "--input", input.to_str().unwrap()];
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        app.mlops(&args)
    };
    let (ok, said, err) = score(&input, &out, &[]);
    assert!(ok, "{said}{err}");
    assert!(said.contains("300 rows scored by churn@1"), "{said}");
    let batches = read_parquet(&out);
    let column = |name: &str| -> Vec<arrow_array::ArrayRef> {
        batches.iter().map(|b| b.column_by_name(name).unwrap_or_else(|| panic!("no `{name}`")).clone()).collect()
    };
    let probability: Vec<f64> =
        column("probability").iter().flat_map(|a| a.as_primitive::<Float64Type>().values().to_vec()).collect();
    let label: Vec<String> = column("label")
        .iter()
        .flat_map(|a| a.as_string::<i32>().iter().map(|s| s.unwrap().to_owned()).collect::<Vec<_>>())
        .collect();
    let mut ids: Vec<String> = column("prediction_id")
        .iter()
        .flat_map(|a| a.as_string::<i32>().iter().map(|s| s.unwrap().to_owned()).collect::<Vec<_>>())
        .collect();
    let versions: Vec<u64> =
        column("model_version").iter().flat_map(|a| a.as_primitive::<UInt64Type>().values().to_vec()).collect();
    assert!(batches[0].column_by_name("customer_id").is_some(), "the input's own columns are kept");

    let online = client::predict(&app.stack.remote("deployer"), "churn", &rows_json(&customers)).await.unwrap();
    let served: Vec<f64> = serde_json::from_value(online["outputs"][0]["data"].clone()).unwrap();
    let served_labels: Vec<String> = serde_json::from_value(online["outputs"][1]["data"].clone()).unwrap();
    assert_eq!(online["outputs"][0]["name"], "probability");
    assert_eq!(probability, served, "the same probabilities, bit for bit");
    assert_eq!(label, served_labels);
    assert!(versions.iter().all(|&v| v == 1) && versions.len() == 300);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "one prediction id per row");

    // A version by number gives the same answers; --keep keeps only the columns named.
    let again = dir.join("again.parquet");
    let (ok, said, err) = score(&input, &again, &["--version", "1", "--keep", "customer_id"]);
    assert!(ok && said.contains("churn@1"), "{said}{err}");
    let kept = read_parquet(&again);
    let names: Vec<String> = kept[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["customer_id", "prediction_id", "probability", "label", "model_version"]);
    let again: Vec<f64> = kept
        .iter()
        .flat_map(|b| b.column_by_name("probability").unwrap().as_primitive::<Float64Type>().values().to_vec())
        .collect();
    assert_eq!(again, probability);

    // Refused, naming the problem, with no output written.
    let partial = dir.join("partial.csv");
    std::fs::write(&partial, "tenure_months,contract\n3,one-year\n").unwrap();
    let nothing = dir.join("nothing.parquet");
    let (ok, _, err) = score(&partial, &nothing, &[]);
    assert!(
        !ok && err.contains("lacks the model's feature(s) `monthly_charges`, `support_calls`, `age`, `payment_method`"),
        "{err}"
    );
    let (ok, _, err) = score(&out, &nothing, &[]);
    assert!(
        !ok && err
            .contains("already has the output column(s) `prediction_id`, `probability`, `label`, `model_version`"),
        "{err}"
    );
    let bad = dir.join("bad.csv");
    let mut lines: Vec<String> = sample::csv(3, 23, Variant::Normal).lines().map(str::to_owned).collect();
    let mut second: Vec<&str> = lines[2].split(',').collect();
    second[1] = "forever";
    lines[2] = second.join(",");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let (ok, _, err) = score(&bad, &nothing, &[]);
    assert!(!ok && err.contains("row 2, column `tenure_months`"), "{err}");
    let (ok, _, err) = score(&input, &nothing, &["--version", "99"]);
    assert!(!ok && err.contains("99"), "{err}");
    let (ok, _, err) = app.mlops(&[
        "score",
        "--pipeline",
        "nope",
        "--input",
        input.to_str().unwrap(),
        "--out",
        nothing.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("nope"), "{err}");
    assert!(!nothing.exists(), "a refused input writes nothing");
}

/// Publishes a `batch.requested` as an outside system would: proto3 JSON.
async fn request_batch(app: &TestApp, msg_id: &str, body: serde_json::Value) {
    app.publish_json("mlops.events.batch.requested.churn", Some(msg_id), &body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_on_the_queue_scores_a_stored_dataset_once_and_bad_requests_are_dead_lettered() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let csv = sample::csv(1500, 41, Variant::Normal);
    let dataset = app.upload("churn", &csv).await.dataset_id;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn").await;

    let job = serde_json::json!({"pipeline": "churn", "datasetId": dataset, "batchId": "nightly-1"});
    request_batch(&app, "b-1", job.clone()).await;
    let seen = app.wait_event("batch.completed", T, |s| s.summary.contains("nightly-1")).await;
    let mlops_shared::describe::Decoded::BatchCompleted(done) = seen.payload else { unreachable!() };
    assert_eq!((done.rows, done.version, done.dataset_id.as_str()), (1500, 1, dataset.as_str()));
    let bucket = app.bus().await.objects(mlops_shared::bus::BATCHES_BUCKET).await.unwrap();
    let sha = mlops_shared::ids::Sha256::parse(done.output_sha256.clone()).unwrap();
    let output = bucket.get_verified(&sha).await.unwrap();
    assert_eq!(output.len() as u64, done.output_bytes);

    // The same answers as `mlops score` on the same rows; ids from the batch's name.
    let dir = app.drop_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let (input, scored) = (dir.join("rows.csv"), dir.join("scored.parquet"));
    std::fs::write(&input, &csv).unwrap();
    let score = |input: &str, out: &std::path::Path| {
        app.mlops(&["score", "--pipeline", "churn", "--input", input, "--out", out.to_str().unwrap()])
    };
    let (ok, said, err) = score(input.to_str().unwrap(), &scored);
    assert!(ok, "{said}{err}");
    // The stored dataset by its id gives the same answers too.
    let by_id = dir.join("by-id.parquet");
    let (ok, said, err) = score(&dataset, &by_id);
    assert!(ok && said.contains("1500 rows scored"), "{said}{err}");
    let (ok, _, err) = score("nope.csv", &by_id);
    assert!(!ok && err.contains("nope.csv is neither a file nor a dataset id"), "{err}");
    let probabilities = |batches: &[arrow_array::RecordBatch]| -> Vec<f64> {
        batches
            .iter()
            .flat_map(|b| b.column_by_name("probability").unwrap().as_primitive::<Float64Type>().values().to_vec())
            .collect()
    };
    let queued: Vec<arrow_array::RecordBatch> =
        mlops_data::open(mlops_data::Source::Bytes(output.into()), "out.parquet", &Default::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(probabilities(&queued), probabilities(&read_parquet(&scored)));
    assert_eq!(probabilities(&queued), probabilities(&read_parquet(&by_id)));
    let first_id = queued[0].column_by_name("prediction_id").unwrap().as_string::<i32>().value(0).to_owned();
    assert_eq!(first_id, "nightly-1-0");

    // Asked again (another message, the same batch id): not scored again; announced again with
    // the same message id, so the stream keeps one. The batch id for another dataset is refused.
    request_batch(&app, "b-2", job).await;
    let other = sample::csv(10, 42, Variant::Normal);
    let other = app.bus().await.objects(mlops_shared::bus::DATASETS_BUCKET).await.unwrap().put(other.as_bytes()).await;
    let reused =
        serde_json::json!({"pipeline": "churn", "datasetId": other.unwrap().to_string(), "batchId": "nightly-1"});
    request_batch(&app, "b-6", reused).await;
    // Bad requests, each dead-lettered with its reason.
    let missing = "0".repeat(64);
    request_batch(&app, "b-3", serde_json::json!({"pipeline": "churn", "datasetId": missing, "batchId": "x"})).await;
    request_batch(
        &app,
        "b-4",
        serde_json::json!({"pipeline": "churn", "datasetId": dataset, "batchId": "y", "version": 99}),
    )
    .await;
    request_batch(&app, "b-5", serde_json::json!({"pipeline": "churn", "datasetId": dataset, "batchId": "no/slash"}))
        .await;
    let dead = wait_until(T, || async {
        let d = app.stored("MLOPS_DLQ", "mlops.dlq.>").await;
        (d.len() >= 4).then_some(d)
    })
    .await
    .expect("the bad requests dead-lettered");
    let reasons: Vec<String> = dead.iter().map(dlq_reason).collect();
    let needles =
        ["not found in bucket datasets", "has no version 99", "`batchId` \"no/slash\"", "already names another job"];
    for needle in needles {
        assert!(reasons.iter().any(|r| r.contains(needle)), "no DLQ reason mentions {needle:?}: {reasons:?}");
    }
    app.wait_settled("MLOPS_EVENTS", T).await;
    let completed = app.stored_events("mlops.events.batch.completed.>").await;
    assert_eq!(completed.len(), 1, "one announcement for one batch id");
    // Scored once: the evaluator counted the rows of one job.
    let metrics = reqwest::get(format!("{}/metrics", app.stack.url("evaluator"))).await.unwrap().text().await.unwrap();
    let rows = metrics.lines().find(|l| l.starts_with("mlops_batch_rows_total")).unwrap_or_default().to_owned();
    assert!(rows.ends_with(" 1500"), "{rows}");
}

/// An evaluator killed with SIGKILL in the middle of a batch job: the job goes to another replica
/// once its ack wait passes, and one output results, announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluator_killed_mid_batch_hands_the_job_over_and_one_output_results() {
    let mut app = TestApp::start_with(&[("MLOPS_JOB_ACK_WAIT_SECS", "3")]).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 51, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn").await;
    // Rows enough that scoring takes seconds, stored as an upload stores them (only scored here).
    let rows = 400_000;
    let big = sample::csv(rows, 52, Variant::Normal);
    let datasets = app.bus().await.objects(mlops_shared::bus::DATASETS_BUCKET).await.unwrap();
    let dataset = datasets.put(big.as_bytes()).await.unwrap().to_string();
    let job = serde_json::json!({"pipeline": "churn", "datasetId": dataset, "batchId": "big-1"});
    request_batch(&app, "big-1", job).await;
    let taken = wait_until(T, || async {
        let consumers = app.consumers("MLOPS_EVENTS").await;
        consumers.into_iter().find(|c| c.name == "evaluator-batch" && c.ack_pending == 1)
    })
    .await;
    assert!(taken.is_some(), "no evaluator took the job");
    app.stack.kill("evaluator").await.unwrap();
    assert!(app.seen().iter().all(|s| s.kind != "batch.completed"), "the job finished before the kill");
    app.stack.spawn("evaluator", "evaluator-2", &[("MLOPS_JOB_ACK_WAIT_SECS", "3")]).await.unwrap();

    let seen = app.wait_event("batch.completed", 3 * T, |s| s.summary.contains("big-1")).await;
    let mlops_shared::describe::Decoded::BatchCompleted(done) = seen.payload else { unreachable!() };
    assert_eq!(done.rows, rows as u64);
    let bucket = app.bus().await.objects(mlops_shared::bus::BATCHES_BUCKET).await.unwrap();
    let output = bucket.get_verified(&mlops_shared::ids::Sha256::parse(done.output_sha256).unwrap()).await.unwrap();
    let scored: usize = mlops_data::open(mlops_data::Source::Bytes(output.into()), "out.parquet", &Default::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(scored, rows);
    app.wait_settled("MLOPS_EVENTS", T).await;
    assert_eq!(app.stored_events("mlops.events.batch.completed.>").await.len(), 1);
    // The second evaluator scored it: the job was handed over.
    let second = app.stack.url_of("evaluator-2").unwrap();
    let metrics = reqwest::get(format!("{second}/metrics")).await.unwrap().text().await.unwrap();
    let scored_rows = metrics.lines().find(|l| l.starts_with("mlops_batch_rows_total")).unwrap_or_default().to_owned();
    assert!(scored_rows.ends_with(&format!(" {rows}")), "{scored_rows}");
    assert!(app.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty(), "nothing dead-lettered");
}
