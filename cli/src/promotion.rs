//! From staging to production: `mlops pipeline wait` reads a platform's verdict on one revision
//! of a pipeline (promoted, or refused by a gate, with the reasons), and `mlops pipeline promote`
//! applies to production exactly the revision staging trained and gated — its spec and code
//! bundle — and nothing staging did not pass. Both read only the registries (and, for a code
//! bundle, staging's object store), so a CI job needs no more than their endpoints.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, CODE_BUCKET};
use mlops_shared::ids::{Sha256, short};
use mlops_shared::spec::PipelineSpec;

use mlops_proto::registry_client::RegistryClient;
use tonic::transport::Channel;

use crate::client::{self, Remote};
use crate::environments::Endpoints;

/// The alias of the model a platform serves.
const PRODUCTION: &str = "production";

/// A platform's verdict on one revision of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A model trained under the revision passed its gates and serves in production.
    Promoted { version: u64 },
    /// The revision does not change the model, and the model it shapes serves already.
    Unchanged { version: u64 },
    /// A model trained under the revision passed its gates but does not serve yet (a canary).
    Passed { version: u64 },
    /// The newest model trained under the revision was refused: its failed checks.
    Refused { version: u64, reasons: Vec<String> },
}

impl Verdict {
    /// One line for people.
    pub fn describe(&self, pipeline: &str, revision: u64) -> String {
        match self {
            Self::Promoted { version } => {
                format!("{pipeline}@{version} (revision {revision}) passed its gates and serves in production")
            }
            Self::Unchanged { version } => {
                format!("revision {revision} does not change the model: {pipeline}@{version} serves it already")
            }
            Self::Passed { version } => {
                format!("{pipeline}@{version} (revision {revision}) passed its gates and is not serving yet")
            }
            Self::Refused { version, reasons } => format!(
                "{pipeline}@{version} (revision {revision}) was refused: {}",
                if reasons.is_empty() { "no reason recorded".to_owned() } else { reasons.join("; ") }
            ),
        }
    }
}

/// One platform's registry, connected once: the polls of [`wait`] reuse the connection.
pub struct Platform {
    /// What messages call it (`staging`, "the platform").
    name: String,
    url: String,
    c: RegistryClient<Channel>,
}

impl Platform {
    pub async fn connect(name: &str, at: &Remote) -> anyhow::Result<Self> {
        Ok(Self { name: name.to_owned(), url: at.url.clone(), c: client::registry(at).await? })
    }

    /// The pipeline `name`, at `revision` when given: a revision other than the current one is
    /// refused, as stale or not there yet.
    pub async fn revision(&mut self, name: &str, revision: Option<u64>) -> anyhow::Result<pb::Pipeline> {
        let platform = &self.name;
        let current = self
            .c
            .get_pipeline(pb::GetPipelineRequest { name: name.into(), spec_hash: String::new() })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => anyhow::anyhow!("{platform} has no pipeline `{name}`: {}", s.message()),
                _ => anyhow::anyhow!("asking {platform}'s registry ({}) for `{name}`: {}", self.url, s.message()),
            })?
            .into_inner();
        match revision {
            Some(r) if r < current.revision => anyhow::bail!(
                "revision {r} of `{name}` is stale: {platform} is at revision {} (spec {}{})",
                current.revision,
                short(&current.spec_hash),
                if current.commit.is_empty() { String::new() } else { format!(", commit {}", current.commit) }
            ),
            Some(r) if r > current.revision => {
                anyhow::bail!("{platform} has no revision {r} of `{name}`: its newest is revision {}", current.revision)
            }
            _ => Ok(current),
        }
    }

    /// The verdict on `pipeline` (a revision as [`Platform::revision`] found it) so far; `None`
    /// while nothing has been decided.
    pub async fn verdict(&mut self, pipeline: &pb::Pipeline) -> anyhow::Result<Option<Verdict>> {
        let req = pb::ListModelVersionsRequest { pipeline: pipeline.name.clone(), ..Default::default() };
        let models = self.c.list_model_versions(req).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        let models = models.into_inner().versions;
        let serving = models.iter().find(|m| m.aliases.iter().any(|a| a == PRODUCTION));
        // Registered since the revision was applied: a revert to an earlier spec (a new revision,
        // an old hash) is judged by what it trains, not by the verdicts on the old revision's models.
        let under = |m: &&pb::ModelVersion| {
            m.created_unix_ms >= pipeline.updated_unix_ms
                && m.lineage.as_ref().is_some_and(|l| l.spec_hash == pipeline.spec_hash)
        };
        if let Some(m) = serving.filter(under) {
            return Ok(Some(Verdict::Promoted { version: m.version }));
        }
        if let Some(m) = models.iter().filter(under).max_by_key(|m| m.version) {
            return Ok(judged(m));
        }
        match serving {
            Some(m) if self.shapes_the_same_model(pipeline, m).await => {
                Ok(Some(Verdict::Unchanged { version: m.version }))
            }
            _ => Ok(None),
        }
    }

    /// Whether `pipeline`'s spec shapes the same model as the spec `serving` was trained under
    /// (only monitoring or deployment settings changed).
    async fn shapes_the_same_model(&mut self, pipeline: &pb::Pipeline, serving: &pb::ModelVersion) -> bool {
        let Some(hash) = serving.lineage.as_ref().map(|l| l.spec_hash.clone()) else { return false };
        let req = pb::GetPipelineRequest { name: pipeline.name.clone(), spec_hash: hash };
        let Ok(then) = self.c.get_pipeline(req).await else { return false };
        let model_hash = |yaml: &str| PipelineSpec::from_yaml(yaml).map(|s| s.model_hash()).ok();
        model_hash(&then.into_inner().spec_yaml).is_some_and(|h| Some(h) == model_hash(&pipeline.spec_yaml))
    }
}

