//! The registry: source of truth for pipelines and models. It serves `mlops.v1.Registry` over gRPC,
//! records every `model.trained` as a numbered version with its lineage, and every
//! `model.evaluated` verdict, in a redb file.

pub mod code;
pub mod import;
pub mod store;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, CODE_BUCKET, ConsumerSpec, DATASETS_BUCKET, HandlerError, MODELS_BUCKET};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::service::Service;
use mlops_shared::spec::{FEATURE_VIEW_KIND, FeatureViewSpec, PipelineSpec, SpecStore, kind_of};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::store::{Action, CheckRecord, Decision, Evaluation, Gate, ModelRecord, SliceRecord, Store, commit};

/// Registry configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-registry", version, about = "Model registry: pipelines, versions, aliases, lineage")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub tls: mlops_shared::tls::TlsArgs,
    /// gRPC and HTTP (/healthz, /metrics) listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub admin: mlops_shared::config::AdminArgs,
    /// Directory of the registry's redb file.
    #[arg(long, env = "MLOPS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Runs the registry until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Before anything connects: an ONNX Runtime named by a path that is not a file stops the start.
    let onnx = mlops_onnx::Engine::from_env()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Arc::new(Store::open(&config.data_dir.join("registry.redb")).context("opening registry database")?);
    let mut service = Service::start("registry", &config.nats, &config.tls, &shutdown).await?;
    let bus = service.bus.clone();
    let specs = SpecStore::open(&bus).await?;
    // The key-value bucket is a cache of the registry: re-publish so it always matches. A spec
    // this version reads into another canonical form is re-hashed, so lineage keeps finding it;
    // one it cannot read any more is left out with a warning rather than stopping the registry.
    for p in store.pipelines()? {
        let spec = match PipelineSpec::from_yaml(&p.spec_yaml) {
            Ok(spec) => spec,
            Err(e) => {
                warn!(pipeline = %p.name, error = %e, "stored spec no longer reads; apply a fixed one");
                continue;
            }
        };
        let (name, hash) = (p.name.clone(), spec.hash());
        let shown = mlops_shared::ids::short(&hash).to_owned();
        if commit(&store, move |s| s.rehash(&name, &hash, "registry start-up")).await? {
            info!(pipeline = %p.name, spec = %shown, "stored spec re-hashed by this version");
        }
        specs.put(&spec).await?;
    }
    let events = Arc::new(Events { store: store.clone(), bus: bus.clone() });
    let trained = ConsumerSpec::events::<pb::ModelTrained>("registry-trained");
    service.consume(trained, events.clone(), |r, e| async move { on_trained(&r.store, &r.bus, e).await });
    let evaluated = ConsumerSpec::events::<pb::ModelEvaluated>("registry-evaluated");
    service.consume(evaluated, events.clone(), |r, e| async move { on_evaluated(&r.store, e).await });
    let erased = ConsumerSpec::events::<pb::DataErased>("registry-erased");
    service.consume(erased, events, |r, e| async move { on_erased(&r.store, e).await });
    let importer = import::Importer {
        engine: onnx,
        specs: specs.clone(),
        datasets: bus.objects(DATASETS_BUCKET).await?,
        models: bus.objects(MODELS_BUCKET).await?,
        runs: mlops_shared::runs::Runs::open(&bus).await?,
    };
    let code = bus.objects(CODE_BUCKET).await?;
    let features = mlops_features::FeatureStore::open(&bus).await?;
    let api =
        RegistryApi { store, specs, features, bus, code, admin: config.admin.clone(), importer: Arc::new(importer) };
    let server = pb::registry_server::RegistryServer::new(api).max_decoding_message_size(code::MAX_APPLY_BYTES);
    let grpc = tonic::service::Routes::new(server).into_axum_router();
    service.serve(listener, Some(grpc)).await
}

/// What the registry's event handlers need: the store, and the bus to announce versions on.
struct Events {
    store: Arc<Store>,
    bus: Bus,
}

