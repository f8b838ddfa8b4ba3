//! `mlops staleness`: how quality falls with a model's age, as the evaluator computes it on
//! request (`mlops.v1.Evaluator/Staleness`) from the last production versions and the newest data.

use clap::Args;
use mlops_cli::client::{self, Remote};
use mlops_cli::tables;

/// The arguments of `mlops staleness`.
#[derive(Args)]
pub(crate) struct StalenessArgs {
    pipeline: String,
    /// How many production versions to compare (default: the spec's, 5).
    #[arg(long)]
    versions: Option<u32>,
    /// The largest tolerated loss, a share (default: the spec's, 0.05).
    #[arg(long)]
    tolerance: Option<f64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the staleness report, as a table or JSON.
pub(crate) async fn run(args: StalenessArgs, evaluator: &Remote) -> anyhow::Result<()> {
    let StalenessArgs { pipeline, versions, tolerance, json } = args;
    let report = client::staleness(evaluator, mlops_proto::StalenessRequest { pipeline, versions, tolerance }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", tables::staleness(&report));
    }
    Ok(())
}
