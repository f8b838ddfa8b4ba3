//! `just bench-monitor`: how many logged predictions a second the monitor takes in, on the real
//! platform (release binaries, a private nats-server). A model is trained and served; the monitor
//! is stopped; N predictions as the deployer logs them under load (six features, the served
//! artifact; batches of 256 in a message) are published to `mlops.predictions.<pipeline>`; the
//! monitor is started again and timed until it
//! has read them all — each one kept by id for its label, counted into windows of 500 whose drift
//! is tested, every batch committed to redb before it is acknowledged.
//!
//! Usage: cargo bench -p mlops-integration-tests --bench monitor -- N

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use mlops_cli::stack::{Stack, StackOptions};
use mlops_cli::{client, sample};
use prost::Message as _;

/// Predictions in a message, as the deployer sends them under load.
const BATCH: usize = 256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let n: u64 = args.first().context("usage: monitor N")?.parse()?;
    let dir = tempfile::tempdir()?;
    let mut opts = StackOptions::beside_current_exe(dir.path().to_path_buf())?;
    opts.log_dir = Some(dir.path().join("logs"));
    opts.env.push(("RUST_LOG".into(), "warn".into()));
    let mut stack = Stack::start(opts).await?;
    let nats = async_nats::connect(&stack.nats_url).await?;
    let js = async_nats::jetstream::new(nats.clone());
    let mut promoted = nats.subscribe("mlops.events.model.promoted.>").await?;
    // With `monitoring.performance`, so every prediction is kept for its label.
    let spec = mlops_cli::EXAMPLE_SPEC
        .replace("  window: 200\n", "  window: 500\n")
        .replace("  cooldown_secs: 3600\n", "  cooldown_secs: 3600\n  performance: {metric: accuracy, min: 0.5}\n");
    assert!(spec.contains("performance:"), "the example's monitoring section changed");
    client::apply_pipeline(&stack.url("registry"), &spec).await?;
    client::upload(
        &stack.url("ingest"),
        "churn",
        "bench.csv",
        sample::csv(5000, 1, sample::Variant::Normal).into_bytes(),
    )
    .await?;
    let msg = tokio::time::timeout(Duration::from_secs(120), promoted.next()).await?.context("no promotion")?;
    let promoted = mlops_proto::ModelPromoted::decode(msg.payload)?;

    stack.kill("monitor").await?;
    let rows = sample::customers(1000, 2, sample::Variant::Normal);
    let started = Instant::now();
    let mut acks = Vec::with_capacity(64);
    let mut batch = mlops_proto::PredictionLogBatch { pipeline: "churn".into(), predictions: Vec::new() };
    for i in 0..n {
        let c = &rows[i as usize % rows.len()];
        batch.predictions.push(mlops_proto::PredictionLogged {
            pipeline: "churn".into(),
            prediction_id: format!("bench-{i}"),
            version: promoted.version,
            artifact_sha256: promoted.artifact_sha256.clone(),
            numeric: [
                ("tenure_months".to_owned(), c.tenure_months),
                ("monthly_charges".to_owned(), c.monthly_charges),
                ("support_calls".to_owned(), c.support_calls),
                ("age".to_owned(), c.age.unwrap_or(f64::NAN)),
            ]
            .into(),
            categorical: [
                ("contract".to_owned(), c.contract.to_owned()),
                ("payment_method".to_owned(), c.payment_method.to_owned()),
            ]
            .into(),
            score: 0.3,
            label: "0".into(),
            time_unix_ms: mlops_shared::now_unix_ms(),
        });
        if batch.predictions.len() == BATCH || i + 1 == n {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("ce-type", <mlops_proto::PredictionLogBatch as mlops_shared::events::Event>::CE_TYPE);
            headers.insert("Nats-Msg-Id", format!("bench-{i}").as_str());
            let payload = batch.encode_to_vec();
            batch.predictions.clear();
            acks.push(js.publish_with_headers("mlops.predictions.churn", headers, payload.into()).await?);
        }
        if acks.len() == 64 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks.drain(..) {
        a.await?;
    }
    println!("published {n} logged predictions in {:.2} s (the monitor stopped)", started.elapsed().as_secs_f64());

    stack.spawn("monitor", "monitor", &[]).await?;
    let started = Instant::now();
    let url = format!("{}/metrics", stack.url("monitor"));
    let http = reqwest::Client::new();
    let read = loop {
        let text = match http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let read: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("mlops_monitor_predictions_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if read as u64 >= n || started.elapsed() > Duration::from_secs(600) {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "mlops monitor: read {read:.0} of {n} logged predictions in {secs:.2} s from its start: {:.0} predictions/s",
        read / secs
    );
    let report = client::monitor_report(&stack.url("monitor"), "churn").await?;
    println!("  windows of 500 closed and recorded: the report lists the newest {}", report.windows.len());
    Ok(())
}