/// Numbers a trained model as the next version of its pipeline (once: a redelivery finds the
/// version it made), then publishes `model.registered`, which the evaluator judges from.
async fn on_trained(store: &Arc<Store>, bus: &Bus, e: Envelope<pb::ModelTrained>) -> Result<(), HandlerError> {
    let (r, _) = record_version(store, e.payload.clone(), &e.id, String::new()).await?;
    // A job trained again (its first trainer died after announcing) by a program whose output is
    // not bit-identical: its version stays the first model, which was announced and is judged.
    if r.artifact_sha256 != e.payload.artifact_sha256 {
        info!(pipeline = %r.pipeline, version = r.version, job = %r.job_id, "job trained again; its version keeps the first model");
        return Ok(());
    }
    // Announced even when the version was there: a crash between recording and announcing
    // redelivers `model.trained`, and the announcement's id deduplicates it.
    announce(bus, &e.follow(), &r, e.payload).await
}

/// Numbers the model `trained` announces, once: the same artifact again finds its version.
/// Whether the version is new, beside it.
async fn record_version(
    store: &Arc<Store>,
    trained: pb::ModelTrained,
    cause: &str,
    description: String,
) -> Result<(ModelRecord, bool), HandlerError> {
    let record = ModelRecord { description, ..model_record(trained) };
    let cause = cause.to_owned();
    let (r, new) = commit(store, move |s| s.register(record, &cause)).await?;
    info!(pipeline = %r.pipeline, version = r.version, new, "model version registered");
    Ok((r, new))
}

/// Publishes `model.registered` for the durable version `r`, which the evaluator judges from.
async fn announce(
    bus: &Bus,
    ctx: &EventContext,
    r: &ModelRecord,
    trained: pb::ModelTrained,
) -> Result<(), HandlerError> {
    let event = pb::ModelRegistered {
        pipeline: r.pipeline.clone(),
        version: r.version,
        artifact_sha256: r.artifact_sha256.clone(),
        trained: Some(trained),
    };
    bus.publish(&format!("registered-{}-{}", r.pipeline, r.version), ctx, &event).await?;
    Ok(())
}

/// The record of a new version from the event that announced its artifact (numbered on commit).
fn model_record(t: pb::ModelTrained) -> ModelRecord {
    let metrics = t.holdout_metrics.unwrap_or_default();
    ModelRecord {
        pipeline: t.pipeline,
        version: 0,
        artifact_sha256: t.artifact_sha256,
        artifact_size: t.artifact_size,
        algorithm: t.algorithm,
        dataset_ids: t.dataset_ids,
        spec_hash: t.spec_hash,
        seed: t.seed,
        code_version: t.code_version,
        job_id: t.job_id,
        reason: t.reason,
        trainer_id: t.trainer_id,
        metrics: metrics.values.into_iter().collect(),
        metrics_rows: metrics.rows,
        created_unix_ms: 0,
        gate: Gate::Pending,
        gate_checks: vec![],
        tags: Default::default(),
        description: String::new(),
        evaluation: Default::default(),
        decision: None,
        promoted_unix_ms: 0,
        code_commit: t.code_commit,
        environment: t.environment,
        program_metrics: t.program_metrics.into_iter().collect(),
        business: t.business.map(Into::into),
        erasures: Vec::new(),
    }
}

async fn on_evaluated(store: &Arc<Store>, e: Envelope<pb::ModelEvaluated>) -> Result<(), HandlerError> {
    let v = e.payload;
    let checks =
        v.checks.into_iter().map(|c| CheckRecord { name: c.name, passed: c.passed, detail: c.detail }).collect();
    // An operator's approval re-publishes the verdict without new measurements: keep the stored ones.
    let evaluation = v.decision.is_none().then(|| {
        let values = |m: Option<pb::Metrics>| m.map(|m| m.values.into_iter().collect()).unwrap_or_default();
        let newest_rows = v.candidate_newest_metrics.as_ref().map_or(0, |m| m.rows);
        Evaluation {
            production_version: v.production_version,
            production_metrics: values(v.production_metrics),
            newest_dataset_id: v.newest_dataset_id,
            newest_rows,
            newest_metrics: values(v.candidate_newest_metrics),
            slices: v.slices.into_iter().map(SliceRecord::from).collect(),
            importance: v.importance.into_iter().map(|i| (i.feature, i.candidate, i.production)).collect(),
            warnings: v.warnings,
        }
    });
    let cause = e.id.clone();
    commit(store, move |s| s.record_gate(&v.pipeline, v.version, v.passed, checks, evaluation, &cause)).await?;
    Ok(())
}

