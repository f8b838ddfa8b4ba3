//! Training: `mlops train` asks for a run and waits for its model, `mlops runs` lists and follows
//! run records, and `mlops reproduce` retrains a version from its lineage to check it is identical.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mlops_cli::client::Remote;
use mlops_cli::model_ref::ModelRef;
use mlops_shared::bus::Bus;
use mlops_shared::config::NatsArgs;
use mlops_shared::runs::{Run, RunState, Runs};

/// The arguments of `mlops train`.
#[derive(Args)]
pub(crate) struct TrainArgs {
    #[arg(long)]
    pipeline: String,
    /// Who asks (kept with the run).
    #[arg(long, env = "USER", default_value = "mlops-cli")]
    by: String,
    /// Do not wait for the model.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// The arguments of `mlops reproduce`.
#[derive(Args)]
pub(crate) struct ReproduceArgs {
    /// e.g. `churn@3`.
    target: ModelRef,
}

/// The subcommands of `mlops runs`.
#[derive(Subcommand)]
pub(crate) enum RunsCommand {
    /// Training runs, newest first: why each ran, where it is, what it made.
    List {
        #[arg(long)]
        pipeline: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run in full: its record and, for a code step, what its program printed.
    Show {
        /// A job id, or a unique prefix of one (8 characters or more).
        job: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Follow training runs with a progress bar each, until Ctrl-C; with `--job`, until it ends.
    Watch {
        #[arg(long)]
        pipeline: Option<String>,
        /// A job id, or a unique prefix of one (8 characters or more).
        #[arg(long)]
        job: Option<String>,
    },
}

/// Publishes `train.requested` and, unless `--no-wait`, waits for the model it makes.
pub(crate) async fn train(args: TrainArgs, nats: &NatsArgs) -> anyhow::Result<()> {
    let TrainArgs { pipeline, by, no_wait, timeout } = args;
    let timeout = Duration::from_secs(timeout);
    let (bus, runs) = connect_runs(nats).await?;
    let request_id = format!("{}-{}", mlops_shared::ids::PipelineName::new(&pipeline)?, mlops_shared::now_unix_ms());
    let job_id = format!("{pipeline}-manual-{request_id}");
    let ctx = mlops_shared::events::EventContext::new_run(format!("run-{request_id}"));
    let request =
        mlops_proto::TrainRequested { pipeline: pipeline.clone(), requested_by: by, request_id: request_id.clone() };
    bus.publish(&format!("train-requested-{request_id}"), &ctx, &request).await?;
    println!("training requested: job {job_id}");
    if no_wait {
        return Ok(());
    }
    // The record is read at once and every few seconds, so progress sent before the watch
    // subscribed is not needed.
    let watched = mlops_cli::runs::watch(&bus.client, &runs, Some(&pipeline), Some(&job_id));
    match tokio::time::timeout(timeout, watched).await {
        Ok(Ok(Some(run))) => exit_for(&run),
        Ok(Ok(None)) => Ok(()), // interrupted
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!(
            "no model from job {job_id} within {timeout:?} (is a trainer running, and has `{pipeline}` accepted data?)"
        ),
    }
}

/// Retrains the version from its lineage and prints the comparison; exits with status 1 when
/// the artifact differs.
pub(crate) async fn reproduce(args: ReproduceArgs, nats: &NatsArgs, registry: &Remote) -> anyhow::Result<()> {
    let (bus, _) = connect_runs(nats).await?;
    let found = mlops_cli::reproduce::reproduce(registry, &bus, &args.target).await?;
    print!("{}", found.report());
    if !found.identical() {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs one `mlops runs` subcommand on the run records in the `jobs` bucket.
pub(crate) async fn run(command: RunsCommand, nats: &NatsArgs) -> anyhow::Result<()> {
    let (bus, runs) = connect_runs(nats).await?;
    match command {
        RunsCommand::List { pipeline, limit, json } => {
            let mut list = runs.list().await?;
            list.retain(|r| pipeline.as_deref().is_none_or(|p| r.pipeline == p));
            list.truncate(limit);
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", mlops_cli::runs::table(&list));
            }
            Ok(())
        }
        RunsCommand::Show { job, json } => {
            let job = resolve_job(&runs, &job).await?;
            let run = runs.get(&job).await?.with_context(|| format!("no run {job}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print!("{}", mlops_cli::runs::details(&run));
            }
            Ok(())
        }
        RunsCommand::Watch { pipeline, job } => {
            let job = match job {
                Some(j) => Some(resolve_job(&runs, &j).await?),
                None => None,
            };
            if let Some(j) = &job
                && let Some(run) = runs.get(j).await?.filter(|r| r.state.is_final())
            {
                println!("{}", mlops_cli::runs::outcome(&run));
                return exit_for(&run);
            }
            match mlops_cli::runs::watch(&bus.client, &runs, pipeline.as_deref(), job.as_deref()).await? {
                Some(run) => exit_for(&run),
                None => Ok(()),
            }
        }
    }
}

/// The job a `--job` id or prefix names. A prefix that matches no run is kept as given: the job
/// may not have started yet, and watching waits for it.
async fn resolve_job(runs: &Runs, given: &str) -> anyhow::Result<String> {
    let list = runs.list().await?;
    match mlops_shared::ids::resolve_prefix("job", given, list.iter().map(|r| r.job_id.as_str())) {
        Ok(full) => Ok(full),
        Err(mlops_shared::ids::PrefixError::NotFound { .. }) => Ok(given.to_owned()),
        Err(e) => Err(e.into()),
    }
}

/// Connects for reading run records and progress.
pub(crate) async fn connect_runs(nats: &NatsArgs) -> anyhow::Result<(Bus, Runs)> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus =
        Bus::connect(nats, "mlops-cli", &shutdown).await.with_context(|| format!("connecting to {}", nats.url))?;
    let runs = Runs::open(&bus).await?;
    Ok((bus, runs))
}

/// Success for a run that made a model; an error naming why otherwise.
fn exit_for(run: &Run) -> anyhow::Result<()> {
    if run.state == RunState::Succeeded { Ok(()) } else { anyhow::bail!("{}", mlops_cli::runs::outcome(run)) }
}
