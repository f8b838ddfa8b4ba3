//! Serving, through the deployer: what each pipeline serves (`mlops deployments`), serving a
//! version now (`mlops deploy`), a canary's share of traffic (`mlops traffic`) and going back to
//! the previous version (`mlops rollback`).

use clap::Args;
use mlops_cli::client::{self, Remote};
use mlops_cli::model_ref::ModelRef;
use mlops_cli::tables;
use mlops_shared::config::with_token;

/// The arguments of `mlops rollback`.
#[derive(Args)]
pub(crate) struct RollbackArgs {
    pipeline: String,
    #[arg(long, default_value = "manual rollback")]
    reason: String,
}

/// The arguments of `mlops deploy`.
#[derive(Args)]
pub(crate) struct DeployArgs {
    target: ModelRef,
    #[arg(long, default_value = "")]
    reason: String,
}

/// The arguments of `mlops traffic`.
#[derive(Args)]
pub(crate) struct TrafficArgs {
    pipeline: String,
    #[arg(long)]
    canary: f64,
    #[arg(long, default_value = "")]
    reason: String,
}

/// Serves the pipeline's previous version again.
pub(crate) async fn rollback(args: RollbackArgs, deployer: &Remote, token: Option<&str>) -> anyhow::Result<()> {
    let RollbackArgs { pipeline, reason } = args;
    let mut c = client::deployer(deployer).await?;
    let d = c
        .rollback(with_token(mlops_proto::RollbackRequest { pipeline, reason }, token))
        .await
        .map_err(|s| anyhow::anyhow!("rollback: {}", s.message()))?
        .into_inner();
    println!("{} now serves v{} ({})", d.pipeline, d.version, mlops_shared::ids::short(&d.artifact_sha256));
    Ok(())
}

/// One line per pipeline: the version it serves, and any release in progress.
pub(crate) async fn deployments(deployer: &Remote) -> anyhow::Result<()> {
    let mut c = client::deployer(deployer).await?;
    let s = c.status(mlops_proto::StatusRequest { pipeline: String::new() }).await?.into_inner();
    println!("{:<20} {:<8} {:<14} {:>11}  RELEASE", "PIPELINE", "VERSION", "ARTIFACT", "PREDICTIONS");
    for d in s.deployments {
        println!(
            "{:<20} {:<8} {:<14} {:>11}  {}",
            d.pipeline,
            d.version,
            mlops_shared::ids::short(&d.artifact_sha256),
            d.predictions,
            release(&d)
        );
    }
    Ok(())
}

/// Serves the version to all traffic now (the deployer refuses a blocked one).
pub(crate) async fn deploy(args: DeployArgs, deployer: &Remote, token: Option<&str>) -> anyhow::Result<()> {
    let DeployArgs { target: ModelRef { pipeline, version }, reason } = args;
    let mut c = client::deployer(deployer).await?;
    let d = c
        .deploy(with_token(mlops_proto::DeployRequest { pipeline, version, reason }, token))
        .await
        .map_err(|s| anyhow::anyhow!("deploy: {}", s.message()))?
        .into_inner();
    println!("{} now serves v{} ({})", d.pipeline, d.version, mlops_shared::ids::short(&d.artifact_sha256));
    Ok(())
}

/// Sets a running canary's share of traffic.
pub(crate) async fn traffic(args: TrafficArgs, deployer: &Remote, token: Option<&str>) -> anyhow::Result<()> {
    let TrafficArgs { pipeline, canary, reason } = args;
    let mut c = client::deployer(deployer).await?;
    let d = c
        .set_traffic(with_token(mlops_proto::SetTrafficRequest { pipeline, canary_percent: canary, reason }, token))
        .await
        .map_err(|s| anyhow::anyhow!("traffic: {}", s.message()))?
        .into_inner();
    println!("{} serves v{}; {}", d.pipeline, d.version, release(&d));
    Ok(())
}

/// A release in progress, in words.
fn release(d: &mlops_proto::Deployment) -> String {
    if d.release_mode.is_empty() {
        return "no release in progress".into();
    }
    let since = (mlops_shared::now_unix_ms() - d.release_started_unix_ms).max(0) as f64 / 1000.0;
    format!(
        "{} of v{} at {} % for {}, {} predictions",
        d.release_mode,
        d.release_version,
        d.release_percent,
        tables::age(since),
        d.release_predictions
    )
}
