//! `just bench-train` (second part): two trainer processes against one on two queued jobs, on the
//! real platform (release binaries, a private nats-server). Two pipelines train boosted trees on
//! the same file; each round asks for a run of both at once and times until both models are
//! announced, with one trainer process, then two, twice over.
//!
//! Usage: cargo bench -p mlops-integration-tests --bench trainers -- SPEC.yaml TRAIN.csv

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use mlops_cli::client;
use mlops_cli::stack::{Stack, StackOptions};
use prost::Message as _;

const WAIT: Duration = Duration::from_secs(900);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [spec, data] = args.as_slice() else { anyhow::bail!("usage: trainers SPEC.yaml TRAIN.csv") };
    let spec = std::fs::read_to_string(spec)?;
    let dir = tempfile::tempdir()?;
    let mut opts = StackOptions::beside_current_exe(dir.path().to_path_buf())?;
    opts.log_dir = Some(dir.path().join("logs"));
    let mut stack = Stack::start(opts).await?;
    let nats = async_nats::connect(&stack.nats_url).await?;
    let mut trained = nats.subscribe("mlops.events.model.trained.>").await?;
    let pipelines = ["bench_a", "bench_b"];
    for p in pipelines {
        let yaml = spec.replacen("name: bench", &format!("name: {p}"), 1)
            + "training: {algorithm: gradient_boosting, params: {trees: 100}}\n";
        client::apply_pipeline(&stack.url("registry"), &yaml).await?;
        let header = mlops_proto::UploadHeader { pipeline: p.into(), source: data.clone(), ..Default::default() };
        client::upload_file(&stack.url("ingest"), header, std::path::Path::new(data)).await?;
    }
    // The uploads' own runs first.
    wait_for(&mut trained, pipelines.len(), |_| true).await?;
    eprintln!("both pipelines have their first model; timing rounds");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus =
        mlops_shared::bus::Bus::connect(&mlops_shared::config::NatsArgs::local(&stack.nats_url), "bench", &shutdown)
            .await?;
    let mut times = Vec::new();
    for (round, trainers) in [1, 2, 1, 2].into_iter().enumerate() {
        match trainers {
            2 => {
                stack.spawn("trainer", "trainer-2", &[]).await?;
                stack.wait_healthy(Duration::from_secs(30)).await?;
            }
            _ if round > 0 => stack.kill("trainer-2").await?,
            _ => {}
        }
        let started = Instant::now();
        let mut jobs = HashSet::new();
        for p in pipelines {
            let request_id = format!("{p}-round-{round}");
            let request = mlops_proto::TrainRequested {
                pipeline: p.into(),
                requested_by: "bench".into(),
                request_id: request_id.clone(),
            };
            let ctx = mlops_shared::events::EventContext::new_run(request_id.clone());
            bus.publish(&format!("bench-{request_id}"), &ctx, &request).await?;
            jobs.insert(format!("{p}-manual-{request_id}"));
        }
        let by = wait_for(&mut trained, jobs.len(), |t| jobs.contains(&t.job_id)).await?;
        let secs = started.elapsed().as_secs_f64();
        println!("trainers={trainers} round={} two_jobs_s={secs:.2} trained_by={by:?}", round + 1);
        times.push((trainers, secs));
    }
    let mean = |n: u32| {
        let t: Vec<f64> = times.iter().filter(|(k, _)| *k == n).map(|(_, s)| *s).collect();
        t.iter().sum::<f64>() / t.len() as f64
    };
    println!("one trainer {:.2} s, two trainers {:.2} s: {:.2}x faster", mean(1), mean(2), mean(1) / mean(2));
    stack.stop(Duration::from_secs(10)).await;
    Ok(())
}

/// Waits for `n` model.trained events matching `keep`; the trainer of each.
async fn wait_for(
    sub: &mut async_nats::Subscriber,
    n: usize,
    keep: impl Fn(&mlops_proto::ModelTrained) -> bool,
) -> anyhow::Result<Vec<String>> {
    let mut by = Vec::new();
    while by.len() < n {
        let msg =
            tokio::time::timeout(WAIT, sub.next()).await.context("no model within the wait")?.context("closed")?;
        let t = mlops_proto::ModelTrained::decode(msg.payload.as_ref())?;
        if keep(&t) {
            by.push(t.trainer_id);
        }
    }
    Ok(by)
}
