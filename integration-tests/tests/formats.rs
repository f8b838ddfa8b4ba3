//! Datasets in every supported format and way of arrival reach a trained model: CSV compressed
//! with gzip and zstd over the gRPC upload, Parquet, and JSON Lines named by path in an allowed
//! directory. A path outside the allowed directories is refused.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use async_nats::HeaderMap;
use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, sample, wait_until};
use sample::{Customer, Variant};

const T: Duration = Duration::from_secs(60);

fn parquet(customers: &[Customer]) -> Vec<u8> {
    let f =
        |g: fn(&Customer) -> f64| Arc::new(Float64Array::from(customers.iter().map(g).collect::<Vec<_>>())) as ArrayRef;
    let batch = RecordBatch::try_from_iter([
        ("tenure_months", f(|c| c.tenure_months)),
        ("monthly_charges", f(|c| c.monthly_charges)),
        (
            "support_calls",
            Arc::new(Int64Array::from(customers.iter().map(|c| c.support_calls as i64).collect::<Vec<_>>()))
                as ArrayRef,
        ),
        ("age", Arc::new(Float64Array::from(customers.iter().map(|c| c.age).collect::<Vec<_>>())) as ArrayRef),
        ("contract", Arc::new(StringArray::from(customers.iter().map(|c| c.contract).collect::<Vec<_>>())) as ArrayRef),
        (
            "payment_method",
            Arc::new(StringArray::from(customers.iter().map(|c| c.payment_method).collect::<Vec<_>>())) as ArrayRef,
        ),
        (
            "churned",
            Arc::new(Int64Array::from(customers.iter().map(|c| i64::from(c.churned)).collect::<Vec<_>>())) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf
}

fn jsonl(customers: &[Customer]) -> String {
    customers
        .iter()
        .map(|c| {
            serde_json::json!({
                "tenure_months": c.tenure_months, "monthly_charges": c.monthly_charges, "support_calls": c.support_calls,
                "age": c.age, "contract": c.contract, "payment_method": c.payment_method, "churned": u8::from(c.churned),
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_and_arrival_reaches_a_model() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(sample::csv(800, 21, Variant::Normal).as_bytes()).unwrap();
    let uploads = [
        ("batch.csv.gz", gz.finish().unwrap(), "csv"),
        ("batch.csv.zst", zstd::encode_all(sample::csv(800, 22, Variant::Normal).as_bytes(), 3).unwrap(), "csv"),
        ("batch.parquet", parquet(&sample::customers(800, 23, Variant::Normal)), "parquet"),
    ];
    // One at a time, each trained before the next arrives: jobs of one pipeline queued together
    // would coalesce into one.
    let app = &app;
    let trained = |n: usize| {
        wait_until(T, move || async move {
            (app.seen().iter().filter(|s| s.kind == "model.trained").count() >= n).then_some(())
        })
    };
    let mut ids = Vec::new();
    for (i, (name, bytes, format)) in uploads.into_iter().enumerate() {
        let ds = app.upload_bytes("churn", name, bytes).await;
        assert_eq!(ds.format, format, "{name}");
        ids.push(ds.dataset_id);
        trained(i + 1).await.unwrap_or_else(|| panic!("{name} was not trained on"));
    }

    // JSON Lines dropped in the allowed directory and announced by path, in proto3 JSON.
    let file = app.drop_dir().join("batch.jsonl");
    std::fs::write(&file, jsonl(&sample::customers(800, 24, Variant::Normal))).unwrap();
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json");
    let body = serde_json::json!({"pipeline": "churn", "path": file.display().to_string()}).to_string();
    app.js
        .publish_with_headers("mlops.events.data.arrived.churn", h.clone(), body.into())
        .await
        .unwrap()
        .await
        .unwrap();

    // A path outside the allowed directories, `..` included, is refused with the reason.
    let escape = app.drop_dir().join("../logs/registry.log").display().to_string();
    let body = serde_json::json!({"pipeline": "churn", "path": escape}).to_string();
    app.js.publish_with_headers("mlops.events.data.arrived.churn", h, body.into()).await.unwrap().await.unwrap();

    let trained = wait_until(T, || async {
        let n = app.seen().iter().filter(|s| s.kind == "model.trained").count();
        (n >= 4).then_some(n)
    })
    .await;
    assert!(trained.is_some(), "{:?}", app.seen().iter().map(|s| &s.summary).collect::<Vec<_>>());
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(app.stored_events("mlops.events.model.trained.churn").await.len(), 4);
    let validated: Vec<u64> = app
        .stored_events("mlops.events.data.validated.churn")
        .await
        .iter()
        .filter_map(|s| match &s.payload {
            Decoded::Validated(v) => Some(v.rows),
            _ => None,
        })
        .collect();
    assert_eq!(validated, vec![800; 4]);
    let dead = wait_until(T, || async {
        let d = app.stored("MLOPS_DLQ", "mlops.dlq.>").await;
        (!d.is_empty()).then_some(d)
    })
    .await
    .expect("the escaping path is dead-lettered");
    let reason = dead[0].headers.as_ref().unwrap().get("mlops-dlq-reason").unwrap().to_string();
    assert!(reason.contains("outside the allowed directories"), "{reason}");
}
