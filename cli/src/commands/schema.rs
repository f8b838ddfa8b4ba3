//! `mlops schema`: a pipeline spec inferred from a local data file, read with `mlops_data` as the
//! validator and trainer read datasets (nothing is uploaded).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use mlops_shared::ids::PipelineName;

/// The subcommands of `mlops schema`.
#[derive(Subcommand)]
pub(crate) enum SchemaCommand {
    /// Print a pipeline spec (types, bounds, categories, nullability, ids, the target's classes)
    /// inferred from a data file; it accepts the file it was inferred from.
    Infer {
        file: PathBuf,
        /// The label column, written as the spec's `target`.
        #[arg(long)]
        target: Option<String>,
        /// The pipeline's name (default: the file's name, lower-cased, when that makes a valid one).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Runs one `mlops schema` subcommand.
pub(crate) fn run(command: SchemaCommand) -> anyhow::Result<()> {
    let SchemaCommand::Infer { file, target, name } = command;
    let name = match name {
        Some(given) => Some(PipelineName::new(given)?.as_str().to_owned()),
        None => name_from(&file),
    };
    let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let shown = file.display().to_string();
    let batches = mlops_data::open(mlops_data::Source::File(f), &shown, &mlops_data::Limits::default())?;
    let columns = mlops_data::infer(batches)?;
    if let Some(t) = &target
        && !columns.iter().any(|(c, _)| c == t)
    {
        anyhow::bail!("{shown} has no column `{t}` to take as the target");
    }
    print!("{}", mlops_data::spec_fragment(&columns, target.as_deref(), name.as_deref()));
    Ok(())
}

/// A pipeline name from a file's stem (`Credit-Data.csv` → `credit-data`), if it makes a valid one.
fn name_from(file: &Path) -> Option<String> {
    let stem = file.file_name()?.to_str()?.split('.').next()?.to_lowercase().replace(' ', "-");
    PipelineName::new(stem).ok().map(|n| n.as_str().to_owned())
}