/// A model's verdict: refused (by a gate or an operator), passed, or not judged yet.
fn judged(m: &pb::ModelVersion) -> Option<Verdict> {
    let version = m.version;
    match (m.decision.as_ref().map(|d| d.action.as_str()), m.gate.as_str()) {
        (Some("blocked"), _) => {
            let d = m.decision.as_ref().expect("matched");
            Some(Verdict::Refused { version, reasons: vec![format!("blocked by {}: {}", d.by, d.reason)] })
        }
        (Some("approved"), _) | (_, "passed") => Some(Verdict::Passed { version }),
        (_, "failed") => {
            let reasons = m.gate_checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail));
            Some(Verdict::Refused { version, reasons: reasons.collect() })
        }
        _ => None,
    }
}

/// Waits until the platform at `at` has decided on `pipeline`'s `revision`: promoted (or
/// unchanged), or refused. A model that passed and waits for its canary is waited for. The
/// revision waited on, and the verdict.
pub async fn wait(
    at: &Remote,
    name: &str,
    revision_no: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<(u64, Verdict)> {
    let mut platform = Platform::connect("the platform", at).await?;
    let pipeline = platform.revision(name, revision_no).await?;
    let started = Instant::now();
    let mut last = None;
    loop {
        // A registry that restarts or is out of reach for a moment is asked again until the
        // timeout; what it says is final.
        let found = match platform.verdict(&pipeline).await {
            Ok(v) => v,
            Err(_) if started.elapsed() < timeout => None,
            Err(e) => return Err(e),
        };
        match found {
            Some(v @ (Verdict::Promoted { .. } | Verdict::Unchanged { .. } | Verdict::Refused { .. })) => {
                return Ok((pipeline.revision, v));
            }
            v => last = v.or(last),
        }
        if started.elapsed() >= timeout {
            let so_far = match last {
                Some(v) => v.describe(name, pipeline.revision),
                None => format!(
                    "no model trained under revision {} yet (`mlops runs list` shows the runs; does the pipeline have data here?)",
                    pipeline.revision
                ),
            };
            anyhow::bail!(
                "no verdict on revision {} of `{name}` after {} s: {so_far}",
                pipeline.revision,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What `promote` did.
#[derive(Debug, Clone)]
pub struct Promoted {
    /// The revision in the source platform, and what it became in the target.
    pub from: pb::Pipeline,
    pub to: pb::Pipeline,
    /// Whether the target was at that revision already.
    pub already: bool,
}

/// Applies to the environment `to` the revision of `pipeline` that the environment `from` gated
/// (the current one, which `revision` must be when given), only when a model trained under it
/// passed its gates there; `by` is who promotes, kept in the target's audit.
pub async fn promote(
    (from_name, from): (&str, &Endpoints),
    (to_name, to): (&str, &Endpoints),
    pipeline: &str,
    revision_no: Option<u64>,
    by: &str,
) -> anyhow::Result<Promoted> {
    anyhow::ensure!(
        from.registry.url != to.registry.url,
        "`{from_name}` and `{to_name}` are the same platform (registry {})",
        from.registry.url
    );
    let mut staging = Platform::connect(from_name, &from.registry).await?;
    let source = staging.revision(pipeline, revision_no).await?;
    let (passed, how) = match staging.verdict(&source).await? {
        Some(Verdict::Promoted { version }) => (version, "passed its gates and serves there"),
        Some(Verdict::Unchanged { version }) => (version, "serves there, and the revision does not change it"),
        Some(Verdict::Passed { version }) => anyhow::bail!(
            "{pipeline}@{version}, of {from_name}'s revision {}, passed its gates but does not serve there yet \
             (a canary in progress, or rolled back): wait for it with `mlops --env {from_name} pipeline wait`",
            source.revision
        ),
        Some(refused @ Verdict::Refused { .. }) => anyhow::bail!(
            "{from_name} refused revision {} of `{pipeline}`, so it is not promoted: {}",
            source.revision,
            refused.describe(pipeline, source.revision)
        ),
        None => anyhow::bail!(
            "{from_name} has not passed revision {} of `{pipeline}` (spec {}): no model trained under it passed its gates there",
            source.revision,
            short(&source.spec_hash)
        ),
    };
    let mut target = Platform::connect(to_name, &to.registry).await?;
    if let Ok(current) = target.revision(pipeline, None).await
        && current.spec_hash == source.spec_hash
    {
        return Ok(Promoted { from: source, to: current, already: true });
    }
    let request = pb::ApplyPipelineRequest {
        spec_yaml: source.spec_yaml.clone(),
        code_bundle: bundle(from, &source).await?,
        commit: source.commit.clone(),
        promoted_from: format!(
            "{from_name} revision {} ({pipeline}@{passed} {how}){}, by {by}",
            source.revision,
            if source.commit.is_empty() { String::new() } else { format!(", commit {}", source.commit) }
        ),
        ..Default::default()
    };
    let applied = client::apply_request(&to.registry, request, to.admin_token.as_deref()).await?;
    anyhow::ensure!(
        applied.spec_hash == source.spec_hash,
        "{to_name} applied it as revision {} but stored the spec as {}, {from_name} as {}: the two platforms \
         read specs differently (different versions?)",
        applied.revision,
        short(&applied.spec_hash),
        short(&source.spec_hash)
    );
    Ok(Promoted { from: source, to: applied, already: false })
}

/// The code bundle the revision names, from the source platform's object store; empty when it
/// names none.
async fn bundle(from: &Endpoints, source: &pb::Pipeline) -> anyhow::Result<Vec<u8>> {
    let spec = PipelineSpec::from_yaml(&source.spec_yaml).context("the source platform's spec")?;
    let Some(sha) = spec.training.code.and_then(|c| c.bundle) else { return Ok(Vec::new()) };
    let sha = Sha256::parse(sha)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus =
        Bus::connect(&from.nats(), "mlops-cli", &shutdown).await.context("connecting to the source platform's NATS")?;
    let bytes =
        bus.objects(CODE_BUCKET).await?.get_verified(&sha).await.with_context(|| format!("the code bundle {sha}"))?;
    Ok(bytes)
}

/// Who promotes: `given`, else the CI's user (`GITHUB_ACTOR`, `GITLAB_USER_LOGIN`), else `USER`.
pub fn promoter(given: Option<&str>) -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    given
        .map(str::to_owned)
        .or_else(|| var("GITHUB_ACTOR"))
        .or_else(|| var("GITLAB_USER_LOGIN"))
        .or_else(|| var("USER"))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(gate: &str, decision: Option<&str>) -> pb::ModelVersion {
        pb::ModelVersion {
            version: 4,
            gate: gate.into(),
            gate_checks: vec![
                pb::GateCheck { name: "roc_auc >= 0.9".into(), passed: false, detail: "candidate 0.81".into() },
                pb::GateCheck { name: "log_loss <= 1".into(), passed: true, detail: "0.4".into() },
            ],
            decision: decision.map(|a| pb::OperatorDecision {
                action: a.into(),
                reason: "leaks the label".into(),
                by: "ana".into(),
                time_unix_ms: 1,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_model_is_refused_by_its_failed_checks_or_an_operator() {
        let refused = judged(&model("failed", None)).unwrap();
        assert_eq!(refused, Verdict::Refused { version: 4, reasons: vec!["roc_auc >= 0.9: candidate 0.81".into()] });
        assert!(refused.describe("churn", 2).contains("churn@4 (revision 2) was refused: roc_auc >= 0.9"));
        let blocked = judged(&model("passed", Some("blocked"))).unwrap();
        assert_eq!(blocked, Verdict::Refused { version: 4, reasons: vec!["blocked by ana: leaks the label".into()] });
        assert_eq!(judged(&model("failed", Some("approved"))), Some(Verdict::Passed { version: 4 }));
        assert_eq!(judged(&model("", None)), None);
    }
}
