//! `just bench-code`: the overhead of a code step over its program's own run time, on the real
//! platform (release binaries, a private nats-server). A pipeline of ROWS rows × 20 numeric
//! features is trained by `bench/code-step/train.py` (a scikit-learn logistic regression) in the
//! scikit-learn example's environment; the second run (the environment cached) is timed phase by
//! phase from its run record. The same program is then run directly, as a person would run it,
//! on the same training rows as Parquet: the peer figure.
//!
//! Usage: cargo bench -p mlops-integration-tests --bench code_step -- ROWS

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use mlops_cli::client;
use mlops_cli::stack::{Stack, StackOptions};
use prost::Message as _;

const WAIT: Duration = Duration::from_secs(1800);
const FEATURES: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let rows: usize = args.first().map_or(Ok(1_000_000), |r| r.parse()).context("usage: code_step ROWS")?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("the repository")?.to_path_buf();
    let dir = tempfile::tempdir()?;
    let (spec, data) = write_inputs(&repo, dir.path(), rows)?;
    let envs = repo.join("target/trainer-envs");
    let mut opts = StackOptions::beside_current_exe(dir.path().join("platform"))?;
    opts.log_dir = Some(dir.path().join("logs"));
    opts.env.push(("MLOPS_TRAINER_ENV_DIR".into(), envs.display().to_string()));
    let mut stack = Stack::start(opts).await?;
    let nats = async_nats::connect(&stack.nats_url).await?;
    let mut trained = nats.subscribe("mlops.events.model.trained.>").await?;
    let yaml = std::fs::read_to_string(&spec)?;
    let code = mlops_cli::code_bundle::for_spec(&spec, &yaml)?;
    client::apply_pipeline_with_code(&stack.url("registry"), &yaml, code, None).await?;
    let header =
        mlops_proto::UploadHeader { pipeline: "bench_code".into(), source: "bench".into(), ..Default::default() };
    client::upload_file(&stack.url("ingest"), header, &data).await?;
    let first = next_trained(&mut trained).await?;
    eprintln!("first run done (its environment made or found): job {}", first.job_id);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus =
        mlops_shared::bus::Bus::connect(&mlops_shared::config::NatsArgs::local(&stack.nats_url), "bench", &shutdown)
            .await?;
    let request = mlops_proto::TrainRequested {
        pipeline: "bench_code".into(),
        requested_by: "bench".into(),
        request_id: "timed".into(),
    };
    bus.publish("bench-code-timed", &mlops_shared::events::EventContext::new_run("timed"), &request).await?;
    let timed = next_trained(&mut trained).await?;
    let runs = mlops_shared::runs::Runs::open(&bus).await?;
    let run = runs
        .wait_final(&timed.job_id, Duration::from_secs(30))
        .await?
        .with_context(|| format!("the run record of {} did not end", timed.job_id))?;
    let (direct, direct_self) = run_directly(&repo, dir.path(), &spec, &data, &envs)?;
    print!("{}", report(rows, &run, &timed, direct, direct_self));
    stack.stop(Duration::from_secs(10)).await;
    Ok(())
}

/// The spec (with the code directory beside it) and ROWS rows of data as CSV.
fn write_inputs(repo: &Path, dir: &Path, rows: usize) -> anyhow::Result<(PathBuf, PathBuf)> {
    let code = dir.join("train");
    std::fs::create_dir_all(&code)?;
    std::fs::copy(repo.join("bench/code-step/train.py"), code.join("train.py"))?;
    std::fs::copy(repo.join("examples/code-sklearn/train/requirements.txt"), code.join("requirements.txt"))?;
    let mut yaml = String::from("name: bench_code\nfeatures:\n");
    for f in 0..FEATURES {
        writeln!(yaml, "  - {{name: f{f}, type: numeric}}")?;
    }
    yaml += "target: {name: y}\ntraining:\n  code: {path: train, command: [python, train.py]}\n";
    yaml += "  environment: {python: {requirements: train/requirements.txt}}\n";
    let spec = dir.join("pipeline.yaml");
    std::fs::write(&spec, yaml)?;
    let mut csv = (0..FEATURES).map(|f| format!("f{f}")).collect::<Vec<_>>().join(",") + ",y\n";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..rows {
        let x: Vec<f64> = (0..FEATURES).map(|_| uniform() * 2.0 - 1.0).collect();
        let score: f64 = x.iter().enumerate().map(|(i, v)| v * (i as f64 / 10.0 - 1.0)).sum::<f64>() + uniform() - 0.5;
        for v in &x {
            write!(csv, "{v:.5},")?;
        }
        writeln!(csv, "{}", u8::from(score > 0.0))?;
    }
    let data = dir.join("data.csv");
    std::fs::write(&data, csv)?;
    Ok((spec, data))
}

