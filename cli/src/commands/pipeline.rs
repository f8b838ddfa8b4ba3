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
    Apply {
        file: PathBuf,
        /// The git commit the spec comes from, kept with the revision and in the lineage of
        /// models trained under it (default: `GITHUB_SHA`, `CI_COMMIT_SHA`, or the HEAD of the
        /// work tree holding the file).
        #[arg(long)]
        commit: Option<String>,
    },
    /// List pipelines.
    List,
}

/// Runs one `mlops pipeline` subcommand against the registry.
pub(crate) async fn run(command: PipelineCommand, registry: &Remote, token: Option<&str>) -> anyhow::Result<()> {
    match command {
        PipelineCommand::Apply { file, commit } => {
            let yaml = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let code = mlops_cli::code_bundle::for_spec(&file, &yaml)?;
            let commit = mlops_cli::code_bundle::spec_commit(&file, commit.as_deref());
            let p = client::apply_pipeline_from(registry, &yaml, code, &commit, token).await?;
            let from = if p.commit.is_empty() { String::new() } else { format!(", commit {}", p.commit) };
            println!(
                "pipeline {} applied: revision {}, spec {}{from}{}",
                p.name,
                p.revision,
                mlops_shared::ids::short(&p.spec_hash),
                code_note(&p.spec_yaml)
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

/// ", code bundle X (commit C, with uncommitted changes)" for a spec that names code.
fn code_note(yaml: &str) -> String {
    let spec = mlops_shared::spec::PipelineSpec::from_yaml(yaml).ok();
    let Some(code) = spec.and_then(|s| s.training.code) else { return String::new() };
    let bundle = mlops_shared::ids::short(code.bundle.as_deref().unwrap_or_default()).to_owned();
    match code.commit {
        Some(c) if code.dirty => {
            format!(", code bundle {bundle} (commit {}, with uncommitted changes)", mlops_shared::ids::short(&c))
        }
        Some(c) => format!(", code bundle {bundle} (commit {})", mlops_shared::ids::short(&c)),
        None => format!(", code bundle {bundle}"),
    }
}
