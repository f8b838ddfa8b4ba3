//! `just bench-serve`: single-row inference throughput and latency under concurrent load.
//!
//!     serve ours SPEC.yaml DATA.csv SECONDS [MODEL.onnx]
//!                                                the platform (release binaries, a private
//!                                                nats-server): OIP REST and OIP gRPC, and the
//!                                                deployer's resident memory with one model —
//!                                                its own, or MODEL.onnx imported
//!     serve mlflow URL SECONDS                   MLflow's `models serve` (POST /invocations)
//!     serve mlserver URL MODEL SECONDS           MLServer (OIP REST, the same body as ours)
//!
//! Every target gets the same client, the same rows (the first 1,000 of DATA/the peers' copy) and
//! the same load: CONCURRENCY requests in flight, each one row, for SECONDS after a one-second
//! warm-up. Prints one line of figures per target.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mlops_cli::client;
use mlops_cli::stack::{Stack, StackOptions};
use mlops_integration_tests::load::{Figures, http as http_client, post, rss_mb};
use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_proto::inference::model_infer_request::InferInputTensor;
use mlops_proto::inference::{InferTensorContents, ModelInferRequest};

const CONCURRENCY: usize = 32;
/// Requests in flight on each gRPC connection.
const GRPC_STREAMS: usize = 8;

/// The first rows of a CSV whose columns are the numeric features then the label.
fn rows(path: &str) -> anyhow::Result<(Vec<String>, Vec<Vec<f64>>)> {
    let text = std::fs::read_to_string(path).with_context(|| path.to_owned())?;
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().context("empty CSV")?.split(',').map(str::to_owned).collect();
    let features = header[..header.len() - 1].to_vec();
    let rows = lines
        .take(1000)
        .map(|l| l.split(',').take(features.len()).map(|c| c.parse().unwrap_or(0.0)).collect())
        .collect();
    Ok((features, rows))
}

/// Runs `send` from CONCURRENCY tasks for a warm-up second, then for `secs`.
async fn load<F, Fut>(secs: u64, send: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    mlops_integration_tests::load::load(CONCURRENCY, secs, send).await
}

fn http() -> reqwest::Client {
    http_client(CONCURRENCY)
}

/// An OIP REST body: one [1, n] FP64 tensor (ours and MLServer take it as is).
fn oip_body(row: &[f64]) -> String {
    serde_json::json!({"inputs": [{"name": "predict", "shape": [1, row.len()], "datatype": "FP64", "data": row}]})
        .to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ours", spec, data, secs] => ours(spec, data, secs.parse()?, None).await,
        ["ours", spec, data, secs, model] => ours(spec, data, secs.parse()?, Some(model)).await,
        ["mlflow", url, data, secs] => {
            let (features, rows) = rows(data)?;
            let (client, url, rows) = (http(), format!("{url}/invocations"), Arc::new(rows));
            let features = Arc::new(features);
            let mut f = load(secs.parse()?, move |i| {
                let body =
                    serde_json::json!({"dataframe_split": {"columns": *features, "data": [rows[i % rows.len()]]}})
                        .to_string();
                let (client, url) = (client.clone(), url.clone());
                async move { post(&client, &url, "application/json", body).await }
            })
            .await;
            println!("{}", f.line("mlflow rest"));
            Ok(())
        }
        ["mlserver", url, model, data, secs] => {
            let (_, rows) = rows(data)?;
            let (client, url, rows) = (http(), format!("{url}/v2/models/{model}/infer"), Arc::new(rows));
            let mut f = load(secs.parse()?, move |i| {
                let body = oip_body(&rows[i % rows.len()]);
                let (client, url) = (client.clone(), url.clone());
                async move { post(&client, &url, "application/json", body).await }
            })
            .await;
            println!("{}", f.line("mlserver rest"));
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: serve ours SPEC DATA SECS | serve mlflow URL DATA SECS | serve mlserver URL MODEL DATA SECS"
        ),
    }
}

