//! The validator: checks every ingested dataset against its pipeline's declared schema and
//! publishes `data.validated`, or `data.rejected` with a per-column report. A rejected dataset is
//! never trained on.

pub mod checks;
pub mod error;
pub mod profile;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use mlops_proto as pb;
use mlops_shared::bus::{Bus, ConsumerSpec, DATASETS_BUCKET, PROFILES_KV, off_runtime};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::Envelope;
use mlops_shared::ids::Sha256;
use mlops_shared::objects::{ObjectError, Objects};
use mlops_shared::service::Service;
use mlops_shared::spec::{Environment, Origin, SpecStore};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::ValidatorError;

/// Validator configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-validator", version, about = "Validator: datasets against their pipeline's schema")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub tls: mlops_shared::tls::TlsArgs,
    /// HTTP (/healthz, /metrics) listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

struct Validator {
    bus: Bus,
    datasets: Objects,
    specs: SpecStore,
    /// Feature views, whose accepted batches the validator writes to the feature store.
    features: mlops_features::FeatureStore,
    /// The profile of each pipeline's newest accepted version, for the drift comparators.
    profiles: async_nats::jetstream::kv::Store,
}

/// Runs the validator until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut service = Service::start("validator", &config.nats, &config.tls, &shutdown).await?;
    let bus = service.bus.clone();
    let v = Arc::new(Validator {
        datasets: bus.objects(DATASETS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        features: mlops_features::FeatureStore::open(&bus).await?,
        profiles: bus.kv(PROFILES_KV).await?,
        bus,
    });
    let ingested = ConsumerSpec::events::<pb::DataIngested>("validator");
    service.consume(ingested, v, |v, e| async move { Ok(v.on_ingested(e).await?) });
    service.serve(listener, None).await
}

impl Validator {
    /// The checks data arriving under `name` is judged by: its pipeline's spec, or its feature
    /// view's as a spec (with the view).
    async fn checks_of(
        &self,
        name: &str,
    ) -> Result<(mlops_shared::spec::PipelineSpec, Option<mlops_shared::spec::FeatureViewSpec>), ValidatorError> {
        if let Some(spec) = self.specs.get(name).await? {
            return Ok((spec, None));
        }
        match self.features.view(name).await? {
            Some(view) => Ok((views::validation_spec(&view), Some(view))),
            None => Err(ValidatorError::UnknownPipeline(name.to_owned())),
        }
    }

