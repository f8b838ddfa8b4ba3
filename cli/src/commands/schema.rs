//! `mlops schema`: a spec's schema fragment inferred from a local data file, read with
//! `mlops_data` as the validator and trainer read datasets (nothing is uploaded).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

/// The subcommands of `mlops schema`.
#[derive(Subcommand)]
pub(crate) enum SchemaCommand {
    /// Print a spec fragment (types, bounds, categories, nullability) inferred from a data file.
    Infer {
        file: PathBuf,
        /// The label column, written as the spec's `target`.
        #[arg(long)]
        target: Option<String>,
    },
}

/// Runs one `mlops schema` subcommand.
pub(crate) fn run(command: SchemaCommand) -> anyhow::Result<()> {
    let SchemaCommand::Infer { file, target } = command;
    let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let name = file.display().to_string();
    let batches = mlops_data::open(mlops_data::Source::File(f), &name, &mlops_data::Limits::default())?;
    let columns = mlops_data::infer(batches)?;
    print!("{}", mlops_data::spec_fragment(&columns, target.as_deref()));
    Ok(())
}
