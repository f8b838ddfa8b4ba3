//! `mlops predict`: one or several rows sent to the deployer's OIP v2 endpoint for a pipeline, and
//! its answer printed as JSON.

use anyhow::Context as _;
use clap::Args;
use mlops_cli::client::{self, Remote};

/// The arguments of `mlops predict`.
#[derive(Args)]
pub(crate) struct PredictArgs {
    #[arg(long)]
    pipeline: String,
    #[arg(long)]
    json: String,
}

/// Asks the model the pipeline serves for predictions and prints the answer.
pub(crate) async fn run(args: PredictArgs, deployer: &Remote) -> anyhow::Result<()> {
    let rows: serde_json::Value = serde_json::from_str(&args.json).context("--json is not valid JSON")?;
    let body = client::predict(deployer, &args.pipeline, &rows).await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