/// The same program run directly on the same training rows as Parquet: its wall time, and the
/// time it reports itself.
fn run_directly(repo: &Path, dir: &Path, spec: &Path, data: &Path, envs: &Path) -> anyhow::Result<(f64, f64)> {
    let spec = mlops_shared::spec::PipelineSpec::from_yaml(&std::fs::read_to_string(spec)?)?;
    let frame = mlops_data::read_datasets(&spec, &[("d".into(), std::fs::read(data)?)])?;
    let t = &spec.training;
    let (train, _) = mlops_shared::model::holdout_split(frame.rows, t.holdout, t.seed);
    let parquet = dir.join("direct.parquet");
    mlops_data::write_parquet(&spec, &frame.take(&train), std::io::BufWriter::new(std::fs::File::create(&parquet)?))?;
    let python = std::fs::read_dir(envs)?
        .flatten()
        .map(|e| e.path().join("bin/python"))
        .find(|p| p.exists())
        .context("the environment the platform made")?;
    let model = dir.join("direct-model");
    std::fs::create_dir_all(&model)?;
    let features: Vec<serde_json::Value> =
        spec.features.iter().map(|f| serde_json::json!({"name": f.name, "type": "numeric"})).collect();
    let started = Instant::now();
    let out = std::process::Command::new(python)
        .arg(repo.join("bench/code-step/train.py"))
        .env("MLOPS_TRAIN_DATA", &parquet)
        .env("MLOPS_MODEL_DIR", &model)
        .env("MLOPS_FEATURES", serde_json::Value::from(features).to_string())
        .env("MLOPS_TARGET", "y")
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "the direct run failed: {}", String::from_utf8_lossy(&out.stderr));
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("metrics.json"))?)?;
    Ok((wall, metrics["program_seconds"].as_f64().unwrap_or(f64::NAN)))
}

/// The phases, and the overhead: what the platform adds to running the program by hand. Starting
/// and ending Python (outside the program's own clock) costs the same either way, so the step's
/// part of the program phase is what it adds to that.
fn report(
    rows: usize,
    run: &mlops_shared::runs::Run,
    t: &mlops_proto::ModelTrained,
    direct: f64,
    direct_self: f64,
) -> String {
    let phase = |k: &str| run.phases.get(k).copied().unwrap_or(f64::NAN);
    let own = t.program_metrics.get("program_seconds").copied().unwrap_or(f64::NAN);
    let runner = (phase("program") - own) - (direct - direct_self);
    let overhead = phase("bundle") + phase("environment") + phase("hand-over") + runner;
    let mut out = format!("code step, {rows} rows x {FEATURES} features (the environment cached):\n");
    for k in ["bundle", "read data", "environment", "hand-over", "program", "check"] {
        out += &format!("  {k:<12} {:>7.3} s\n", phase(k));
    }
    out += &format!("  the program's own time, as it reports it: {own:.3} s\n");
    out += &format!(
        "the same program run directly on the same rows: {direct:.3} s wall, {direct_self:.3} s by its own clock\n"
    );
    out +=
        &format!("the step runner's part of the program phase (beyond Python's own start and exit): {runner:.3} s\n");
    out += &format!("overhead of the code step (bundle + environment + hand-over + step runner): {overhead:.3} s\n");
    out
}

async fn next_trained(sub: &mut async_nats::Subscriber) -> anyhow::Result<mlops_proto::ModelTrained> {
    let msg = tokio::time::timeout(WAIT, sub.next()).await.context("no model within the wait")?.context("closed")?;
    Ok(mlops_proto::ModelTrained::decode(msg.payload.as_ref())?)
}
