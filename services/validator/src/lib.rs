//! The validator: checks every ingested dataset against its pipeline's declared schema and
//! publishes `data.validated`, or `data.rejected` with a per-column report. A rejected dataset is
//! never trained on.

pub mod checks;
pub mod profile;

use std::net::SocketAddr;

use mlops_proto as pb;
use mlops_shared::bus::{Bus, ConsumerSpec, DATASETS_BUCKET, HandlerError, PROFILES_KV};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::Envelope;
use mlops_shared::http::{Readiness, ops_router, serve};
use mlops_shared::ids::Sha256;
use mlops_shared::objects::Objects;
use mlops_shared::spec::{Environment, SpecStore};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
    /// The profile of each pipeline's newest accepted version, for the drift comparators.
    profiles: async_nats::jetstream::kv::Store,
}

/// Runs the validator until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    // A bad certificate fails the start, before the service touches NATS.
    let tls = config.tls.server_config()?;
    let bus = Bus::connect(&config.nats, "validator", &shutdown).await?;
    bus.provision(config.nats.replicas).await?;
    let v = Validator {
        datasets: bus.objects(DATASETS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        profiles: bus.kv(PROFILES_KV).await?,
        bus: bus.clone(),
    };
    let readiness = Readiness::default();
    readiness.set_ready();
    let http = tokio::spawn(serve(listener, ops_router(readiness), tls, shutdown.clone()));
    bus.consume(ConsumerSpec::events::<pb::DataIngested>("validator"), shutdown.child_token(), |e| v.on_ingested(e))
        .await?;
    http.await??;
    Ok(())
}

impl Validator {
    async fn on_ingested(&self, e: Envelope<pb::DataIngested>) -> Result<(), HandlerError> {
        let ctx = e.follow();
        let d = &e.payload;
        let spec = self
            .specs
            .get(&d.pipeline)
            .await?
            .ok_or_else(|| HandlerError::permanent(format!("pipeline `{}` not found", d.pipeline)))?;
        let sha = Sha256::parse(d.dataset_id.clone()).map_err(|err| HandlerError::permanent(err.to_string()))?;
        let environment = Environment::parse(&d.environment).map_err(HandlerError::Permanent)?;
        // Streamed to a temporary file and read in batches: memory stays bounded whatever the size.
        let file = self.datasets.download_verified(&sha, &std::env::temp_dir()).await?;
        let name = format!("data.{}", d.format);
        let previous = self
            .profiles
            .get(d.pipeline.as_str())
            .await
            .map_err(|e| HandlerError::Transient(anyhow::anyhow!("reading the previous profile: {e}")))?
            .and_then(|b| pb::DatasetProfile::decode(b).ok());
        let report = tokio::task::spawn_blocking(move || {
            let batches = mlops_data::open_typed(
                mlops_data::Source::File(file),
                &name,
                &mlops_data::Limits::default(),
                &spec.numeric_features(),
            );
            checks::validate(batches, &spec, previous.as_ref(), environment)
        })
        .await
        .map_err(|e| HandlerError::Transient(anyhow::anyhow!("validation task failed: {e}")))?;
        if report.blocked() {
            let reason = report.summary();
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
            };
            self.bus.publish(&format!("rejected-{}-{}", d.pipeline, d.dataset_id), &ctx, &event).await?;
        } else {
            info!(pipeline = %d.pipeline, dataset = %sha.short(), rows = report.rows, "dataset validated");
            metrics::counter!("mlops_datasets_validated_total", "pipeline" => d.pipeline.clone()).increment(1);
            // Training data becomes the reference the next version is compared with; serving data
            // is compared with it and leaves it alone.
            if environment == Environment::Training {
                self.profiles
                    .put(d.pipeline.as_str(), report.profile.encode_to_vec().into())
                    .await
                    .map_err(|e| HandlerError::Transient(anyhow::anyhow!("storing the profile: {e}")))?;
            }
            let event = pb::DataValidated {
                pipeline: d.pipeline.clone(),
                dataset_id: d.dataset_id.clone(),
                rows: report.rows,
                warnings: report.warnings(),
                profile: Some(report.profile),
                environment: environment.as_str().into(),
            };
            self.bus.publish(&format!("validated-{}-{}", d.pipeline, d.dataset_id), &ctx, &event).await?;
        }
        Ok(())
    }
}