/// Imports `model` into the `bench` pipeline once `dataset` is among its validated versions (the
/// trainer records it just after the verdict).
async fn import(stack: &Stack, dataset: &str, model: &str) -> anyhow::Result<()> {
    let bus = mlops_integration_tests::bus_at(&stack.nats_url).await;
    let runs = mlops_shared::runs::Runs::open(&bus).await?;
    anyhow::ensure!(
        runs.wait_for_dataset("bench", dataset, Duration::from_secs(300)).await?,
        "the bench data was not validated within 300 s"
    );
    let header =
        mlops_proto::ImportModelHeader { pipeline: "bench".into(), file_name: model.into(), ..Default::default() };
    let files = mlops_cli::onnx_import::read(std::path::Path::new(model))?;
    let answer = client::import_model(&stack.url("registry"), header, files, None).await?;
    println!("{:<14} imported {model} as v{}", "mlops deployer", answer.version.map_or(0, |v| v.version));
    Ok(())
}

async fn ours(spec: &str, data: &str, secs: u64, onnx: Option<&str>) -> anyhow::Result<()> {
    let spec = std::fs::read_to_string(spec)?;
    let dir = tempfile::tempdir()?;
    let mut opts = StackOptions::beside_current_exe(dir.path().to_path_buf())?;
    opts.log_dir = Some(dir.path().join("logs"));
    // Every prediction is logged to the bus, as in production (log_sample in the spec).
    let stack = Stack::start(opts).await?;
    let nats = async_nats::connect(&stack.nats_url).await?;
    let mut promoted = nats.subscribe("mlops.events.model.promoted.>").await?;
    client::apply_pipeline(&stack.url("registry"), &spec).await?;
    let header = mlops_proto::UploadHeader { pipeline: "bench".into(), source: data.into(), ..Default::default() };
    let dataset = client::upload_file(&stack.url("ingest"), header, std::path::Path::new(data)).await?;
    if let Some(model) = onnx {
        import(&stack, &dataset.dataset_id, model).await?;
    }
    tokio::time::timeout(Duration::from_secs(300), futures::StreamExt::next(&mut promoted))
        .await
        .context("no promotion within 300 s")?;
    let base = stack.url("deployer");
    let pid = stack.pid_of("deployer").context("deployer pid")?;
    println!("{:<14} {:>9.1} MB resident with one model, before load", "mlops deployer", rss_mb(pid));
    let (_, rows) = rows(data)?;
    let rows = Arc::new(rows);

    let (client, url, r) = (http(), format!("{base}/v2/models/bench/infer"), rows.clone());
    let mut f = load(secs, move |i| {
        let body = oip_body(&r[i % r.len()]);
        let (client, url) = (client.clone(), url.clone());
        async move { post(&client, &url, "application/json", body).await }
    })
    .await;
    println!("{}", f.line("mlops rest"));

    // One HTTP/2 connection per GRPC_STREAMS requests in flight: one connection is served by one
    // task, so 32 streams on a single connection measure one core, while the REST client above
    // spreads its 32 requests over a pool of connections.
    let mut channels = Vec::new();
    for _ in 0..CONCURRENCY / GRPC_STREAMS {
        channels.push(GrpcInferenceServiceClient::new(
            tonic::transport::Endpoint::from_shared(base.clone())?.connect().await?,
        ));
    }
    let r = rows.clone();
    let mut f = load(secs, move |i| {
        let row = &r[i % r.len()];
        let request = ModelInferRequest {
            model_name: "bench".into(),
            inputs: vec![InferInputTensor {
                name: "predict".into(),
                datatype: "FP64".into(),
                shape: vec![1, row.len() as i64],
                contents: Some(InferTensorContents { fp64_contents: row.clone(), ..Default::default() }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut grpc = channels[i % channels.len()].clone();
        async move { grpc.model_infer(request).await.is_ok() }
    })
    .await;
    println!("{}", f.line("mlops grpc"));
    println!("{:<14} {:>9.1} MB resident after load", "mlops deployer", rss_mb(pid));
    // What the prediction log kept up with: logged to the bus, or dropped (never blocking a request).
    let metrics = reqwest::get(format!("{base}/metrics")).await?.text().await?;
    let sum = |name: &str| -> f64 {
        metrics.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    println!(
        "{:<14} {:>9.0} predictions served, {:.0} logs dropped by the bounded queue",
        "mlops deployer",
        sum("mlops_predictions_total") + 0.0,
        sum("mlops_prediction_log_dropped_total") + 0.0
    );
    Ok(())
}
