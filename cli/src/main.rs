//! `mlops`: run the platform, drive pipelines and inspect what happened. This file holds the
//! global options and the list of commands; each group's arguments and code live in `commands/`.

#![allow(clippy::print_stdout)] // the CLI talks to people on stdout

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::{
    data, deploy, events, features, models, monitor, object_store, pipeline, platform, predict, predictions, runs,
    schema, score, staleness,
};
use mlops_cli::environments::{Endpoints, Given};

#[derive(Parser)]
#[command(name = "mlops", version, about = "An event-driven MLOps platform: data in, models out, kept healthy")]
struct Cli {
    /// The platform to talk to, by its name in the environments file (`MLOPS_ENVIRONMENTS`, else
    /// ~/.config/mlops/environments.yaml), like a kubectl context; the flags below still win.
    #[arg(long = "env", global = true, env = "MLOPS_ENV", value_name = "NAME")]
    env: Option<String>,
    /// NATS server URL [default: nats://127.0.0.1:4222].
    #[arg(long, global = true, env = "MLOPS_NATS_URL")]
    nats_url: Option<String>,
    /// Registry gRPC endpoint [default: http://127.0.0.1:50051].
    #[arg(long, global = true, env = "MLOPS_REGISTRY_URL")]
    registry_url: Option<String>,
    /// Ingest gRPC endpoint [default: http://127.0.0.1:50052].
    #[arg(long, global = true, env = "MLOPS_INGEST_URL")]
    ingest_url: Option<String>,
    /// Deployer (OIP v2) endpoint [default: http://127.0.0.1:8080].
    #[arg(long, global = true, env = "MLOPS_DEPLOYER_URL")]
    deployer_url: Option<String>,
    /// Evaluator gRPC endpoint [default: http://127.0.0.1:9103].
    #[arg(long, global = true, env = "MLOPS_EVALUATOR_URL")]
    evaluator_url: Option<String>,
    /// Monitor gRPC endpoint [default: http://127.0.0.1:9104].
    #[arg(long, global = true, env = "MLOPS_MONITOR_URL")]
    monitor_url: Option<String>,
    /// The bearer token for mutating calls, when the services require one.
    #[arg(long, global = true, env = "MLOPS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// PEM CA certificates to trust for https:// service URLs (default: the system's roots).
    #[arg(long, global = true, env = "MLOPS_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Where the platform keeps its blobs, when not in NATS (s3://, gs://, az://, file://): the
    /// services' MLOPS_OBJECT_STORE, for the commands that read datasets and artifacts.
    #[arg(long, global = true, env = "MLOPS_OBJECT_STORE")]
    object_store: Option<String>,
    /// On an error, also print where it arose: its backtrace, captured when RUST_BACKTRACE=1.
    #[arg(long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start nats-server (when none answers at --nats-url) and the seven services; Ctrl-C stops all.
    Up(platform::UpArgs),
    /// Run the whole cascade on the bundled example, narrated, and exit.
    Demo(platform::DemoArgs),
    /// Pipelines.
    Pipeline {
        #[command(subcommand)]
        command: pipeline::PipelineCommand,
    },
    /// Upload a CSV as a new dataset version of a pipeline.
    Ingest(data::IngestArgs),
    /// Dataset versions: the catalog, profiles and validation reports.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Dataset schemas.
    Schema {
        #[command(subcommand)]
        command: schema::SchemaCommand,
    },
    /// Model versions.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Train a pipeline now, on its training window (a manual trigger), and wait for the model.
    Train(runs::TrainArgs),
    /// Retrain PIPELINE@VERSION from its lineage alone and say whether the artifact is identical,
    /// bit for bit (exit status 1 when not), and if not, what differs.
    Reproduce(runs::ReproduceArgs),
    /// The web dashboard (served by the monitor): print its address, and open it with --open.
    Ui(monitor::UiArgs),
    /// Production monitoring: drift windows, label quality and alerts.
    Monitor {
        #[command(subcommand)]
        command: monitor::MonitorCommand,
    },
    /// How quality falls with a model's age: the last production versions on the newest
    /// validated data, and the retraining cadence that keeps the loss within tolerance.
    Staleness(staleness::StalenessArgs),
    /// Training runs: their records, and their progress live.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// Predict one row (a JSON object) or several (a JSON array of objects).
    Predict(predict::PredictArgs),
    /// The prediction archive: one prediction by id, a time range exported, expired partitions.
    Predictions {
        #[command(subcommand)]
        command: predictions::PredictionsCommand,
    },
    /// Score a whole file with the model in production (or --version), written as Parquet.
    Score(score::ScoreArgs),
    /// Feature views: apply, list, an entity's history and current values, training sets.
    Features {
        #[command(subcommand)]
        command: features::FeaturesCommand,
    },
    /// Events on the bus.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Serve the previous version of a pipeline again.
    Rollback(deploy::RollbackArgs),
    /// What each pipeline serves, and any canary or shadow release in progress.
    Deployments,
    /// Serve PIPELINE@VERSION to all traffic now and make it `production` (a blocked version is refused).
    Deploy(deploy::DeployArgs),
    /// Change a running canary's share of traffic: 0 rolls it back, 100 promotes it.
    Traffic(deploy::TrafficArgs),
    /// Where the platform keeps its blobs (every service agreed on one), or --set a new store.
    ObjectStore(object_store::ObjectStoreArgs),
    /// Write the example churn data set as CSV to stdout.
    Sample(data::SampleArgs),
}

