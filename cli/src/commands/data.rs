//! Data in: `mlops ingest` uploads a file as a dataset version and waits for the validator's
//! verdict, `mlops data` reads the ingest catalog (records, profiles, validation reports), and
//! `mlops sample` writes the bundled example data set.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mlops_cli::client::{self, Remote};
use mlops_cli::{sample, tables};

/// The arguments of `mlops ingest`.
#[derive(Args)]
pub(crate) struct IngestArgs {
    #[arg(long)]
    pipeline: String,
    file: PathBuf,
    /// `training`, or `serving` for serving-time data: the label may be absent, and it is
    /// validated and profiled but never trained on.
    #[arg(long, default_value = "training")]
    environment: String,
    /// Do not wait for the validator's verdict.
    #[arg(long)]
    no_wait: bool,
}

/// The subcommands of `mlops data`.
#[derive(Subcommand)]
pub(crate) enum DataCommand {
    /// List dataset versions.
    List {
        #[arg(long, default_value = "")]
        pipeline: String,
        /// Only `pending`, `accepted` or `rejected` versions.
        #[arg(long, default_value = "")]
        verdict: String,
    },
    /// A version's catalog record, its verdicts and its profile.
    Show {
        /// A dataset id, or a unique prefix of one (8 characters or more, as `data list` shows).
        dataset_id: String,
    },
    /// A version's validation report: a table of anomalies, and each feature's predictive power
    /// alone when the data has labels.
    Report {
        /// A dataset id, or a unique prefix of one (8 characters or more).
        dataset_id: String,
    },
    /// Validate a known version again under its pipeline's current spec (after fixing the spec),
    /// keeping its earlier verdicts, and wait for the new one; accepted training data trains.
    Revalidate {
        /// A dataset id, or a unique prefix of one (8 characters or more).
        dataset_id: String,
        /// The pipeline, when the same content was uploaded to more than one.
        #[arg(long, default_value = "")]
        pipeline: String,
        /// Do not wait for the verdict.
        #[arg(long)]
        no_wait: bool,
    },
    /// Erase a data subject ("right to be forgotten"): every version of the pipeline holding rows
    /// whose COLUMN is VALUE is written again without them, the old content deleted, models
    /// trained on it marked, and a retraining queued (`training.triggers.on: erasure`). The audit
    /// record keeps the value's keyed hash, never the value.
    Erase {
        #[arg(long)]
        pipeline: String,
        /// COLUMN=VALUE: a column the spec declares (`features` or `columns`) and the subject's
        /// value in it; COLUMN=- reads the value from stdin (kept out of shell history).
        #[arg(long, value_name = "COLUMN=VALUE")]
        key: String,
        /// Why (the request's reference, the legal ground); kept in the audit record.
        #[arg(long)]
        reason: String,
        /// Who asks; kept in the audit record (default: $USER).
        #[arg(long, env = "USER", default_value = "")]
        by: String,
    },
    /// The audit records of past erasures.
    Erasures {
        #[arg(long, default_value = "")]
        pipeline: String,
    },
}

/// The arguments of `mlops sample`.
#[derive(Args)]
pub(crate) struct SampleArgs {
    #[arg(long, default_value_t = 3000)]
    rows: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, value_enum, default_value = "normal")]
    variant: sample::Variant,
}

/// Uploads the file and, unless `--no-wait`, waits up to a minute for its verdict (an error when
/// rejected).
pub(crate) async fn ingest(args: IngestArgs, ingest: &Remote) -> anyhow::Result<()> {
    let IngestArgs { pipeline, file, environment, no_wait } = args;
    let header =
        mlops_proto::UploadHeader { pipeline, source: file.display().to_string(), environment, ..Default::default() };
    let ds = client::upload_file(ingest, header, &file).await?;
    if ds.duplicate {
        println!("dataset {} already known (verdict: {}); nothing new to do", ds.dataset_id, ds.verdict);
        return Ok(());
    }
    if ds.revalidating {
        println!("dataset {} already known, judged under an older spec: validating it again", ds.dataset_id);
    } else {
        println!("dataset {} ingested ({} bytes)", ds.dataset_id, ds.size_bytes);
    }
    if no_wait { Ok(()) } else { wait_for_verdict(ingest, &ds.dataset_id, &ds.pipeline).await }
}

