//! `mlops pipeline`: pipeline specs in the registry, applied from YAML and listed with their
//! revision and spec hash.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use mlops_cli::client::{self, Remote};

/// The subcommands of `mlops pipeline`.
#[derive(Subcommand)]
pub(crate) enum PipelineCommand {
    /// Create or update a pipeline from its YAML spec.
    Apply { file: PathBuf },
    /// List pipelines.
    List,
}

/// Runs one `mlops pipeline` subcommand against the registry.
pub(crate) async fn run(command: PipelineCommand, registry: &Remote, token: Option<&str>) -> anyhow::Result<()> {
    match command {
        PipelineCommand::Apply { file } => {
            let yaml = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let p = client::apply_pipeline_as(registry, &yaml, token).await?;
            println!(
                "pipeline {} applied: revision {}, spec {}",
                p.name,
                p.revision,
                mlops_shared::ids::short(&p.spec_hash)
            );
        }
        PipelineCommand::List => {
            let mut c = client::registry(registry).await?;
            let list = c.list_pipelines(mlops_proto::ListPipelinesRequest {}).await?.into_inner();
            for p in list.pipelines {
                println!("{:<24} revision {:<4} spec {}", p.name, p.revision, mlops_shared::ids::short(&p.spec_hash));
            }
        }
    }
    Ok(())
}
