//! `just bench-archive`: the prediction archive on the real platform (release binaries, a private
//! nats-server). N predictions of 20 features, as the deployer logs them (UUIDv7 ids, 500 to a
//! message), are published in rounds of ROUND while the monitor is stopped (the stream holds
//! 1 GB); the monitor is started and timed until it has archived the round (compaction rate,
//! predictions/s, beside its own intake of the same messages for windows). Then ids are looked up
//! among all N: found ones (drawn from every round) and absent ones, by the library call
//! `mlops predictions show` makes, and once through the command itself.
//!
//! Usage: cargo bench -p mlops-integration-tests --bench archive -- N [ROUND]

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use mlops_cli::stack::{Stack, StackOptions};
use prost::Message as _;

const BATCH: usize = 500;
const FEATURES: usize = 20;

/// A tiny deterministic generator (SplitMix64), so every run publishes the same values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Publishes `n` predictions; returns a sample of their ids (every 100 000th).
async fn publish(js: &async_nats::jetstream::Context, n: u64, rng: &mut Rng) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = (0..FEATURES).map(|i| format!("f{i:02}")).collect();
    let mut acks = Vec::with_capacity(64);
    let mut sample = Vec::new();
    let mut batch = mlops_proto::PredictionLogBatch { pipeline: "churn".into(), predictions: Vec::new() };
    for i in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        if i % 100_000 == 0 {
            sample.push(id.clone());
        }
        batch.predictions.push(mlops_proto::PredictionLogged {
            pipeline: "churn".into(),
            prediction_id: id,
            version: 1,
            artifact_sha256: "ab".repeat(32),
            numeric: names.iter().map(|f| (f.clone(), (rng.next() * 1000.0).round() / 10.0)).collect(),
            categorical: Default::default(),
            score: rng.next(),
            label: if rng.next() < 0.3 { "yes" } else { "no" }.into(),
            time_unix_ms: mlops_shared::now_unix_ms(),
        });
        if batch.predictions.len() == BATCH || i + 1 == n {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("ce-type", <mlops_proto::PredictionLogBatch as mlops_shared::events::Event>::CE_TYPE);
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
    Ok(sample)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let n: u64 = args.first().context("usage: archive N [ROUND]")?.parse()?;
    let round: u64 = args.get(1).map_or(Ok(1_000_000), |r| r.parse())?;
    let dir = tempfile::tempdir()?;
    let mut opts = StackOptions::beside_current_exe(dir.path().to_path_buf())?;
    opts.log_dir = Some(dir.path().join("logs"));
    opts.env.push(("RUST_LOG".into(), "warn".into()));
    let mut stack = Stack::start(opts).await?;
    let bus = mlops_integration_tests::bus_at(&stack.nats_url).await;
    let archive = mlops_archive::Archive::open(&bus).await?;
    let mut rng = Rng(7);
    let mut sample = Vec::new();
    let (mut archived, mut compacting) = (0u64, 0.0f64);
    let mut name = 0;
    while archived < n {
        let this = round.min(n - archived);
        stack.kill(&format!("monitor{}", if name == 0 { String::new() } else { format!("-{name}") })).await?;
        let started = Instant::now();
        sample.extend(publish(&bus.js, this, &mut rng).await?);
        let published = started.elapsed().as_secs_f64();
        let mut stream = bus.js.get_stream("MLOPS_PREDICTIONS").await?;
        let last = stream.info().await?.state.last_sequence;
        name += 1;
        stack.spawn("monitor", &format!("monitor-{name}"), &[("MLOPS_ARCHIVE_FLUSH_SECS", "1")]).await?;
        let started = Instant::now();
        // Each commit moves the `head` key: woken by it, never by a timer.
        let mut commits = bus.js.get_key_value("archive").await?.watch("head").await?;
        while archive.watermark().await? < last {
            tokio::time::timeout(Duration::from_secs(900), commits.next())
                .await
                .with_context(|| format!("the archive did not reach {last}"))?
                .context("the watch of the archive's head ended")??;
        }
        let secs = started.elapsed().as_secs_f64();
        archived += this;
        compacting += secs;
        println!(
            "round: {this} predictions published in {published:.2} s; archived in {secs:.2} s from the monitor's start: {:.0} predictions/s",
            this as f64 / secs
        );
    }
    println!("compaction: {n} predictions in {compacting:.2} s: {:.0} predictions/s", n as f64 / compacting);
    let (mut files, mut bytes) = (0, 0);
    for hour in archive.hours("churn").await? {
        let entries = archive.partition("churn", &hour).await?;
        files += entries.len();
        bytes += entries.iter().map(|e| e.bytes).sum::<u64>();
    }
    println!("the archive holds {files} files, {bytes} bytes: {:.0} B per prediction", bytes as f64 / n as f64);

    let mut times = Vec::new();
    for id in &sample {
        let started = Instant::now();
        let found = archive.find(id, None).await?;
        times.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(found.is_some_and(|f| f.file.is_some()), "{id} not found in the archive");
    }
    let mut absent = Vec::new();
    for _ in 0..10 {
        let id = uuid::Uuid::now_v7().to_string();
        let started = Instant::now();
        anyhow::ensure!(archive.find(&id, None).await?.is_none(), "{id} found");
        absent.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    absent.sort_by(f64::total_cmp);
    let ms = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize] * 1000.0;
    println!(
        "lookup by id among {n}: found ({} ids) median {:.0} ms, max {:.0} ms; absent (10 ids) median {:.0} ms, max {:.0} ms",
        times.len(),
        ms(&times, 0.5),
        ms(&times, 1.0),
        ms(&absent, 0.5),
        ms(&absent, 1.0)
    );
    let mlops = std::env::current_exe()?.parent().and_then(|d| d.parent()).context("target dir")?.join("mlops");
    let started = Instant::now();
    let out = std::process::Command::new(&mlops)
        .args(["--nats-url", &stack.nats_url, "--registry-url", &stack.url("registry")])
        .args(["predictions", "show", &sample[sample.len() / 2]])
        .output()?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("`mlops predictions show ID`, the whole command: {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}