/// Waits up to a minute for the verdict on a pending dataset of `pipeline`: an error when rejected.
async fn wait_for_verdict(ingest: &Remote, dataset_id: &str, pipeline: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = client::dataset_in(ingest, dataset_id, pipeline).await?;
        match d.verdict.as_str() {
            "accepted" => {
                println!("accepted: {} rows", d.rows);
                return Ok(());
            }
            "rejected" => anyhow::bail!("rejected: {}", d.verdict_detail),
            _ if tokio::time::Instant::now() > deadline => anyhow::bail!("no verdict within 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `mlops data revalidate`: a new round of validation of a known version.
async fn revalidate(ingest: &Remote, dataset_id: &str, pipeline: String, no_wait: bool) -> anyhow::Result<()> {
    let d = client::revalidate(ingest, dataset_id, pipeline).await?;
    println!("dataset {} of `{}`: validating it again under the current spec", d.dataset_id, d.pipeline);
    if no_wait { Ok(()) } else { wait_for_verdict(ingest, &d.dataset_id, &d.pipeline).await }
}

/// Runs one `mlops data` subcommand against the ingest catalog.
pub(crate) async fn run(command: DataCommand, ingest: &Remote) -> anyhow::Result<()> {
    match command {
        DataCommand::List { pipeline, verdict } => {
            mlops_cli::output::write(&tables::datasets(&client::datasets(ingest, &pipeline, &verdict).await?))?;
        }
        DataCommand::Show { dataset_id } => show(ingest, &dataset_id).await?,
        DataCommand::Revalidate { dataset_id, pipeline, no_wait } => {
            revalidate(ingest, &dataset_id, pipeline, no_wait).await?;
        }
        DataCommand::Erase { pipeline, key, reason, by } => {
            let Some((column, value)) = key.split_once('=') else {
                anyhow::bail!(
                    "--key: give COLUMN=VALUE, e.g. --key email=ada@example.org (or email=- to read the value from stdin)"
                );
            };
            let value = match value {
                // Kept out of the shell's history and the process list.
                "-" => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the value from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
                given => given.to_owned(),
            };
            let request =
                mlops_proto::EraseRequest { pipeline, column: column.trim().into(), value, reason, requested_by: by };
            let erased = client::erase(ingest, request).await?;
            print!("{}", tables::erasure(&erased));
        }
        DataCommand::Erasures { pipeline } => {
            mlops_cli::output::write(&tables::erasures(&client::erasures(ingest, &pipeline).await?))?;
        }
        DataCommand::Report { dataset_id } => {
            let d = client::dataset(ingest, &dataset_id).await?;
            println!(
                "dataset {} ({}): {}, {} rows",
                mlops_shared::ids::short(&d.dataset_id),
                d.pipeline,
                d.verdict,
                d.rows
            );
            print!("{}", tables::anomalies(&d.anomalies));
            print!("{}", d.profile.as_ref().map(|p| tables::power(&p.columns)).unwrap_or_default());
        }
    }
    Ok(())
}

/// `mlops data show`: the catalog record, then the schema and profile once there is one.
async fn show(ingest: &Remote, dataset_id: &str) -> anyhow::Result<()> {
    let d = client::dataset(ingest, dataset_id).await?;
    println!(
        "dataset   {}
pipeline  {}
source    {}
format    {}
bytes     {}
arrived   {} ({})",
        d.dataset_id, d.pipeline, d.source, d.format, d.size_bytes, d.arrived_unix_ms, d.environment
    );
    println!("origin    {}", d.origin);
    if let Some(f) = &d.feedback {
        println!("          {}", tables::feedback_origin(f));
    }
    println!(
        "verdict   {}{}",
        d.verdict,
        if d.verdict_detail.is_empty() { String::new() } else { format!(": {}", d.verdict_detail) }
    );
    if let Some(mark) = &d.erased {
        let successor = if mark.successor_id.is_empty() { "none (every row was erased)" } else { &mark.successor_id };
        println!(
            "erased    {} rows by {} at {}; content deleted; successor {successor}",
            mark.rows_removed, mark.erasure_id, mark.erased_unix_ms
        );
    }
    if !d.erased_from.is_empty() {
        println!("replaces  {} (an erasure wrote this version without a subject's rows)", d.erased_from);
    }
    for past in &d.history {
        let detail = if past.detail.is_empty() { String::new() } else { format!(": {}", past.detail) };
        let spec = mlops_shared::ids::short(&past.validation_hash);
        println!("  before  {} (round {}, spec checks {spec}){detail}", past.verdict, past.round);
    }
    match &d.profile {
        Some(p) => print!("\n{}\n{}", tables::schema(&p.schema), tables::profile(p)),
        None => println!("(no profile yet)"),
    }
    Ok(())
}

/// Writes the example churn data set as CSV to stdout.
/// Written through `output`, so a reader that stops early (`| head`) ends it quietly instead of
/// panicking.
pub(crate) fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let SampleArgs { rows, seed, variant } = args;
    mlops_cli::output::write(&sample::csv(rows, seed, variant))
}