/// Marks the models trained on data an erasure removed: their lineage no longer rebuilds them.
async fn on_erased(store: &Arc<Store>, e: Envelope<pb::DataErased>) -> Result<(), HandlerError> {
    let (erasure, cause) = (e.payload, e.id.clone());
    let pipeline = erasure.pipeline.clone();
    let marked = commit(store, move |s| s.mark_erased(&pipeline, &erasure, &cause)).await?;
    if !marked.is_empty() {
        info!(pipeline = %e.subject, versions = ?marked, "models trained on erased data marked");
    }
    Ok(())
}

/// The gRPC API.
struct RegistryApi {
    store: Arc<Store>,
    specs: SpecStore,
    /// Feature views, which pipelines look features up in.
    features: mlops_features::FeatureStore,
    bus: Bus,
    /// Code bundles of training programs.
    code: mlops_shared::objects::Objects,
    /// Who may change pipelines and models.
    admin: mlops_shared::config::AdminArgs,
    importer: Arc<import::Importer>,
}

fn check_alias(alias: &str) -> Result<(), Status> {
    let ok = alias.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && alias.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && alias.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!("alias {alias:?} is invalid: use a-z, 0-9, '-' and '_'")))
    }
}

impl RegistryApi {
    /// Publishes `pipeline.applied` for `record` (the revision `spec` is), saying whether its
    /// model-shaping parts changed from the revision before. Published on every apply, with an id
    /// of the revision, so a revision stored before a crash is announced by the next apply of it.
    async fn announce_applied(&self, spec: &PipelineSpec, record: &store::PipelineRecord) -> Result<(), Status> {
        let before = match record.previous_spec_hash.as_str() {
            "" => None,
            hash => self.store.pipeline_at(&record.name, hash).ok(),
        };
        let before_hash = before.and_then(|b| PipelineSpec::from_yaml(&b.spec_yaml).ok()).map(|s| s.model_hash());
        let model_hash = spec.model_hash();
        let event = pb::PipelineApplied {
            pipeline: record.name.clone(),
            revision: record.revision,
            spec_hash: record.spec_hash.clone(),
            model_changed: before_hash.is_some_and(|b| b != model_hash),
            model_hash,
            commit: record.commit.clone(),
            previous_spec_hash: record.previous_spec_hash.clone(),
        };
        let ctx = mlops_shared::events::EventContext::new_run(format!("applied-{}-r{}", record.name, record.revision));
        // The revision's: announced again after a crash, it is dropped as a repeat; a revert to an
        // earlier spec (a new revision, an old hash) is announced anew.
        let id = format!("applied-{}-r{}-{}", record.name, record.revision, record.spec_hash);
        self.bus.publish(&id, &ctx, &event).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(())
    }

    /// Applies a feature view: refused when a pipeline has its name, or when it would take away a
    /// feature a pipeline looks up.
    async fn apply_view(&self, yaml: &str) -> Result<pb::Pipeline, Status> {
        let view = FeatureViewSpec::from_yaml(yaml).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if self.store.pipeline(view.name.as_str()).is_ok() {
            return Err(views::refused(format!("`{}` is a pipeline; a feature view needs another name", view.name)));
        }
        let old = self.features.view(view.name.as_str()).await.map_err(unavailable)?;
        let pipelines = self.specs.all().await.map_err(unavailable)?;
        views::check_users(&view, old.as_ref(), &pipelines).map_err(views::refused)?;
        let revision = self.features.put_view(&view).await.map_err(unavailable)?;
        info!(view = %view.name, revision, "feature view applied");
        Ok(pb::Pipeline {
            name: view.name.to_string(),
            spec_hash: view.hash(),
            spec_yaml: yaml.to_owned(),
            revision,
            updated_unix_ms: mlops_shared::now_unix_ms(),
            commit: String::new(),
        })
    }

