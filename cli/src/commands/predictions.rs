//! `mlops predictions`: the prediction archive read back. `show` finds one prediction by id (in
//! the archive, or in the stream's newest messages not yet archived) with the lineage of the model
//! that made it; `export` writes a pipeline's predictions over a time range as Parquet; `expired`
//! lists the partitions deleted at the end of their retention.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use mlops_archive::Archive;
use mlops_cli::client::Remote;
use mlops_cli::model_ref::ModelRef;
use mlops_shared::config::NatsArgs;

/// The subcommands of `mlops predictions`.
#[derive(Subcommand)]
pub(crate) enum PredictionsCommand {
    /// One prediction by id: its inputs as received, its answers, the label that came for it,
    /// the model version and that version's lineage.
    Show {
        /// The prediction id, as the deployer answered it.
        id: String,
        /// Look in this pipeline only (by default in all).
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// A pipeline's archived predictions over a time range, as one Parquet file.
    Export {
        #[arg(long)]
        pipeline: String,
        /// The first time included: RFC 3339, `YYYY-MM-DD[ HH:MM:SS]` (UTC) or Unix seconds.
        #[arg(long)]
        from: String,
        /// The first time left out, in the same forms.
        #[arg(long)]
        to: String,
        /// Only the predictions of this model version.
        #[arg(long)]
        version: Option<u64>,
        /// The Parquet file written.
        #[arg(long)]
        out: PathBuf,
    },
    /// The archive partitions (hours) deleted at the end of the pipeline's retention, and what
    /// each held.
    Expired {
        #[arg(long)]
        pipeline: String,
    },
}

/// Runs a `mlops predictions` subcommand.
pub(crate) async fn run(command: PredictionsCommand, nats: &NatsArgs, registry: &Remote) -> anyhow::Result<()> {
    let (bus, _) = super::runs::connect_runs(nats).await?;
    let archive = Archive::open(&bus).await?;
    match command {
        PredictionsCommand::Show { id, pipeline } => show(&archive, &id, pipeline, registry).await,
        PredictionsCommand::Export { pipeline, from, to, version, out } => {
            let parse =
                |t: &str, flag: &str| mlops_features::time::parse_ms(t).map_err(|e| anyhow::anyhow!("--{flag}: {e}"));
            let range = (parse(&from, "from")?, parse(&to, "to")?);
            export(&archive, &pipeline, range, version, &out).await
        }
        PredictionsCommand::Expired { pipeline } => {
            mlops_shared::ids::PipelineName::new(&pipeline)?;
            let expired = archive.expired(&pipeline).await?;
            println!("{}", serde_json::to_string_pretty(&expired)?);
            Ok(())
        }
    }
}

async fn show(archive: &Archive, id: &str, pipeline: Option<String>, registry: &Remote) -> anyhow::Result<()> {
    if let Some(p) = &pipeline {
        mlops_shared::ids::PipelineName::new(p)?;
    }
    let found = archive
        .find(id, pipeline.map(|p| vec![p]))
        .await?
        .with_context(|| format!("prediction {id} is neither in the archive nor in the prediction log"))?;
    let version = found.prediction.get("model_version").and_then(serde_json::Value::as_u64).unwrap_or_default();
    let target = ModelRef { pipeline: found.pipeline.clone(), version };
    let model = match super::models::model_version(registry, &target).await {
        Ok(v) => super::models::version_json(&v),
        Err(e) => {
            serde_json::json!({ "error": format!("the registry did not describe {}@{version}: {e}", found.pipeline) })
        }
    };
    let out = serde_json::json!({
        "pipeline": found.pipeline,
        "source": match (found.file, found.output) {
            (Some(file), _) => format!("archive file {file}"),
            (None, Some(output)) => format!("batch output {output} (not archived)"),
            (None, None) => "prediction log (not yet archived)".to_owned(),
        },
        "prediction": found.prediction,
        "inputs": found.inputs,
        "label": found.label,
        "model": model,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn export(
    archive: &Archive,
    pipeline: &str,
    (from, to): (i64, i64),
    version: Option<u64>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    mlops_shared::ids::PipelineName::new(pipeline)?;
    // Written beside the output and renamed once whole: a failure leaves no half file.
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    let writer = std::io::BufWriter::new(file.reopen()?);
    let done = archive.export(pipeline, (from, to), version, writer).await?;
    let (from_text, to_text) = (mlops_features::time::format_ms(from), mlops_features::time::format_ms(to));
    if done.rows == 0 {
        let of_version = version.map(|v| format!(" of version {v}")).unwrap_or_default();
        anyhow::bail!("no predictions{of_version} of {pipeline} were archived from {from_text} to {to_text}");
    }
    file.persist(out).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} predictions of {pipeline} from {from_text} to {to_text} ({} archive files) written to {}",
        done.rows,
        done.files,
        out.display()
    );
    Ok(())
}