    /// Reads a view's accepted batch with its times, appends it to the offline log and merges it
    /// into the online store, then announces `features.materialised`. Rows that do not read (a
    /// time missing or far in the future) refuse the batch: the reason is returned.
    async fn store_features(
        &self,
        view: &mlops_shared::spec::FeatureViewSpec,
        file: std::fs::File,
        name: &str,
        d: &pb::DataIngested,
        ctx: &mlops_shared::events::EventContext,
    ) -> Result<Option<String>, ValidatorError> {
        let (v, name, arrived) = (view.clone(), name.to_owned(), d.arrived_unix_ms);
        let rows = off_runtime(move || {
            Ok::<_, ValidatorError>(views::read_rows(&v, mlops_data::Source::File(file), &name, arrived))
        })
        .await?;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return Ok(Some(format!("feature view `{}`: {e}", view.name))),
        };
        let (offline_file, _) = self.features.append(view, &rows, &d.dataset_id, arrived).await?;
        let online = self.features.materialise(view, &rows).await?;
        let lag_ms = mlops_shared::now_unix_ms() - arrived;
        metrics::counter!("mlops_features_rows_total", "view" => d.pipeline.clone()).increment(rows.len() as u64);
        metrics::histogram!("mlops_features_materialisation_lag_seconds").record(lag_ms as f64 / 1000.0);
        info!(view = %view.name, rows = rows.len(), written = online.written, lag_ms, "features materialised");
        let event = pb::FeaturesMaterialised {
            pipeline: d.pipeline.clone(),
            dataset_id: d.dataset_id.clone(),
            rows: rows.len() as u64,
            offline_file,
            entities_written: online.written,
            entities_kept: online.kept,
            arrived_unix_ms: arrived,
            lag_ms,
        };
        let id_suffix = mlops_shared::events::round_suffix(d.round);
        self.bus.publish(&format!("materialised-{}-{}{id_suffix}", d.pipeline, d.dataset_id), ctx, &event).await?;
        Ok(None)
    }

    /// Whether `d` is a successor an erasure wrote whose predecessor's offline file the erasure
    /// wrote again without the subject's rows, in its place in write order: its rows are stored
    /// already. A successor keeps its first predecessor's arrival, which names that file (a
    /// successor's successor included); a predecessor never stored (rejected) leaves its
    /// successor to be stored as any batch.
    async fn written_in_place(
        &self,
        view: &mlops_shared::spec::FeatureViewSpec,
        d: &pb::DataIngested,
    ) -> Result<bool, ValidatorError> {
        if d.erased_from.is_empty() {
            return Ok(false);
        }
        let written = mlops_features::offline::written_prefix(view.name.as_str(), d.arrived_unix_ms);
        Ok(self.features.files(view.name.as_str()).await?.iter().any(|f| f.starts_with(&written)))
    }

    async fn on_ingested(&self, e: Envelope<pb::DataIngested>) -> Result<(), ValidatorError> {
        let ctx = e.follow();
        let d = &e.payload;
        let (spec, view) = self.checks_of(&d.pipeline).await?;
        let sha = Sha256::parse(d.dataset_id.clone())?;
        let environment = Environment::parse(&d.environment).map_err(ValidatorError::BadEnvironment)?;
        let origin = Origin::parse(&d.origin).map_err(ValidatorError::BadEnvironment)?;
        let validation_hash = view.as_ref().map_or_else(|| spec.validation_hash(), |v| v.hash());
        // Each round of validation of one content has its own verdict events.
        let id_suffix = mlops_shared::events::round_suffix(d.round);
        // Streamed to a temporary file and read in batches: memory stays bounded whatever the size.
        let file = self.datasets.download_verified(&sha, &std::env::temp_dir()).await?;
        let second_read = file
            .try_clone()
            .map_err(|e| ObjectError::Store { bucket: DATASETS_BUCKET, message: format!("a second handle: {e}") })?;
        let name = format!("data.{}", d.format);
        let previous = self
            .profiles
            .get(d.pipeline.as_str())
            .await
            .map_err(|e| ValidatorError::ReadProfile(e.to_string()))?
            .and_then(|b| pb::DatasetProfile::decode(b).ok());
        let had_reference = previous.is_some();
        let report = off_runtime({
            let name = name.clone();
            move || {
                let batches = mlops_data::open_typed(
                    mlops_data::Source::File(file),
                    &name,
                    &mlops_data::Limits::default(),
                    &spec.numeric_features(),
                );
                Ok::<_, ValidatorError>(checks::validate(batches, &spec, previous.as_ref(), environment, origin))
            }
        })
        .await?;
        // A view's batch must also read with its times; its rows reach the store before the
        // verdict is announced.
        let refusal = match &view {
            Some(view) if !report.blocked() && !self.written_in_place(view, d).await? => {
                self.store_features(view, second_read, &name, d, &ctx).await?
            }
            _ => None,
        };
        if report.blocked() || refusal.is_some() {
            let reason = refusal.unwrap_or_else(|| report.summary());
            warn!(pipeline = %d.pipeline, dataset = %sha.short(), %reason, "dataset rejected");
            metrics::counter!("mlops_datasets_rejected_total", "pipeline" => d.pipeline.clone()).increment(1);
            let event = pb::DataRejected {
                pipeline: d.pipeline.clone(),
                dataset_id: d.dataset_id.clone(),
                rows: report.rows,
                reason,
                columns: report.columns,
                profile: Some(report.profile),
                environment: environment.as_str().into(),
                validation_hash,
                round: d.round,
                origin: origin.as_str().into(),
            };
            self.bus.publish(&format!("rejected-{}-{}{id_suffix}", d.pipeline, d.dataset_id), &ctx, &event).await?;
        } else {
            info!(pipeline = %d.pipeline, dataset = %sha.short(), rows = report.rows, "dataset validated");
            metrics::counter!("mlops_datasets_validated_total", "pipeline" => d.pipeline.clone()).increment(1);
            // Training data becomes the reference the next version is compared with; serving data
            // is compared with it and leaves it alone, and so does known data judged again or an
            // erasure's successor (an old file must not replace the newest as the reference),
            // unless there is none yet.
            let first_judged = d.round == 0 && d.erased_from.is_empty();
            if environment == Environment::Training && (first_judged || !had_reference) {
                self.profiles
                    .put(d.pipeline.as_str(), report.profile.encode_to_vec().into())
                    .await
                    .map_err(|e| ValidatorError::StoreProfile(e.to_string()))?;
            }
            let event = pb::DataValidated {
                pipeline: d.pipeline.clone(),
                dataset_id: d.dataset_id.clone(),
                rows: report.rows,
                warnings: report.warnings(),
                profile: Some(report.profile),
                environment: environment.as_str().into(),
                validation_hash,
                round: d.round,
                arrived_unix_ms: d.arrived_unix_ms,
                origin: origin.as_str().into(),
                erased_from: d.erased_from.clone(),
            };
            self.bus.publish(&format!("validated-{}-{}{id_suffix}", d.pipeline, d.dataset_id), &ctx, &event).await?;
        }
        Ok(())
    }
}