    fn to_proto(&self, r: ModelRecord) -> Result<pb::ModelVersion, Status> {
        let aliases =
            self.store.aliases(&r.pipeline)?.into_iter().filter(|(_, v)| *v == r.version).map(|(a, _)| a).collect();
        // The commit of the revision it was trained under (unknown for one no longer kept).
        let spec_commit = self.store.pipeline_at(&r.pipeline, &r.spec_hash).map(|p| p.commit).unwrap_or_default();
        Ok(pb::ModelVersion {
            pipeline: r.pipeline,
            version: r.version,
            artifact_sha256: r.artifact_sha256,
            artifact_size: r.artifact_size,
            algorithm: r.algorithm,
            lineage: Some(pb::Lineage {
                spec_commit,
                dataset_ids: r.dataset_ids,
                spec_hash: r.spec_hash,
                seed: r.seed,
                code_version: r.code_version,
                job_id: r.job_id,
                reason: r.reason,
                trainer_id: r.trainer_id,
                code_commit: r.code_commit,
                environment: r.environment,
                program_metrics: r.program_metrics.into_iter().collect(),
            }),
            holdout_metrics: Some(pb::Metrics { values: r.metrics.into_iter().collect(), rows: r.metrics_rows }),
            aliases,
            created_unix_ms: r.created_unix_ms,
            gate: r.gate.as_str().into(),
            gate_checks: r
                .gate_checks
                .into_iter()
                .map(|c| pb::GateCheck { name: c.name, passed: c.passed, detail: c.detail })
                .collect(),
            tags: r.tags.into_iter().collect(),
            description: r.description,
            newest_dataset_id: r.evaluation.newest_dataset_id,
            newest_metrics: (r.evaluation.newest_rows > 0).then(|| pb::Metrics {
                values: r.evaluation.newest_metrics.into_iter().collect(),
                rows: r.evaluation.newest_rows,
            }),
            slices: r.evaluation.slices.into_iter().map(pb::SliceMetrics::from).collect(),
            decision: r.decision.map(|d| pb::OperatorDecision {
                action: d.action.as_str().into(),
                reason: d.reason,
                by: d.by,
                time_unix_ms: d.time_unix_ms,
            }),
            production_metrics: (r.evaluation.production_version > 0).then(|| pb::Metrics {
                values: r.evaluation.production_metrics.into_iter().collect(),
                rows: r.metrics_rows,
            }),
            compared_with_version: r.evaluation.production_version,
            promoted_unix_ms: r.promoted_unix_ms,
            business: r.business.as_ref().map(Into::into),
            importance: r
                .evaluation
                .importance
                .iter()
                .map(|(feature, candidate, production)| pb::FeatureImportance {
                    feature: feature.clone(),
                    candidate: *candidate,
                    production: *production,
                })
                .collect(),
            evaluation_warnings: r.evaluation.warnings.clone(),
            erasures: r
                .erasures
                .iter()
                .map(|m| pb::ModelErasure {
                    erasure_id: m.erasure_id.clone(),
                    erased_unix_ms: m.erased_unix_ms,
                    reason: m.reason.clone(),
                    dataset_ids: m.versions.iter().map(|v| v.0.clone()).collect(),
                    successor_ids: m.versions.iter().map(|v| v.1.clone()).collect(),
                })
                .collect(),
        })
    }
}

/// A metric condition such as `roc_auc>=0.8`.
struct MetricFilter {
    metric: String,
    op: &'static str,
    bound: f64,
}

