//! `mlops models`: model versions in the registry. Reading them (list and search, show, lineage,
//! used-by, audit log, model card) and changing them by hand (tags, description, aliases, approve,
//! block), every change audited by the registry.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use mlops_cli::client::{self, Remote};
use mlops_cli::model_ref::ModelRef;
use mlops_shared::config::with_token;

/// The subcommands of `mlops models`.
#[derive(Subcommand)]
pub(crate) enum ModelsCommand {
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
        target: ModelRef,
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
        target: ModelRef,
        text: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// One version: artifact, aliases, metrics, gate checks and lineage (JSON).
    Show {
        /// PIPELINE@VERSION, e.g. `churn@3`.
        target: ModelRef,
    },
    /// What made a version: datasets, spec, seed, code version, job, trainer and reason.
    Lineage { target: ModelRef },
    /// Every model version (of any pipeline) trained on a dataset.
    UsedBy { dataset_id: String },
    /// Point an alias (e.g. `candidate`, `production`, `champion-eu`) at a version; audited.
    Alias {
        target: ModelRef,
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
        target: ModelRef,
        #[arg(long)]
        reason: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// Block a version with a reason; audited. It can never become `production`, and a deployer
    /// serving it rolls back to `previous`.
    Block {
        target: ModelRef,
        #[arg(long)]
        reason: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// Import a model made elsewhere as a new version of PIPELINE: an ONNX file, or an MLflow
    /// model directory of the `onnx` flavor. It is checked against the pipeline's features and
    /// task and on a sample of its validated rows, then judged by the gates and deployed by the
    /// pipeline's strategy like a trained version.
    Import {
        pipeline: String,
        /// A `.onnx` file (external weight files beside it), or an MLflow model directory.
        path: PathBuf,
        /// The validated dataset (id or unique prefix) it was trained on: its holdout judges the
        /// model. Default: the pipeline's newest validated dataset.
        #[arg(long, value_name = "DATASET_ID")]
        trained_on: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, env = "USER", default_value = "mlops-cli")]
        by: String,
    },
    /// A model card: metrics, slices, gate decision, lineage and a data profile summary.
    Card {
        target: ModelRef,
        /// HTML instead of Markdown.
        #[arg(long)]
        html: bool,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs one `mlops models` subcommand against the registry (and the ingest catalog, for the
/// datasets a model card describes).
pub(crate) async fn run(
    command: ModelsCommand,
    registry: &Remote,
    ingest: &Remote,
    token: Option<&str>,
) -> anyhow::Result<()> {
    match command {
        ModelsCommand::List { pipeline, tags, metrics, json } => list(registry, &pipeline, &tags, metrics, json).await,
        ModelsCommand::Tag { target, tags, remove, by } => tag(registry, target, &tags, remove, by, token).await,
        ModelsCommand::Describe { target, text, by } => {
            let ModelRef { pipeline, version } = target;
            let request = mlops_proto::UpdateModelVersionRequest {
                pipeline,
                version,
                description: Some(text),
                by,
                ..Default::default()
            };
            let v = update_model(registry, request, token).await?;
            println!("{}@{}: {}", v.pipeline, v.version, v.description);
            Ok(())
        }
        ModelsCommand::Show { target } => {
            let v = model_version(registry, &target).await?;
            println!("{}", serde_json::to_string_pretty(&version_json(&v))?);
            Ok(())
        }
        ModelsCommand::Lineage { target } => lineage(registry, &target).await,
        ModelsCommand::UsedBy { dataset_id } => used_by(registry, ingest, dataset_id).await,
        ModelsCommand::Alias { target, alias, reason, by } => {
            let ModelRef { pipeline, version } = target;
            let mut registry = client::registry(registry).await?;
            let v = registry
                .set_alias(with_token(
                    mlops_proto::SetAliasRequest { pipeline, alias: alias.clone(), version, reason, by },
                    token,
                ))
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            println!("{}@{} is now `{alias}` (aliases: {})", v.pipeline, v.version, v.aliases.join(", "));
            Ok(())
        }
        ModelsCommand::Audit { pipeline } => audit(registry, pipeline).await,
        ModelsCommand::Approve { target, reason, by } => decide(registry, target, "approve", reason, by, token).await,
        ModelsCommand::Block { target, reason, by } => decide(registry, target, "block", reason, by, token).await,
        ModelsCommand::Card { target, html, out } => card(registry, ingest, &target, html, out).await,
        ModelsCommand::Import { pipeline, path, trained_on, description, by } => {
            let files = mlops_cli::onnx_import::read(&path)?;
            let file_name = files.file_name.clone();
            let header = mlops_proto::ImportModelHeader {
                pipeline,
                file_name: file_name.clone(),
                trained_on: trained_on.unwrap_or_default(),
                description,
                imported_by: by,
            };
            let answer = client::import_model(registry, header, files, token).await?;
            let v = answer.version.unwrap_or_default();
            if answer.already_registered {
                println!(
                    "{file_name} was imported before, on the same data, as {}@{}: nothing new to judge",
                    v.pipeline, v.version
                );
                return Ok(());
            }
            let metrics = v.holdout_metrics.unwrap_or_default();
            let headline = mlops_shared::scoring::headline(|k| metrics.values.get(k).copied())
                .map(|(name, value)| format!(", holdout {name} {value:.4} on {} rows", metrics.rows))
                .unwrap_or_default();
            println!(
                "imported {file_name} as {}@{} (artifact {}{headline}); the gates judge it next: mlops models show {}@{}",
                v.pipeline,
                v.version,
                mlops_shared::ids::short(&v.artifact_sha256),
                v.pipeline,
                v.version
            );
            Ok(())
        }
    }
}

/// `mlops models list`: the versions that match, as a table or JSON.
async fn list(
    registry: &Remote,
    pipeline: &str,
    tags: &[String],
    metrics: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    let tags = tags.iter().map(|t| key_value(t)).collect::<anyhow::Result<_>>()?;
    let versions = client::search_models(registry, pipeline, tags, metrics).await?;
    if json {
        let out: Vec<serde_json::Value> = versions.iter().map(version_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{:<8} {:<14} {:<16} {:<9} {:<22} DATASETS", "VERSION", "ARTIFACT", "METRIC", "GATE", "ALIASES");
    for v in versions {
        let metric = v
            .holdout_metrics
            .as_ref()
            .and_then(|m| mlops_shared::scoring::headline(|k| m.values.get(k).copied()))
            .map_or_else(|| "-".to_owned(), |(name, value)| format!("{name} {value:.4}"));
        let ds = v
            .lineage
            .as_ref()
            .map(|l| l.dataset_ids.iter().map(|d| mlops_shared::ids::short(d).to_owned()).collect::<Vec<_>>().join(","))
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
    Ok(())
}

/// `mlops models tag`: sets and removes tags, then prints the version's tags, sorted.
async fn tag(
    registry: &Remote,
    target: ModelRef,
    tags: &[String],
    remove: Vec<String>,
    by: String,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let ModelRef { pipeline, version } = target;
    let set_tags = tags.iter().map(|t| key_value(t)).collect::<anyhow::Result<_>>()?;
    let request = mlops_proto::UpdateModelVersionRequest {
        pipeline,
        version,
        set_tags,
        remove_tags: remove,
        description: None,
        by,
    };
    let v = update_model(registry, request, token).await?;
    let tags: std::collections::BTreeMap<_, _> = v.tags.iter().collect();
    let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}@{} tags: {}", v.pipeline, v.version, tags.join(", "));
    Ok(())
}

/// `mlops models lineage`: what made the version, one line each.
async fn lineage(registry: &Remote, target: &ModelRef) -> anyhow::Result<()> {
    let v = model_version(registry, target).await?;
    let l = v.lineage.unwrap_or_default();
    println!("{}@{} artifact {}", v.pipeline, v.version, v.artifact_sha256);
    println!("  reason      {}", mlops_shared::runs::reason_name(l.reason));
    println!("  job         {} (trainer {})", l.job_id, l.trainer_id);
    let from = if l.spec_commit.is_empty() { String::new() } else { format!(" (from commit {})", l.spec_commit) };
    println!("  spec        {}{from}", l.spec_hash);
    println!("  seed        {}", l.seed);
    println!("  code        {}", l.code_version);
    if !l.code_commit.is_empty() {
        println!("  commit      {}", l.code_commit);
    }
    if !l.environment.is_empty() {
        println!("  environment {} packages (pip freeze):", l.environment.lines().count());
        for p in l.environment.lines() {
            println!("    {p}");
        }
    }
    for (name, value) in &l.program_metrics {
        println!("  program     {name} {value}");
    }
    println!("  datasets    {} (oldest first)", l.dataset_ids.len());
    for d in &l.dataset_ids {
        println!("    {d}");
    }
    Ok(())
}

/// `mlops models used-by`: the versions trained on a dataset, one line each.
async fn used_by(registry: &Remote, ingest: &Remote, dataset_id: String) -> anyhow::Result<()> {
    // A prefix is resolved by the catalog, which knows every dataset, ambiguity included.
    let dataset_id = match mlops_shared::ids::Sha256::parse(dataset_id.clone()) {
        Ok(full) => full.to_string(),
        Err(_) => client::dataset(ingest, &dataset_id).await?.dataset_id,
    };
    let mut registry = client::registry(registry).await?;
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

/// `mlops models audit`: the pipeline's audit log as a table, times in UTC.
async fn audit(registry: &Remote, pipeline: String) -> anyhow::Result<()> {
    let mut registry = client::registry(registry).await?;
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

/// `mlops models card`: renders the version's card, with the spec it was trained on and the
/// catalog records of its datasets, to stdout or a file.
async fn card(
    registry: &Remote,
    ingest: &Remote,
    target: &ModelRef,
    html: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let version = model_version(registry, target).await?;
    let hash = version.lineage.as_ref().map(|l| l.spec_hash.clone()).unwrap_or_default();
    let mut registry = client::registry(registry).await?;
    let pipeline = registry
        .get_pipeline(mlops_proto::GetPipelineRequest { name: version.pipeline.clone(), spec_hash: hash })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let spec = mlops_shared::spec::PipelineSpec::from_yaml(&pipeline.spec_yaml)?;
    let mut datasets = Vec::new();
    for id in version.lineage.iter().flat_map(|l| &l.dataset_ids) {
        // The catalog adds rows, arrival and profile; the card still renders without it.
        if let Ok(d) = client::dataset(ingest, id).await {
            datasets.push(d);
        }
    }
    let newest = match version.newest_dataset_id.as_str() {
        "" => None,
        id => client::dataset(ingest, id).await.ok(),
    };
    let card = mlops_cli::card::Card::new(&mlops_cli::card::CardInput { version, spec, datasets, newest });
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

/// The version `target` names.
pub(crate) async fn model_version(registry: &Remote, target: &ModelRef) -> anyhow::Result<mlops_proto::ModelVersion> {
    let mut registry = client::registry(registry).await?;
    let request = mlops_proto::GetModelVersionRequest {
        pipeline: target.pipeline.clone(),
        selector: Some(mlops_proto::get_model_version_request::Selector::Version(target.version)),
    };
    Ok(registry.get_model_version(request).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?.into_inner())
}

/// An operator's verdict (`approve` or `block`) on `target`.
async fn decide(
    registry: &Remote,
    target: ModelRef,
    action: &str,
    reason: String,
    by: String,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let ModelRef { pipeline, version } = target;
    let mut registry = client::registry(registry).await?;
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

/// Sends a tag or description change, with the admin token when there is one.
async fn update_model(
    registry: &Remote,
    request: mlops_proto::UpdateModelVersionRequest,
    token: Option<&str>,
) -> anyhow::Result<mlops_proto::ModelVersion> {
    let mut registry = client::registry(registry).await?;
    let request = with_token(request, token);
    Ok(registry.update_model_version(request).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?.into_inner())
}

/// `KEY=VALUE` split in two.
fn key_value(text: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = text.split_once('=').with_context(|| format!("{text:?}: expected KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// A version as JSON, for people and scripts.
pub(crate) fn version_json(v: &mlops_proto::ModelVersion) -> serde_json::Value {
    let l = v.lineage.clone().unwrap_or_default();
    serde_json::json!({
        "pipeline": v.pipeline, "version": v.version, "artifact_sha256": v.artifact_sha256,
        "artifact_size": v.artifact_size, "algorithm": v.algorithm, "aliases": v.aliases, "gate": v.gate,
        "gate_checks": v.gate_checks.iter().map(|c| serde_json::json!({"name": c.name, "passed": c.passed, "detail": c.detail})).collect::<Vec<_>>(),
        "created_unix_ms": v.created_unix_ms, "tags": v.tags, "description": v.description,
        "metrics": v.holdout_metrics.as_ref().map(|m| m.values.clone()).unwrap_or_default(),
        "lineage": {"dataset_ids": l.dataset_ids, "spec_hash": l.spec_hash, "seed": l.seed,
                    "code_version": l.code_version, "job_id": l.job_id, "trainer_id": l.trainer_id,
                    "code_commit": l.code_commit, "spec_commit": l.spec_commit, "environment": l.environment, "program_metrics": l.program_metrics,
                    "reason": mlops_shared::runs::reason_name(l.reason)},
        "production_metrics": v.production_metrics.as_ref().map(|m| serde_json::json!({"version": v.compared_with_version, "values": m.values})),
        "newest": v.newest_metrics.as_ref().map(|m| serde_json::json!({"dataset_id": v.newest_dataset_id, "rows": m.rows, "metrics": m.values})),
        "slices": v.slices.iter().map(|s| serde_json::json!({"feature": s.feature, "value": s.value, "rows": s.rows, "metrics": s.candidate, "production": s.production})).collect::<Vec<_>>(),
        "decision": v.decision.as_ref().map(|d| serde_json::json!({"action": d.action, "reason": d.reason, "by": d.by, "time_unix_ms": d.time_unix_ms})),
        "promoted_unix_ms": v.promoted_unix_ms,
        "importance": v.importance.iter().map(|i| serde_json::json!({"feature": i.feature, "candidate": i.candidate, "production": i.production})).collect::<Vec<_>>(),
        "evaluation_warnings": v.evaluation_warnings,
        "business": v.business.as_ref().map(|b| serde_json::json!({"threshold": b.threshold, "value": b.value, "curve": b.curve})),
        "erasures": v.erasures.iter().map(|e| serde_json::json!({"erasure_id": e.erasure_id, "erased_unix_ms": e.erased_unix_ms, "reason": e.reason, "dataset_ids": e.dataset_ids, "successor_ids": e.successor_ids})).collect::<Vec<_>>(),
    })
}
