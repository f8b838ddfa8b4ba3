//! Bad input from outside systems: each gets a clear error or a dead-letter entry with the reason,
//! and nothing else in flight is disturbed.

use std::time::Duration;

use async_nats::HeaderMap;
use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, dlq_reason, sample, wait_until};
use sample::Variant;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_outside_are_checked_and_dead_lettered_with_reasons() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;

    // A well-formed data.arrived in proto3 JSON naming an object in the datasets bucket: ingested.
    let csv = sample::csv(1000, 11, Variant::Normal);
    let bucket = app.js.get_object_store("datasets").await.unwrap();
    bucket.put("drops/2026-11-27.csv", &mut csv.as_bytes()).await.unwrap();
    let mut json = HeaderMap::new();
    json.insert("content-type", "application/json");
    json.insert("Nats-Msg-Id", "arrival-1");
    let body = r#"{"pipeline": "churn", "object": "drops/2026-11-27.csv", "source": "s3-sync"}"#;
    app.js
        .publish_with_headers("mlops.events.data.arrived.churn", json.clone(), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let ingested = app.wait_event("data.ingested", T, |_| true).await;
    let Decoded::Ingested(i) = ingested.payload else { unreachable!() };
    assert_eq!(i.dataset_id, mlops_shared::sha256_hex(csv.as_bytes()));
    assert_eq!(i.source, "s3-sync");

    // JSON missing a field, JSON that does not parse, an object that does not exist, and a
    // protobuf payload that does not decode: each dead-lettered with its reason.
    let bad = [
        ("mlops.events.data.arrived.churn", Some(r#"{"pipeline": "churn"}"#.as_bytes()), "field `object` is missing"),
        ("mlops.events.data.arrived.churn", Some(b"{oops".as_slice()), "invalid data.arrived JSON"),
        (
            "mlops.events.data.arrived.churn",
            Some(br#"{"pipeline": "churn", "object": "nope.csv"}"#.as_slice()),
            "not found in bucket datasets",
        ),
        ("mlops.events.data.ingested.churn", None, "not a valid io.mlops.data.ingested.v1 protobuf"),
    ];
    for (i, (subject, payload, _)) in bad.iter().enumerate() {
        let mut h = if payload.is_some() { json.clone() } else { HeaderMap::new() };
        h.insert("Nats-Msg-Id", format!("bad-{i}").as_str());
        let bytes = payload.map_or_else(|| vec![0xff, 0xff, 0xff, 0x01], <[u8]>::to_vec);
        app.js.publish_with_headers(*subject, h, bytes.into()).await.unwrap().await.unwrap();
    }
    let dead = wait_until(T, || async {
        let d = app.stored("MLOPS_DLQ", "mlops.dlq.>").await;
        (d.len() >= bad.len()).then_some(d)
    })
    .await
    .expect("every bad event dead-lettered");
    let reasons: Vec<String> = dead.iter().map(dlq_reason).collect();
    for (_, _, needle) in bad {
        assert!(reasons.iter().any(|r| r.contains(needle)), "no DLQ reason mentions {needle:?}: {reasons:?}");
    }
    assert!(dead.iter().all(|m| m.subject.starts_with("mlops.dlq.mlops.events.")));

    // Meanwhile the good arrival went all the way.
    app.wait_event("model.promoted", T, |_| true).await;
}

/// Uploads and arrivals over the size limit are refused with the limit named, and nothing of them
/// is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_data_is_refused() {
    let app = TestApp::start_with(&[("MLOPS_MAX_UPLOAD_BYTES", "50000")]).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let big = sample::csv(2000, 41, Variant::Normal);
    assert!(big.len() > 50_000);
    let err =
        mlops_integration_tests::client::upload(&app.stack.url("ingest"), "churn", "big.csv", big.clone().into_bytes())
            .await
            .unwrap_err();
    assert!(format!("{err:#}").contains("exceeds the limit of 50000 bytes"), "{err:#}");
    let file = app.drop_dir().join("big.csv");
    std::fs::write(&file, &big).unwrap();
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json");
    let body = serde_json::json!({"pipeline": "churn", "path": file.display().to_string()}).to_string();
    app.js.publish_with_headers("mlops.events.data.arrived.churn", h, body.into()).await.unwrap().await.unwrap();
    let dead = wait_until(T, || async {
        let d = app.stored("MLOPS_DLQ", "mlops.dlq.>").await;
        (!d.is_empty()).then_some(d)
    })
    .await
    .expect("dead-lettered");
    assert!(dlq_reason(&dead[0]).contains("over the limit of 50000"), "{}", dlq_reason(&dead[0]));
    let listed = mlops_integration_tests::client::datasets(&app.stack.url("ingest"), "churn", "").await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    // An upload that ends short of the size its header announced is refused, not catalogued.
    let small = sample::csv(300, 42, Variant::Normal);
    let header = |size_bytes: u64| mlops_proto::UploadHeader {
        pipeline: "churn".into(),
        source: "cut.csv".into(),
        size_bytes,
        ..Default::default()
    };
    let cut = small.as_bytes()[..small.len() / 2].to_vec();
    let err = mlops_integration_tests::client::upload_with(&app.stack.url("ingest"), header(small.len() as u64), cut)
        .await
        .unwrap_err();
    let expected = format!("the upload carried {} bytes where its header announced {}", small.len() / 2, small.len());
    assert!(format!("{err:#}").contains(&expected), "{err:#}");
    let listed = mlops_integration_tests::client::datasets(&app.stack.url("ingest"), "churn", "").await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");

    // A small file goes through, streamed from disk by `mlops ingest`.
    let file = app.drop_dir().join("small.csv");
    std::fs::write(&file, &small).unwrap();
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--ingest-url", &app.stack.url("ingest"), "ingest", "--pipeline", "churn"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("accepted: 300 rows"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A training job that cannot run (no dataset named, a dataset that is not in the store, a
/// pipeline nobody applied) is dead-lettered with the reason; the trainer goes on with the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_training_jobs_are_dead_lettered_with_reasons() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let args = mlops_shared::config::NatsArgs::local(&app.stack.nats_url);
    let bus = mlops_shared::bus::Bus::connect(&args, "test", &shutdown).await.unwrap();
    let ctx = mlops_shared::events::EventContext::new_run("bad-jobs");
    let missing = "0".repeat(64);
    // Different pipelines, so the three are queued side by side rather than coalesced.
    let jobs = [
        ("churn", vec![], "names no dataset"),
        ("ghost", vec![missing.clone()], "pipeline `ghost` not found"),
        ("churn2", vec![missing.clone()], "not found in bucket datasets"),
    ];
    app.apply(&mlops_cli::EXAMPLE_SPEC.replace("name: churn\n", "name: churn2\n")).await;
    for (pipeline, dataset_ids, _) in &jobs {
        let job = mlops_proto::TrainJob {
            job_id: format!("bad-{pipeline}"),
            pipeline: (*pipeline).into(),
            dataset_ids: dataset_ids.clone(),
            reason: mlops_proto::TrainReason::Manual as i32,
            trigger_event_id: String::new(),
        };
        bus.publish(&job.job_id, &ctx, &job).await.unwrap();
    }
    let dead = wait_until(T, || async {
        let d = app.stored("MLOPS_DLQ", "mlops.dlq.mlops.jobs.>").await;
        (d.len() >= jobs.len()).then_some(d)
    })
    .await
    .expect("every bad job dead-lettered");
    for (pipeline, _, expected) in &jobs {
        let entry = dead
            .iter()
            .find(|m| m.subject.as_str() == format!("mlops.dlq.mlops.jobs.train.{pipeline}"))
            .unwrap_or_else(|| panic!("no dead letter for {pipeline}"));
        assert!(dlq_reason(entry).contains(expected), "{pipeline}: {}", dlq_reason(entry));
    }
    // The trainer is still there: good data still trains.
    app.upload("churn", &sample::csv(800, 5, Variant::Normal)).await;
    app.wait_event("model.trained", T, |_| true).await;
}
