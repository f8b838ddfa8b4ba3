//! `mlops`: run the platform, drive pipelines and inspect what happened.

#![allow(clippy::print_stdout)] // the CLI talks to people on stdout

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use mlops_cli::stack::{Stack, StackOptions};
use mlops_cli::{client, demo, events, sample, tables};
use mlops_shared::config::with_token;

#[derive(Parser)]
#[command(name = "mlops", version, about = "An event-driven MLOps platform: data in, models out, kept healthy")]
struct Cli {
    /// NATS server URL.
    #[arg(long, global = true, env = "MLOPS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Registry gRPC endpoint.
    #[arg(long, global = true, env = "MLOPS_REGISTRY_URL", default_value = "http://127.0.0.1:50051")]
    registry_url: String,
    /// Ingest gRPC endpoint.
    #[arg(long, global = true, env = "MLOPS_INGEST_URL", default_value = "http://127.0.0.1:50052")]
    ingest_url: String,
    /// Deployer (OIP v2) endpoint.
    #[arg(long, global = true, env = "MLOPS_DEPLOYER_URL", default_value = "http://127.0.0.1:8080")]
    deployer_url: String,
    /// Monitor gRPC endpoint.
    #[arg(long, global = true, env = "MLOPS_MONITOR_URL", default_value = "http://127.0.0.1:9104")]
    monitor_url: String,
    /// The bearer token for mutating calls, when the services require one.
    #[arg(long, global = true, env = "MLOPS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// PEM CA certificates to trust for https:// service URLs (default: the system's roots).
    #[arg(long, global = true, env = "MLOPS_TLS_CA")]
    tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum MonitorCommand {
    /// The newest drift windows (each feature's test, score and verdict), the quality on delayed
    /// labels, and the alert history of PIPELINE.
    Report {
        pipeline: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Start nats-server (when none answers at --nats-url) and the seven services; Ctrl-C stops all.
    Up {
        /// Where services keep their data.
        #[arg(long, default_value = ".mlops")]
        data_dir: PathBuf,
    },
    /// Run the whole cascade on the bundled example, narrated, and exit.
    Demo {
        /// A CSV to use instead of the generated churn sample.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Leave the platform running afterwards (until Ctrl-C).
        #[arg(long)]
        keep_running: bool,
    },
    /// Pipelines.
    Pipeline {
        #[command(subcommand)]
        command: PipelineCommand,
    },
    /// Upload a CSV as a new dataset version of a pipeline.
    Ingest {
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
    },
    /// Dataset versions: the catalog, profiles and validation reports.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Dataset schemas.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Model versions.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Train a pipeline now, on its training window (a manual trigger), and wait for the model.
    Train {
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
    },
    /// Retrain PIPELINE@VERSION from its lineage alone and say whether the artifact is identical,
    /// bit for bit (exit status 1 when not), and if not, what differs.
    Reproduce {
        /// e.g. `churn@3`.
        target: String,
    },
    /// How quality falls with a model's age: the last production versions on the newest
    /// validated data, and the retraining cadence that keeps the loss within tolerance.
    /// The web dashboard (served by the monitor): print its address, and open it with --open.
    Ui {
        /// Open it in the desktop's browser (`xdg-open`).
        #[arg(long)]
        open: bool,
    },
    /// Production monitoring: drift windows, label quality and alerts.
    Monitor {
        #[command(subcommand)]
        command: MonitorCommand,
    },
    Staleness {
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
    },
    /// Training runs: their records, and their progress live.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Predict one row (a JSON object) or several (a JSON array of objects).
    Predict {
        #[arg(long)]
        pipeline: String,
        #[arg(long)]
        json: String,
    },
    /// Events on the bus.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Serve the previous version of a pipeline again.
    Rollback {
        pipeline: String,
        #[arg(long, default_value = "manual rollback")]
        reason: String,
    },
    /// What each pipeline serves, and any canary or shadow release in progress.
    Deployments,
    /// Serve PIPELINE@VERSION to all traffic now and make it `production` (a blocked version is refused).
    Deploy {
        target: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Change a running canary's share of traffic: 0 rolls it back, 100 promotes it.
    Traffic {
        pipeline: String,
        #[arg(long)]
        canary: f64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Write the example churn data set as CSV to stdout.
    Sample {
        #[arg(long, default_value_t = 3000)]
        rows: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, value_enum, default_value = "normal")]
        variant: sample::Variant,
    },
}

#[derive(Subcommand)]
enum PipelineCommand {
    /// Create or update a pipeline from its YAML spec.
    Apply { file: PathBuf },
    /// List pipelines.
    List,
}

#[derive(Subcommand)]
enum DataCommand {
    /// List dataset versions.
    List {
        #[arg(long, default_value = "")]
        pipeline: String,
        /// Only `pending`, `accepted` or `rejected` versions.
        #[arg(long, default_value = "")]
        verdict: String,
    },
    /// A version's catalog record and profile.
    Show { dataset_id: String },
    /// A version's validation report: a table of anomalies.
    Report { dataset_id: String },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print a spec fragment (types, bounds, categories, nullability) inferred from a data file.
    Infer {
        file: PathBuf,
        /// The label column, written as the spec's `target`.
        #[arg(long)]
        target: Option<String>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List a pipeline's model versions, or search them by tag and metric.
    List {
        #[arg(long)]
        pipeline: String,
        /// Only versions tagged KEY=VALUE (repeatable; all must hold).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Only versions whose holdout metric meets a condition, e.g. `roc_auc>=0.8` (repeatable).
        #[arg(long = "metric", value_name = "CONDITION")]
        metrics: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set tags (KEY=VALUE) on a version, or remove them; audited.
    Tag {
        target: String,
        #[arg(value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Tag names to remove (repeatable).
        #[arg(long = "remove", value_name = "KEY")]
        remove: Vec<String>,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// Set a version's description; audited.
    Describe {
        target: String,
        text: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// One version: artifact, aliases, metrics, gate checks and lineage (JSON).
    Show {
        /// PIPELINE@VERSION, e.g. `churn@3`.
        target: String,
    },
    /// What made a version: datasets, spec, seed, code version, job, trainer and reason.
    Lineage { target: String },
    /// Every model version (of any pipeline) trained on a dataset.
    UsedBy { dataset_id: String },
    /// Point an alias (e.g. `candidate`, `production`, `champion-eu`) at a version; audited.
    Alias {
        target: String,
        alias: String,
        #[arg(long, default_value = "set by hand")]
        reason: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// A pipeline's audit log: every change, when, why and what caused it.
    Audit { pipeline: String },
    /// Approve a version whatever its gates said, with a reason; audited. The deployer promotes it.
    Approve {
        target: String,
        #[arg(long)]
        reason: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// Block a version with a reason; audited. It can never become `production`, and a deployer
    /// serving it rolls back to `previous`.
    Block {
        target: String,
        #[arg(long)]
        reason: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// A model card: metrics, slices, gate decision, lineage and a data profile summary.
    Card {
        target: String,
        /// HTML instead of Markdown.
        #[arg(long)]
        html: bool,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
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
    /// Follow training runs with a progress bar each, until Ctrl-C; with `--job`, until it ends.
    Watch {
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        job: Option<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print events as they happen.
    Tail {
        /// Subject filter.
        #[arg(default_value = "mlops.events.>")]
        subject: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(ca) = &cli.tls_ca {
        mlops_shared::tls::trust_ca(ca.clone());
    }
    match cli.command {
        Command::Up { data_dir } => up(&cli.nats_url, data_dir).await,
        Command::Demo { data, keep_running } => {
            let dir = if keep_running {
                PathBuf::from(".mlops/demo")
            } else {
                std::env::temp_dir().join(format!("mlops-demo-{}", std::process::id()))
            };
            let _ = std::fs::remove_dir_all(&dir);
            let outcome = demo::run(data, dir.clone(), keep_running).await;
            if !keep_running && outcome.is_ok() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let outcome = outcome?;
            println!(
                "✔ demo finished: model v{} served {} ms after its data arrived",
                outcome.version,
                outcome.arrival_to_serving.as_millis()
            );
            Ok(())
        }
        Command::Pipeline { command: PipelineCommand::Apply { file } } => {
            let yaml = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let p = client::apply_pipeline_as(&cli.registry_url, &yaml, cli.admin_token.as_deref()).await?;
            println!(
                "pipeline {} applied: revision {}, spec {}",
                p.name,
                p.revision,
                mlops_shared::ids::short(&p.spec_hash)
            );
            Ok(())
        }
        Command::Pipeline { command: PipelineCommand::List } => {
            let mut c = client::registry(&cli.registry_url).await?;
            let list = c.list_pipelines(mlops_proto::ListPipelinesRequest {}).await?.into_inner();
            for p in list.pipelines {
                println!("{:<24} revision {:<4} spec {}", p.name, p.revision, mlops_shared::ids::short(&p.spec_hash));
            }
            Ok(())
        }
        Command::Ingest { pipeline, file, environment, no_wait } => {
            let header = mlops_proto::UploadHeader {
                pipeline,
                source: file.display().to_string(),
                environment,
                ..Default::default()
            };
            let ds = client::upload_file(&cli.ingest_url, header, &file).await?;
            if ds.duplicate {
                println!("dataset {} already known (verdict: {}); nothing new to do", ds.dataset_id, ds.verdict);
                return Ok(());
            }
            println!("dataset {} ingested ({} bytes)", ds.dataset_id, ds.size_bytes);
            if no_wait {
                return Ok(());
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let d = client::dataset(&cli.ingest_url, &ds.dataset_id).await?;
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
        Command::Data { command } => {
            match command {
                DataCommand::List { pipeline, verdict } => {
                    print!("{}", tables::datasets(&client::datasets(&cli.ingest_url, &pipeline, &verdict).await?));
                }
                DataCommand::Show { dataset_id } => {
                    let d = client::dataset(&cli.ingest_url, &dataset_id).await?;
                    println!(
                        "dataset   {}
pipeline  {}
source    {}
format    {}
bytes     {}
arrived   {} ({})",
                        d.dataset_id, d.pipeline, d.source, d.format, d.size_bytes, d.arrived_unix_ms, d.environment
                    );
                    println!(
                        "verdict   {}{}",
                        d.verdict,
                        if d.verdict_detail.is_empty() { String::new() } else { format!(": {}", d.verdict_detail) }
                    );
                    match &d.profile {
                        Some(p) => print!("\n{}\n{}", tables::schema(&p.schema), tables::profile(p)),
                        None => println!("(no profile yet)"),
                    }
                }
                DataCommand::Report { dataset_id } => {
                    let d = client::dataset(&cli.ingest_url, &dataset_id).await?;
                    println!(
                        "dataset {} ({}): {}, {} rows",
                        mlops_shared::ids::short(&d.dataset_id),
                        d.pipeline,
                        d.verdict,
                        d.rows
                    );
                    print!("{}", tables::anomalies(&d.anomalies));
                }
            }
            Ok(())
        }
        Command::Schema { command: SchemaCommand::Infer { file, target } } => {
            let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let name = file.display().to_string();
            let batches = mlops_data::open(mlops_data::Source::File(f), &name, &mlops_data::Limits::default())?;
            let columns = mlops_data::infer(batches)?;
            print!("{}", mlops_data::spec_fragment(&columns, target.as_deref()));
            Ok(())
        }
        Command::Models { command: ModelsCommand::Show { target } } => {
            let v = model_version(&cli.registry_url, &target).await?;
            println!("{}", serde_json::to_string_pretty(&version_json(&v))?);
            Ok(())
        }
        Command::Models { command: ModelsCommand::Lineage { target } } => {
            let v = model_version(&cli.registry_url, &target).await?;
            let l = v.lineage.unwrap_or_default();
            println!("{}@{} artifact {}", v.pipeline, v.version, v.artifact_sha256);
            println!("  reason      {}", mlops_shared::runs::reason_name(l.reason));
            println!("  job         {} (trainer {})", l.job_id, l.trainer_id);
            println!("  spec        {}", l.spec_hash);
            println!("  seed        {}", l.seed);
            println!("  code        {}", l.code_version);
            println!("  datasets    {} (oldest first)", l.dataset_ids.len());
            for d in &l.dataset_ids {
                println!("    {d}");
            }
            Ok(())
        }
        Command::Models { command: ModelsCommand::Tag { target, tags, remove, by } } => {
            let (pipeline, version) = mlops_cli::reproduce::parse_target(&target)?;
            let set_tags = tags.iter().map(|t| key_value(t)).collect::<anyhow::Result<_>>()?;
            let request = mlops_proto::UpdateModelVersionRequest {
                pipeline,
                version,
                set_tags,
                remove_tags: remove,
                description: None,
                by,
            };
            let v = update_model(&cli.registry_url, request, cli.admin_token.as_deref()).await?;
            let tags: std::collections::BTreeMap<_, _> = v.tags.iter().collect();
            let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{}@{} tags: {}", v.pipeline, v.version, tags.join(", "));
            Ok(())
        }
        Command::Models { command: ModelsCommand::Describe { target, text, by } } => {
            let (pipeline, version) = mlops_cli::reproduce::parse_target(&target)?;
            let request = mlops_proto::UpdateModelVersionRequest {
                pipeline,
                version,
                description: Some(text),
                by,
                ..Default::default()
            };
            let v = update_model(&cli.registry_url, request, cli.admin_token.as_deref()).await?;
            println!("{}@{}: {}", v.pipeline, v.version, v.description);
            Ok(())
        }
        Command::Models { command: ModelsCommand::UsedBy { dataset_id } } => {
            let mut registry = client::registry(&cli.registry_url).await?;
            let versions = registry
                .models_using_dataset(mlops_proto::ModelsUsingDatasetRequest { dataset_id: dataset_id.clone() })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .versions;
            if versions.is_empty() {
                println!("no model version was trained on {dataset_id}");
            }
            for v in versions {
                println!(
                    "{}@{} artifact {} aliases [{}]",
                    v.pipeline,
                    v.version,
                    mlops_shared::ids::short(&v.artifact_sha256),
                    v.aliases.join(",")
                );
            }
            Ok(())
        }
        Command::Models { command: ModelsCommand::Alias { target, alias, reason, by } } => {
            let (pipeline, version) = mlops_cli::reproduce::parse_target(&target)?;
            let mut registry = client::registry(&cli.registry_url).await?;
            let v = registry
                .set_alias(with_token(
                    mlops_proto::SetAliasRequest { pipeline, alias: alias.clone(), version, reason, by },
                    cli.admin_token.as_deref(),
                ))
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            println!("{}@{} is now `{alias}` (aliases: {})", v.pipeline, v.version, v.aliases.join(", "));
            Ok(())
        }
        Command::Models { command: ModelsCommand::Approve { target, reason, by } } => {
            decide(&cli.registry_url, &target, "approve", reason, by, cli.admin_token.as_deref()).await
        }
        Command::Models { command: ModelsCommand::Block { target, reason, by } } => {
            decide(&cli.registry_url, &target, "block", reason, by, cli.admin_token.as_deref()).await
        }
        Command::Models { command: ModelsCommand::Card { target, html, out } } => {
            let version = model_version(&cli.registry_url, &target).await?;
            let hash = version.lineage.as_ref().map(|l| l.spec_hash.clone()).unwrap_or_default();
            let mut registry = client::registry(&cli.registry_url).await?;
            let pipeline = registry
                .get_pipeline(mlops_proto::GetPipelineRequest { name: version.pipeline.clone(), spec_hash: hash })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            let spec = mlops_shared::spec::PipelineSpec::from_yaml(&pipeline.spec_yaml)?;
            let mut datasets = Vec::new();
            for id in version.lineage.iter().flat_map(|l| &l.dataset_ids) {
                // The catalog adds rows, arrival and profile; the card still renders without it.
                if let Ok(d) = client::dataset(&cli.ingest_url, id).await {
                    datasets.push(d);
                }
            }
            let card = mlops_cli::card::Card::new(&mlops_cli::card::CardInput { version, spec, datasets });
            let text = if html { card.html() } else { card.markdown() };
            match out {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Ui { open } => {
            let url = format!("{}/ui", cli.monitor_url.trim_end_matches('/'));
            // Check it answers, so a wrong address is said now rather than in the browser.
            let answer = client::http_client()?.get(&url).send().await;
            match answer {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => anyhow::bail!("{url} answered {}: is --monitor-url the monitor?", r.status()),
                Err(e) => {
                    anyhow::bail!("the dashboard at {url} does not answer ({e}); is the platform up (`mlops up`)?")
                }
            }
            println!("{url}");
            if open {
                std::process::Command::new("xdg-open")
                    .arg(&url)
                    .status()
                    .context("opening a browser with xdg-open; open the address above by hand")?;
            }
            Ok(())
        }
        Command::Monitor { command: MonitorCommand::Report { pipeline, json } } => {
            let report = client::monitor_report(&cli.monitor_url, &pipeline).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tables::monitor_report_json(&report))?);
            } else {
                print!("{}", tables::monitor_report(&report));
            }
            Ok(())
        }
        Command::Staleness { pipeline, versions, tolerance, json } => {
            let (bus, _) = connect_runs(&cli.nats_url).await?;
            let evaluator = mlops_evaluator::Evaluator::open(&bus, &cli.registry_url).await?;
            let request = mlops_evaluator::staleness::Request { pipeline, versions, tolerance };
            let report = evaluator.staleness(&request).await.map_err(|e| match e {
                mlops_shared::bus::HandlerError::Permanent(why) => anyhow::anyhow!("{why}"),
                other => anyhow::anyhow!("{other}"),
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", tables::staleness(&report));
            }
            Ok(())
        }
        Command::Models { command: ModelsCommand::Audit { pipeline } } => {
            let mut registry = client::registry(&cli.registry_url).await?;
            let entries = registry
                .list_audit(mlops_proto::ListAuditRequest { pipeline })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .entries;
            println!("{:<24} {:<18} {:<40} CAUSE", "TIME (UTC)", "ACTION", "DETAIL");
            for e in entries {
                let time = chrono::DateTime::from_timestamp_millis(e.time_unix_ms)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                    .unwrap_or_default();
                println!("{time:<24} {:<18} {:<40} {}", e.action, e.detail, e.cause);
            }
            Ok(())
        }
        Command::Models { command: ModelsCommand::List { pipeline, tags, metrics, json } } => {
            let tags = tags.iter().map(|t| key_value(t)).collect::<anyhow::Result<_>>()?;
            let versions = client::search_models(&cli.registry_url, &pipeline, tags, metrics).await?;
            if json {
                let out: Vec<serde_json::Value> = versions.iter().map(version_json).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<8} {:<14} {:<16} {:<9} {:<22} DATASETS",
                    "VERSION", "ARTIFACT", "METRIC", "GATE", "ALIASES"
                );
                for v in versions {
                    let metric = v
                        .holdout_metrics
                        .as_ref()
                        .and_then(|m| mlops_shared::scoring::headline(|k| m.values.get(k).copied()))
                        .map_or_else(|| "-".to_owned(), |(name, value)| format!("{name} {value:.4}"));
                    let ds = v
                        .lineage
                        .as_ref()
                        .map(|l| {
                            l.dataset_ids
                                .iter()
                                .map(|d| mlops_shared::ids::short(d).to_owned())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    println!(
                        "{:<8} {:<14} {:<16} {:<9} {:<22} {}",
                        v.version,
                        mlops_shared::ids::short(&v.artifact_sha256),
                        metric,
                        v.gate,
                        v.aliases.join(","),
                        ds
                    );
                }
            }
            Ok(())
        }
        Command::Train { pipeline, by, no_wait, timeout } => {
            train(&cli.nats_url, &pipeline, &by, no_wait, Duration::from_secs(timeout)).await
        }
        Command::Predict { pipeline, json } => {
            let rows: serde_json::Value = serde_json::from_str(&json).context("--json is not valid JSON")?;
            let body = client::predict(&cli.deployer_url, &pipeline, &rows).await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        Command::Events { command: EventsCommand::Tail { subject } } => {
            let nats = async_nats::connect(mlops_shared::bus::server_addrs(&cli.nats_url)?)
                .await
                .with_context(|| format!("connecting to {}", cli.nats_url))?;
            let mut sub = nats.subscribe(subject.clone()).await?;
            eprintln!("listening on {subject} (Ctrl-C to stop)");
            while let Some(msg) = sub.next().await {
                let seen = events::decode(&msg.subject, &msg.payload);
                let time =
                    msg.headers.as_ref().and_then(|h| h.get("ce-time")).map(|v| v.to_string()).unwrap_or_default();
                println!("{time} {:<24} {:<10} {}", seen.kind, seen.pipeline, seen.summary);
            }
            Ok(())
        }
        Command::Rollback { pipeline, reason } => {
            let mut c = client::deployer(&cli.deployer_url).await?;
            let d = c
                .rollback(with_token(mlops_proto::RollbackRequest { pipeline, reason }, cli.admin_token.as_deref()))
                .await
                .map_err(|s| anyhow::anyhow!("rollback: {}", s.message()))?
                .into_inner();
            println!("{} now serves v{} ({})", d.pipeline, d.version, mlops_shared::ids::short(&d.artifact_sha256));
            Ok(())
        }
        Command::Deployments => {
            let mut c = client::deployer(&cli.deployer_url).await?;
            let s = c.status(mlops_proto::StatusRequest { pipeline: String::new() }).await?.into_inner();
            println!("{:<20} {:<8} {:<14} {:>11}  RELEASE", "PIPELINE", "VERSION", "ARTIFACT", "PREDICTIONS");
            for d in s.deployments {
                println!(
                    "{:<20} {:<8} {:<14} {:>11}  {}",
                    d.pipeline,
                    d.version,
                    mlops_shared::ids::short(&d.artifact_sha256),
                    d.predictions,
                    release(&d)
                );
            }
            Ok(())
        }
        Command::Deploy { target, reason } => {
            let (pipeline, version) = mlops_cli::reproduce::parse_target(&target)?;
            let mut c = client::deployer(&cli.deployer_url).await?;
            let d = c
                .deploy(with_token(
                    mlops_proto::DeployRequest { pipeline, version, reason },
                    cli.admin_token.as_deref(),
                ))
                .await
                .map_err(|s| anyhow::anyhow!("deploy: {}", s.message()))?
                .into_inner();
            println!("{} now serves v{} ({})", d.pipeline, d.version, mlops_shared::ids::short(&d.artifact_sha256));
            Ok(())
        }
        Command::Traffic { pipeline, canary, reason } => {
            let mut c = client::deployer(&cli.deployer_url).await?;
            let d = c
                .set_traffic(with_token(
                    mlops_proto::SetTrafficRequest { pipeline, canary_percent: canary, reason },
                    cli.admin_token.as_deref(),
                ))
                .await
                .map_err(|s| anyhow::anyhow!("traffic: {}", s.message()))?
                .into_inner();
            println!("{} serves v{}; {}", d.pipeline, d.version, release(&d));
            Ok(())
        }
        Command::Reproduce { target } => {
            let (pipeline, version) = mlops_cli::reproduce::parse_target(&target)?;
            let (bus, _) = connect_runs(&cli.nats_url).await?;
            let found = mlops_cli::reproduce::reproduce(&cli.registry_url, &bus, &pipeline, version).await?;
            print!("{}", found.report());
            if !found.identical() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Runs { command } => {
            let (bus, runs) = connect_runs(&cli.nats_url).await?;
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
                RunsCommand::Watch { pipeline, job } => {
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
        Command::Sample { rows, seed, variant } => {
            print!("{}", sample::csv(rows, seed, variant));
            Ok(())
        }
    }
}

/// Publishes `train.requested` and, unless `no_wait`, waits for the model it makes.
async fn train(nats_url: &str, pipeline: &str, by: &str, no_wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let (bus, runs) = connect_runs(nats_url).await?;
    let request_id = format!("{}-{}", mlops_shared::ids::PipelineName::new(pipeline)?, mlops_shared::now_unix_ms());
    let job_id = format!("{pipeline}-manual-{request_id}");
    let ctx = mlops_shared::events::EventContext::new_run(format!("run-{request_id}"));
    let request = mlops_proto::TrainRequested {
        pipeline: pipeline.into(),
        requested_by: by.into(),
        request_id: request_id.clone(),
    };
    bus.publish(&format!("train-requested-{request_id}"), &ctx, &request).await?;
    println!("training requested: job {job_id}");
    if no_wait {
        return Ok(());
    }
    // The record is read at once and every few seconds, so progress sent before the watch
    // subscribed is not needed.
    let watched = mlops_cli::runs::watch(&bus.client, &runs, Some(pipeline), Some(&job_id));
    match tokio::time::timeout(timeout, watched).await {
        Ok(Ok(Some(run))) => exit_for(&run),
        Ok(Ok(None)) => Ok(()), // interrupted
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!(
            "no model from job {job_id} within {timeout:?} (is a trainer running, and has `{pipeline}` accepted data?)"
        ),
    }
}

/// The version `target` (PIPELINE@VERSION) names.
async fn model_version(registry_url: &str, target: &str) -> anyhow::Result<mlops_proto::ModelVersion> {
    let (pipeline, version) = mlops_cli::reproduce::parse_target(target)?;
    let mut registry = client::registry(registry_url).await?;
    let request = mlops_proto::GetModelVersionRequest {
        pipeline,
        selector: Some(mlops_proto::get_model_version_request::Selector::Version(version)),
    };
    Ok(registry.get_model_version(request).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?.into_inner())
}

/// A release in progress, in words.
fn release(d: &mlops_proto::Deployment) -> String {
    if d.release_mode.is_empty() {
        return "no release in progress".into();
    }
    let since = (mlops_shared::now_unix_ms() - d.release_started_unix_ms).max(0) as f64 / 1000.0;
    format!(
        "{} of v{} at {} % for {}, {} predictions",
        d.release_mode,
        d.release_version,
        d.release_percent,
        tables::age(since),
        d.release_predictions
    )
}

/// An operator's verdict on PIPELINE@VERSION.
async fn decide(
    registry_url: &str,
    target: &str,
    action: &str,
    reason: String,
    by: String,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let (pipeline, version) = mlops_cli::reproduce::parse_target(target)?;
    let mut registry = client::registry(registry_url).await?;
    let request = mlops_proto::DecideModelVersionRequest { pipeline, version, action: action.into(), reason, by };
    let v = registry
        .decide_model_version(with_token(request, token))
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let d = v.decision.unwrap_or_default();
    println!("{}@{} {} by {}: {}", v.pipeline, v.version, d.action, d.by, d.reason);
    Ok(())
}

/// `KEY=VALUE` split in two.
fn key_value(text: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = text.split_once('=').with_context(|| format!("{text:?}: expected KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

async fn update_model(
    registry_url: &str,
    request: mlops_proto::UpdateModelVersionRequest,
    token: Option<&str>,
) -> anyhow::Result<mlops_proto::ModelVersion> {
    let mut registry = client::registry(registry_url).await?;
    let request = with_token(request, token);
    Ok(registry.update_model_version(request).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?.into_inner())
}

/// A version as JSON, for people and scripts.
fn version_json(v: &mlops_proto::ModelVersion) -> serde_json::Value {
    let l = v.lineage.clone().unwrap_or_default();
    serde_json::json!({
        "pipeline": v.pipeline, "version": v.version, "artifact_sha256": v.artifact_sha256,
        "artifact_size": v.artifact_size, "algorithm": v.algorithm, "aliases": v.aliases, "gate": v.gate,
        "gate_checks": v.gate_checks.iter().map(|c| serde_json::json!({"name": c.name, "passed": c.passed, "detail": c.detail})).collect::<Vec<_>>(),
        "created_unix_ms": v.created_unix_ms, "tags": v.tags, "description": v.description,
        "metrics": v.holdout_metrics.as_ref().map(|m| m.values.clone()).unwrap_or_default(),
        "lineage": {"dataset_ids": l.dataset_ids, "spec_hash": l.spec_hash, "seed": l.seed,
                    "code_version": l.code_version, "job_id": l.job_id, "trainer_id": l.trainer_id,
                    "reason": mlops_shared::runs::reason_name(l.reason)},
        "production_metrics": v.production_metrics.as_ref().map(|m| serde_json::json!({"version": v.compared_with_version, "values": m.values})),
        "newest": v.newest_metrics.as_ref().map(|m| serde_json::json!({"dataset_id": v.newest_dataset_id, "rows": m.rows, "metrics": m.values})),
        "slices": v.slices.iter().map(|s| serde_json::json!({"feature": s.feature, "value": s.value, "rows": s.rows, "metrics": s.candidate, "production": s.production})).collect::<Vec<_>>(),
        "decision": v.decision.as_ref().map(|d| serde_json::json!({"action": d.action, "reason": d.reason, "by": d.by, "time_unix_ms": d.time_unix_ms})),
        "promoted_unix_ms": v.promoted_unix_ms,
    })
}

/// Connects for reading run records and progress.
async fn connect_runs(nats_url: &str) -> anyhow::Result<(mlops_shared::bus::Bus, mlops_shared::runs::Runs)> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus = mlops_shared::bus::Bus::connect(&mlops_shared::config::NatsArgs::local(nats_url), "mlops-cli", &shutdown)
        .await
        .with_context(|| format!("connecting to {nats_url}"))?;
    let runs = mlops_shared::runs::Runs::open(&bus).await?;
    Ok((bus, runs))
}

/// Success for a run that made a model; an error naming why otherwise.
fn exit_for(run: &mlops_shared::runs::Run) -> anyhow::Result<()> {
    if run.state == mlops_shared::runs::RunState::Succeeded {
        Ok(())
    } else {
        anyhow::bail!("{}", mlops_cli::runs::outcome(run))
    }
}

async fn up(nats_url: &str, data_dir: PathBuf) -> anyhow::Result<()> {
    let mut opts = StackOptions::beside_current_exe(data_dir.clone())?;
    opts.fixed_ports = true;
    opts.log_dir = Some(data_dir.join("logs"));
    let answering = match mlops_shared::bus::server_addrs(nats_url) {
        Ok(addrs) => {
            tokio::time::timeout(Duration::from_secs(2), async_nats::connect(addrs)).await.is_ok_and(|r| r.is_ok())
        }
        Err(_) => false,
    };
    if answering {
        println!("using the NATS server at {nats_url}");
        opts.nats_url = Some(nats_url.to_owned());
    } else {
        println!(
            "no NATS server at {nats_url}: starting nats-server with JetStream in {}",
            data_dir.join("nats").display()
        );
    }
    let mut stack = Stack::start(opts).await?;
    println!("platform up (logs in {}):", data_dir.join("logs").display());
    for s in &stack.services {
        println!("  {:<10} {}", s.name, s.url());
    }
    println!("  nats       {}", stack.nats_url);
    println!("  dashboard  {}/ui\nCtrl-C (or SIGTERM) stops everything.", stack.url("monitor"));
    mlops_shared::shutdown::wait_for_signal().await;
    println!("stopping…");
    stack.stop(Duration::from_secs(15)).await;
    Ok(())
}