impl MetricFilter {
    fn parse(text: &str) -> Result<Self, Status> {
        let bad = || {
            Status::invalid_argument(format!(
                "metric filter {text:?}: expected METRIC OP NUMBER, OP one of > >= < <= =, e.g. roc_auc>=0.8"
            ))
        };
        let at = text.find(['>', '<', '=']).ok_or_else(bad)?;
        let (name, rest) = text.split_at(at);
        let op = [">=", "<=", ">", "<", "="].into_iter().find(|op| rest.starts_with(op)).ok_or_else(bad)?;
        let bound: f64 = rest[op.len()..].trim().parse().map_err(|_| bad())?;
        let metric = name.trim().to_owned();
        if metric.is_empty() {
            return Err(bad());
        }
        Ok(Self { metric, op, bound })
    }

    fn holds(&self, v: f64) -> bool {
        match self.op {
            ">" => v > self.bound,
            ">=" => v >= self.bound,
            "<" => v < self.bound,
            "<=" => v <= self.bound,
            _ => v == self.bound,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

fn pipeline_proto(p: store::PipelineRecord) -> pb::Pipeline {
    pb::Pipeline {
        name: p.name,
        spec_hash: p.spec_hash,
        spec_yaml: p.spec_yaml,
        revision: p.revision,
        updated_unix_ms: p.updated_unix_ms,
        commit: p.commit,
    }
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryApi {
    async fn apply_pipeline(&self, req: Request<pb::ApplyPipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        self.admin.authorize(req.metadata(), "ApplyPipeline")?;
        let req = req.into_inner();
        if kind_of(&req.spec_yaml).as_deref() == Some(FEATURE_VIEW_KIND) {
            return Ok(Response::new(self.apply_view(&req.spec_yaml).await?));
        }
        let mut spec = PipelineSpec::from_yaml(&req.spec_yaml).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if self.features.view(spec.name.as_str()).await.map_err(unavailable)?.is_some() {
            return Err(views::refused(format!("`{}` is a feature view; a pipeline needs another name", spec.name)));
        }
        if spec.lookup.is_some() {
            let views = self.features.views().await.map_err(unavailable)?;
            views::check_lookup(&spec, &views).map_err(views::refused)?;
        }
        // A spec with code is stored as the registry completed it: naming its bundle and commit.
        let yaml = if code::attach(&self.code, &mut spec, &req).await? { spec.to_yaml() } else { req.spec_yaml };
        let (name, hash, git) = (spec.name.as_str().to_owned(), spec.hash(), req.commit.clone());
        let cause = match req.promoted_from.as_str() {
            "" => "grpc:ApplyPipeline".to_owned(),
            from => format!("grpc:ApplyPipeline, promoted from {from}"),
        };
        let record = commit(&self.store, move |s| s.apply_pipeline(&name, &yaml, &hash, &git, &cause)).await?;
        self.specs.put(&spec).await.map_err(|e| Status::unavailable(e.to_string()))?;
        info!(pipeline = %record.name, revision = record.revision, "pipeline applied");
        self.announce_applied(&spec, &record).await?;
        Ok(Response::new(pipeline_proto(record)))
    }

    async fn get_pipeline(&self, req: Request<pb::GetPipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        let req = req.into_inner();
        let record = if req.spec_hash.is_empty() {
            self.store.pipeline(&req.name)
        } else {
            self.store.pipeline_at(&req.name, &req.spec_hash)
        };
        Ok(Response::new(pipeline_proto(record?)))
    }

    async fn list_pipelines(
        &self,
        _: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        let pipelines = self.store.pipelines()?.into_iter().map(pipeline_proto).collect();
        Ok(Response::new(pb::ListPipelinesResponse { pipelines }))
    }

    async fn get_model_version(
        &self,
        req: Request<pb::GetModelVersionRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        use pb::get_model_version_request::Selector;
        let req = req.into_inner();
        let p = req.pipeline.as_str();
        let version = match req.selector {
            Some(Selector::Version(v)) => v,
            Some(Selector::Alias(a)) => {
                check_alias(&a)?;
                self.store.pipeline(p)?;
                self.store
                    .alias(p, &a)?
                    .ok_or_else(|| Status::not_found(format!("pipeline `{p}` has no `{a}` model")))?
            }
            Some(Selector::ArtifactSha256(sha)) => {
                self.store.pipeline(p)?;
                self.store
                    .version_by_sha(p, &sha)?
                    .ok_or_else(|| Status::not_found(format!("pipeline `{p}` has no model with artifact {sha}")))?
            }
            None => return Err(Status::invalid_argument("give a version, an alias or an artifact sha256")),
        };
        let record = self.store.model(p, version)?;
        Ok(Response::new(self.to_proto(record)?))
    }

    async fn list_model_versions(
        &self,
        req: Request<pb::ListModelVersionsRequest>,
    ) -> Result<Response<pb::ListModelVersionsResponse>, Status> {
        let req = req.into_inner();
        let filters = req.metric_filters.iter().map(|f| MetricFilter::parse(f)).collect::<Result<Vec<_>, _>>()?;
        let records = self.store.models(&req.pipeline)?;
        let versions = records
            .into_iter()
            .filter(|r| req.tags.iter().all(|(k, v)| r.tags.get(k) == Some(v)))
            .filter(|r| filters.iter().all(|f| r.metrics.get(&f.metric).is_some_and(|v| f.holds(*v))))
            .map(|r| self.to_proto(r))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListModelVersionsResponse { versions }))
    }

    async fn update_model_version(
        &self,
        req: Request<pb::UpdateModelVersionRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        self.admin.authorize(req.metadata(), "UpdateModelVersion")?;
        let req = req.into_inner();
        for key in req.set_tags.keys().chain(&req.remove_tags) {
            if key.is_empty() || key.len() > 128 || key.chars().any(char::is_control) {
                return Err(Status::invalid_argument(format!("tag name {key:?}: 1 to 128 printable characters")));
            }
        }
        let cause = if req.by.is_empty() {
            "grpc:UpdateModelVersion".to_owned()
        } else {
            format!("grpc:UpdateModelVersion by {}", req.by)
        };
        let set: std::collections::BTreeMap<String, String> = req.set_tags.into_iter().collect();
        let (pipeline, version, remove, description) = (req.pipeline, req.version, req.remove_tags, req.description);
        let record = commit(&self.store, move |s| {
            s.update_model(&pipeline, version, &set, &remove, description.as_deref(), &cause)
        })
        .await?;
        Ok(Response::new(self.to_proto(record)?))
    }

    async fn models_using_dataset(
        &self,
        req: Request<pb::ModelsUsingDatasetRequest>,
    ) -> Result<Response<pb::ListModelVersionsResponse>, Status> {
        let id = req.into_inner().dataset_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("`dataset_id` is empty"));
        }
        let records = self.store.models_using(&id)?;
        let versions = records.into_iter().map(|r| self.to_proto(r)).collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListModelVersionsResponse { versions }))
    }

    async fn list_audit(&self, req: Request<pb::ListAuditRequest>) -> Result<Response<pb::ListAuditResponse>, Status> {
        let entries = self
            .store
            .audit_log(&req.into_inner().pipeline)?
            .into_iter()
            .map(|e| pb::AuditEntry {
                time_unix_ms: e.time_unix_ms,
                pipeline: e.pipeline,
                action: e.action,
                detail: e.detail,
                cause: e.cause,
            })
            .collect();
        Ok(Response::new(pb::ListAuditResponse { entries }))
    }

    async fn decide_model_version(
        &self,
        req: Request<pb::DecideModelVersionRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        self.admin.authorize(req.metadata(), "DecideModelVersion")?;
        let req = req.into_inner();
        let Some(action) = Action::from_verb(&req.action) else {
            return Err(Status::invalid_argument(format!("action {:?}: use `approve` or `block`", req.action)));
        };
        if req.reason.trim().is_empty() {
            return Err(Status::invalid_argument("a decision needs a `reason`"));
        }
        if req.by.trim().is_empty() {
            return Err(Status::invalid_argument("a decision needs `by`: who decides"));
        }
        let decision = Decision {
            action,
            reason: req.reason.clone(),
            by: req.by.clone(),
            time_unix_ms: mlops_shared::now_unix_ms(),
        };
        let cause = format!("grpc:DecideModelVersion by {}", req.by);
        let (pipeline, version, decided) = (req.pipeline.clone(), req.version, decision.clone());
        let record = commit(&self.store, move |s| s.decide(&pipeline, version, decided, &cause)).await?;
        let pb_decision = pb::OperatorDecision {
            action: action.as_str().into(),
            reason: decision.reason.clone(),
            by: decision.by.clone(),
            time_unix_ms: decision.time_unix_ms,
        };
        let id = format!("{}-{}-{}-{}", action.as_str(), req.pipeline, req.version, decision.time_unix_ms);
        let ctx = EventContext::new_run(id.clone());
        let published = if action == Action::Approved {
            // The verdict the deployer acts on: passed, every check as measured, and the override.
            let mut checks: Vec<pb::GateCheck> = record
                .gate_checks
                .iter()
                .map(|c| pb::GateCheck { name: c.name.clone(), passed: c.passed, detail: c.detail.clone() })
                .collect();
            checks.push(pb::GateCheck {
                name: "operator approval".into(),
                passed: true,
                detail: format!("approved by {}: {}", req.by, req.reason),
            });
            let event = pb::ModelEvaluated {
                pipeline: record.pipeline.clone(),
                version: record.version,
                artifact_sha256: record.artifact_sha256.clone(),
                passed: true,
                checks,
                candidate_metrics: Some(pb::Metrics {
                    values: record.metrics.clone().into_iter().collect(),
                    rows: record.metrics_rows,
                }),
                decision: Some(pb_decision),
                ..Default::default()
            };
            self.bus.publish(&id, &ctx, &event).await
        } else {
            let event = pb::ModelBlocked {
                pipeline: record.pipeline.clone(),
                version: record.version,
                artifact_sha256: record.artifact_sha256.clone(),
                decision: Some(pb_decision),
            };
            self.bus.publish(&id, &ctx, &event).await
        };
        published
            .map_err(|e| Status::unavailable(format!("decision recorded, but its event was not published: {e}")))?;
        info!(pipeline = %req.pipeline, version = req.version, action = action.as_str(), by = %req.by, "operator decision");
        Ok(Response::new(self.to_proto(record)?))
    }

    async fn import_model(
        &self,
        req: Request<tonic::Streaming<pb::ImportModelRequest>>,
    ) -> Result<Response<pb::ImportModelResponse>, Status> {
        self.admin.authorize(req.metadata(), "ImportModel")?;
        let (record, new) = self.importer.import(&self.store, &self.bus, req.into_inner()).await?;
        Ok(Response::new(pb::ImportModelResponse { version: Some(self.to_proto(record)?), already_registered: !new }))
    }

    async fn set_alias(&self, req: Request<pb::SetAliasRequest>) -> Result<Response<pb::ModelVersion>, Status> {
        self.admin.authorize(req.metadata(), "SetAlias")?;
        let req = req.into_inner();
        check_alias(&req.alias)?;
        if req.alias == "previous" {
            return Err(Status::invalid_argument("`previous` is moved by the registry when `production` moves"));
        }
        let cause = if req.by.is_empty() { "grpc:SetAlias".to_owned() } else { format!("grpc:SetAlias by {}", req.by) };
        let (pipeline, alias, version, reason) =
            (req.pipeline.clone(), req.alias.clone(), req.version, req.reason.clone());
        commit(&self.store, move |s| s.set_alias(&pipeline, &alias, version, &reason, &cause)).await?;
        info!(pipeline = %req.pipeline, alias = %req.alias, version = req.version, "alias set");
        let record = self.store.model(&req.pipeline, req.version)?;
        Ok(Response::new(self.to_proto(record)?))
    }
}