/// Runs the command. An error is one sentence on stderr (`error: ` and its chain of causes) and
/// exit status 1: an unknown id or a missing file is the user's to fix, so no backtrace is
/// printed, whatever RUST_BACKTRACE says, unless `--verbose` asks for it. Panics keep theirs.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`mlops sample | head`): a normal end, as for `cat`.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_report(&e, verbose));
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is stdout's reader going away (not any other closed pipe).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<mlops_cli::output::StdoutClosed>().is_some()
}

/// `error: ` and the error with its causes (anyhow's `{:#}`); with `verbose`, its backtrace after.
fn error_report(e: &anyhow::Error, verbose: bool) -> String {
    let mut report = format!("error: {e:#}");
    if verbose {
        use std::backtrace::BacktraceStatus;
        match e.backtrace().status() {
            BacktraceStatus::Captured => report.push_str(&format!("\n\nbacktrace:\n{}", e.backtrace())),
            _ => report.push_str("\n(no backtrace was captured: run with RUST_BACKTRACE=1 as well)"),
        }
    }
    report
}

/// Runs the command `cli` names.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        env,
        nats_url,
        registry_url,
        ingest_url,
        deployer_url,
        evaluator_url,
        monitor_url,
        admin_token,
        tls_ca,
        object_store,
        verbose: _,
        command,
    } = cli;
    let given = Given {
        nats_url,
        registry_url,
        ingest_url,
        deployer_url,
        evaluator_url,
        monitor_url,
        admin_token,
        tls_ca,
        object_store,
    };
    let environment = env.as_deref().map(mlops_cli::environments::load).transpose()?;
    let ep = Endpoints::resolve(given, environment.as_ref());
    let (nats_url, token, tls_ca) = (ep.nats_url.as_str(), ep.admin_token.as_deref(), ep.tls_ca.as_deref());
    let (registry, ingest, deployer, evaluator, monitor) =
        (&ep.registry, &ep.ingest, &ep.deployer, &ep.evaluator, &ep.monitor);
    match command {
        Command::Up(args) => platform::up(args, nats_url, tls_ca).await,
        Command::Demo(args) => platform::demo(args, tls_ca).await,
        Command::Pipeline { command } => pipeline::run(command, &ep).await,
        Command::Ingest(args) => data::ingest(args, ingest).await,
        Command::Data { command } => data::run(command, ingest).await,
        Command::Schema { command } => schema::run(command),
        Command::Models { command } => models::run(command, registry, ingest, token).await,
        Command::Train(args) => runs::train(args, &ep.nats()).await,
        Command::Reproduce(args) => runs::reproduce(args, &ep.nats(), registry).await,
        Command::Ui(args) => monitor::ui(args, monitor).await,
        Command::Monitor { command } => monitor::run(command, monitor).await,
        Command::Staleness(args) => staleness::run(args, evaluator).await,
        Command::Runs { command } => runs::run(command, &ep.nats()).await,
        Command::Predict(args) => predict::run(args, deployer).await,
        Command::Predictions { command } => predictions::run(command, &ep.nats(), registry).await,
        Command::Score(args) => score::run(args, &ep.nats(), registry).await,
        Command::Events { command } => events::run(command, &ep.nats()).await,
        Command::Features { command } => features::run(command, &ep).await,
        Command::Rollback(args) => deploy::rollback(args, deployer, token).await,
        Command::Deployments => deploy::deployments(deployer).await,
        Command::Deploy(args) => deploy::deploy(args, deployer, token).await,
        Command::Traffic(args) => deploy::traffic(args, deployer, token).await,
        Command::ObjectStore(args) => object_store::run(args, &ep.nats()).await,
        Command::Sample(args) => data::sample(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use clap::error::ErrorKind;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_a_description_of_its_own() {
        fn check(cmd: &clap::Command, path: &str) {
            let mut seen = std::collections::BTreeMap::new();
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let at = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
                assert!(!about.trim().is_empty(), "`{at}` has no description");
                if let Some(other) = seen.insert(about.clone(), at.clone()) {
                    panic!("`{at}` and `{other}` share the description {about:?}");
                }
                check(sub, &at);
            }
        }
        check(&Cli::command(), "mlops");
    }

    #[test]
    fn every_pipeline_at_version_argument_is_parsed_as_a_model_ref() {
        let commands: [&[&str]; 10] = [
            &["models", "tag", "T", "team=growth"],
            &["models", "describe", "T", "text"],
            &["models", "show", "T"],
            &["models", "lineage", "T"],
            &["models", "alias", "T", "champion"],
            &["models", "approve", "T", "--reason", "r"],
            &["models", "block", "T", "--reason", "r"],
            &["models", "card", "T"],
            &["reproduce", "T"],
            &["deploy", "T"],
        ];
        for args in commands {
            let with = |target: &str| {
                let args = args.iter().map(|a| if *a == "T" { target } else { a });
                Cli::try_parse_from(std::iter::once("mlops").chain(args))
            };
            assert!(with("churn@2").is_ok(), "{args:?}");
            let e = with("churn").err().unwrap_or_else(|| panic!("{args:?} took `churn`"));
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args:?}: {e}");
            assert!(e.to_string().contains("expected PIPELINE@VERSION"), "{args:?}: {e}");
        }
    }
}
