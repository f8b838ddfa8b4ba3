//! `mlops pipeline`: pipeline specs in the registry, applied from YAML and listed with their
//! revision and spec hash.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use mlops_cli::client;
use mlops_cli::environments::Endpoints;
use mlops_cli::promotion;
use mlops_shared::ids::short;

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
        /// Print the applied revision as one JSON object (name, revision, spec_hash, commit), for
        /// scripts.
        #[arg(long)]
        json: bool,
    },
    /// List pipelines.
    List,
    /// Test a pipeline without a platform, as CI does before applying it: the spec and the data
    /// checks on a sample (data ring); the code's unit tests, training on the sample and the gates
    /// on its holdout (model ring); the model served and reproduced (infrastructure ring). Exit
    /// status 1 when any test fails.
    Test {
        file: PathBuf,
        /// A sample dataset (CSV, Parquet, JSON lines) to check and train on; repeatable.
        #[arg(long = "data", value_name = "FILE")]
        data: Vec<PathBuf>,
        /// A bound a metric must meet on the sample's holdout: a floor for a higher-is-better
        /// metric (`roc_auc=0.8`), a ceiling for a lower-is-better one (`rmse=3.5`); repeatable.
        #[arg(long = "expect", value_name = "METRIC=BOUND")]
        expect: Vec<mlops_cli::pipeline_test::Expect>,
        /// Also write the results as JUnit XML, which CI systems display.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Wait for the platform's verdict on a revision: exit status 0 once a model trained under
    /// it serves in production (or when it does not change the model), 1 when a gate refused it,
    /// with the reasons, or when no verdict came in time.
    Wait {
        pipeline: String,
        /// The revision `apply` printed; an older one is refused as stale (default: the current).
        #[arg(long)]
        revision: Option<u64>,
        /// How long to wait, in seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Apply to one environment exactly the revision (spec and code bundle) another trained and
    /// gated, only if a model trained under it passed its gates there; the target's audit names
    /// the source, the commit and who promoted.
    Promote {
        pipeline: String,
        /// The environment whose verdict is trusted (the environments file's name).
        #[arg(long)]
        from: String,
        /// The environment to apply the revision to.
        #[arg(long)]
        to: String,
        /// The source's revision to promote; an older one is refused as stale (default: the current).
        #[arg(long)]
        revision: Option<u64>,
        /// Who promotes, for the audit (default: GITHUB_ACTOR, GITLAB_USER_LOGIN or USER).
        #[arg(long)]
        by: Option<String>,
        /// Print what was promoted as one JSON object (name, from_revision, to_revision,
        /// spec_hash, already), for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `mlops pipeline` subcommand against the registry.
pub(crate) async fn run(command: PipelineCommand, ep: &Endpoints) -> anyhow::Result<()> {
    let (registry, token) = (&ep.registry, ep.admin_token.as_deref());
    match command {
        PipelineCommand::Apply { file, commit, json } => {
            let yaml = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let code = mlops_cli::code_bundle::for_spec(&file, &yaml)?;
            let commit = mlops_cli::code_bundle::spec_commit(&file, commit.as_deref());
            let p = client::apply_pipeline_from(registry, &yaml, code, &commit, token).await?;
            if json {
                let out = serde_json::json!({
                    "name": p.name, "revision": p.revision, "spec_hash": p.spec_hash, "commit": p.commit,
                });
                println!("{out}");
                return Ok(());
            }
            let from = if p.commit.is_empty() { String::new() } else { format!(", commit {}", p.commit) };
            let view = mlops_shared::spec::kind_of(&yaml).as_deref() == Some(mlops_shared::spec::FEATURE_VIEW_KIND);
            println!(
                "{} {} applied: revision {}, spec {}{from}{}",
                if view { "feature view" } else { "pipeline" },
                p.name,
                p.revision,
                short(&p.spec_hash),
                code_note(&p.spec_yaml)
            );
        }
        PipelineCommand::Test { file, data, expect, junit } => test(file, data, expect, junit.as_deref()).await?,
        PipelineCommand::Wait { pipeline, revision, timeout } => {
            let timeout = std::time::Duration::from_secs(timeout);
            let (revision, verdict) = promotion::wait(registry, &pipeline, revision, timeout).await?;
            let line = verdict.describe(&pipeline, revision);
            anyhow::ensure!(!matches!(verdict, promotion::Verdict::Refused { .. }), "{line}");
            println!("{line}");
        }
        PipelineCommand::Promote { pipeline, from, to, revision, by, json } => {
            let (source, target) = (Endpoints::of(&from)?, Endpoints::of(&to)?);
            let by = promotion::promoter(by.as_deref());
            let p = promotion::promote((&from, &source), (&to, &target), &pipeline, revision, &by).await?;
            if json {
                let out = serde_json::json!({
                    "name": pipeline, "from_revision": p.from.revision, "to_revision": p.to.revision,
                    "spec_hash": p.to.spec_hash, "already": p.already,
                });
                println!("{out}");
                return Ok(());
            }
            let commit = if p.from.commit.is_empty() { String::new() } else { format!(", commit {}", p.from.commit) };
            if p.already {
                println!(
                    "{to} is at {from}'s revision {} of {pipeline} already (spec {}{commit})",
                    p.from.revision,
                    short(&p.from.spec_hash)
                );
            } else {
                println!(
                    "{from} revision {} of {pipeline} (spec {}{commit}) applied to {to} as revision {}, promoted by {by}",
                    p.from.revision,
                    short(&p.from.spec_hash),
                    p.to.revision
                );
            }
        }
        PipelineCommand::List => {
            let mut c = client::registry(registry).await?;
            let list = c.list_pipelines(mlops_proto::ListPipelinesRequest {}).await?.into_inner();
            for p in list.pipelines {
                println!("{:<24} revision {:<4} spec {}", p.name, p.revision, short(&p.spec_hash));
            }
        }
    }
    Ok(())
}

/// `mlops pipeline test`: the report on stdout, JUnit XML to `junit`, an error when a test failed.
async fn test(
    spec: PathBuf,
    data: Vec<PathBuf>,
    expect: Vec<mlops_cli::pipeline_test::Expect>,
    junit: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let report = mlops_cli::pipeline_test::run(&mlops_cli::pipeline_test::Options { spec, data, expect }).await;
    print!("{}", report.text());
    if let Some(path) = junit {
        std::fs::write(path, report.junit()).with_context(|| format!("writing {}", path.display()))?;
    }
    anyhow::ensure!(report.passed(), "the pipeline failed its tests");
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
