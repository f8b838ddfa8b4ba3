//! Ingest: turns uploads (gRPC client streaming) and `data.arrived` events (an object already in the
//! `datasets` bucket) into dataset versions. A version's id is the sha256 of its content; its blob
//! goes to the object store and its row to the redb catalog, then `data.ingested` is published.
//! The same content twice is one version: no second validation, no second training.

pub mod catalog;
pub mod paths;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, ConsumerSpec, DATASETS_BUCKET, HandlerError, Interrupted, off_runtime};
use mlops_shared::config::NatsArgs;
use mlops_shared::events::{Envelope, EventContext};
use mlops_shared::format::Format;
use mlops_shared::ids::PipelineName;
use mlops_shared::objects::{ObjectError, Objects, StageError, Staged, Stager};
use mlops_shared::service::Service;
use mlops_shared::spec::{Environment, SpecStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use crate::catalog::{Catalog, DatasetRecord, Verdict};

/// Ingest configuration.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "mlops-ingest", version, about = "Ingest: uploads and data-arrival events become dataset versions")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub tls: mlops_shared::tls::TlsArgs,
    /// gRPC and HTTP (/healthz, /metrics) listen address.
    #[arg(long, env = "MLOPS_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,
    /// Directory of the catalog's redb file.
    #[arg(long, env = "MLOPS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Largest dataset accepted, in bytes.
    #[arg(long, env = "MLOPS_MAX_UPLOAD_BYTES", default_value_t = 256 << 20)]
    pub max_upload_bytes: u64,
    /// Directories whose files `data.arrived` events may name by `path` (repeat, or comma-separate).
    #[arg(long = "allowed-dir", env = "MLOPS_INGEST_ALLOWED_DIRS", value_delimiter = ',')]
    pub allowed_dirs: Vec<PathBuf>,
}

impl mlops_shared::service::ServiceConfig for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Errors of one ingestion, mapped to gRPC codes and to ack/term.
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error("{0}")]
    BadInput(String),
    #[error("pipeline `{0}` not found; apply its spec first (mlops pipeline apply)")]
    UnknownPipeline(String),
    #[error(transparent)]
    Unavailable(anyhow::Error),
    /// A catalog write on the blocking pool did not finish.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl From<IngestError> for Status {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::BadInput(m) => Status::invalid_argument(m),
            IngestError::UnknownPipeline(_) => Status::not_found(e.to_string()),
            IngestError::Unavailable(e) => Status::unavailable(format!("{e:#}")),
            IngestError::Interrupted(e) => Status::internal(e.to_string()),
        }
    }
}

impl From<IngestError> for HandlerError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Unavailable(e) => HandlerError::Transient(e),
            IngestError::Interrupted(e) => e.into(),
            other => HandlerError::Permanent(other.to_string()),
        }
    }
}

struct Ingest {
    bus: Bus,
    catalog: Arc<Catalog>,
    datasets: Objects,
    specs: SpecStore,
    max_bytes: u64,
    allowed_dirs: Vec<PathBuf>,
    /// Where arriving data is staged (as anonymous files) on its way to the object store.
    staging: PathBuf,
}

/// Runs ingest until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let catalog = Arc::new(Catalog::open(&config.data_dir.join("ingest.redb")).context("opening dataset catalog")?);
    let allowed_dirs = config
        .allowed_dirs
        .iter()
        .map(|d| d.canonicalize().with_context(|| format!("allowed directory {}", d.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut service = Service::start("ingest", &config.nats, &config.tls, &shutdown).await?;
    let bus = service.bus.clone();
    let ingest = Arc::new(Ingest {
        datasets: bus.objects(DATASETS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        bus,
        catalog,
        max_bytes: config.max_upload_bytes,
        allowed_dirs,
        staging: config.data_dir.clone(),
    });
    let arrived = ConsumerSpec::events::<pb::DataArrived>("ingest-arrived");
    service.consume(arrived, ingest.clone(), |i, e| async move { Ok(i.on_arrived(e).await?) });
    let validated = ConsumerSpec::events::<pb::DataValidated>("ingest-validated");
    service.consume(validated, ingest.clone(), |i, e| async move { Ok(i.on_validated(e).await?) });
    let rejected = ConsumerSpec::events::<pb::DataRejected>("ingest-rejected");
    service.consume(rejected, ingest.clone(), |i, e| async move { Ok(i.on_rejected(e).await?) });
    let grpc = tonic::service::Routes::new(
        pb::ingest_server::IngestServer::new(IngestApi(ingest)).max_decoding_message_size(8 << 20),
    )
    .into_axum_router();
    service.serve(listener, Some(grpc)).await
}

fn summarize(warnings: &[pb::ColumnReport]) -> String {
    warnings
        .iter()
        .flat_map(|c| c.anomalies.iter().map(move |a| format!("{}: {}", c.column, a.message)))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Ingest {
    /// A stager for one arriving dataset, with the upload limit.
    fn stager(&self) -> Result<Stager, IngestError> {
        Stager::new(&self.staging, self.max_bytes).map_err(|e| IngestError::Unavailable(e.into()))
    }

    /// Stores and catalogues a staged dataset for `pipeline`, then publishes `data.ingested` once.
    /// Returns the catalog row and whether the content was already known. Its span is the root
    /// of the trace that follows the data through the cascade.
    #[tracing::instrument(skip_all, fields(pipeline, source))]
    async fn ingest(
        &self,
        pipeline: &str,
        source: &str,
        format: &str,
        environment: Environment,
        staged: &Staged,
        ctx: EventContext,
    ) -> Result<(DatasetRecord, bool), IngestError> {
        let name = PipelineName::new(pipeline).map_err(|e| IngestError::BadInput(e.to_string()))?;
        let format = match format {
            "" => mlops_shared::format::detect(source, &staged.head).0,
            named => Format::parse(named).ok_or_else(|| {
                IngestError::BadInput(format!("format {named:?} is not supported (csv, parquet, jsonl)"))
            })?,
        };
        if staged.size == 0 {
            return Err(IngestError::BadInput("the dataset is empty (0 bytes)".into()));
        }
        let spec = self.specs.get(name.as_str()).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        if spec.is_none() {
            return Err(IngestError::UnknownPipeline(name.to_string()));
        }
        let id = staged.sha.to_string();
        let unavailable = |e: catalog::CatalogError| IngestError::Unavailable(e.into());
        let mut record = match self.catalog.get(&id, name.as_str()).map_err(unavailable)? {
            Some(existing) if existing.published => {
                info!(pipeline = %name, dataset = %&id[..12], "dataset already known, nothing to do");
                metrics::counter!("mlops_datasets_duplicate_total").increment(1);
                return Ok((existing, true));
            }
            Some(unpublished) => unpublished,
            None => DatasetRecord {
                dataset_id: id.clone(),
                pipeline: name.to_string(),
                source: source.into(),
                format: format.as_str().into(),
                size_bytes: staged.size,
                arrived_unix_ms: mlops_shared::now_unix_ms(),
                verdict: Verdict::Pending,
                rows: 0,
                verdict_detail: String::new(),
                published: false,
                report_hex: String::new(),
                environment: environment.as_str().into(),
            },
        };
        self.datasets.put_staged(staged).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        self.record(&record).await?;
        let event = pb::DataIngested {
            pipeline: name.to_string(),
            dataset_id: id.clone(),
            size_bytes: record.size_bytes,
            source: record.source.clone(),
            format: record.format.clone(),
            environment: record.environment.clone(),
        };
        // The id is stable, so a retry after a crash here is dropped by the stream's dedup window.
        self.bus
            .publish(&format!("ingested-{name}-{id}"), &ctx, &event)
            .await
            .map_err(|e| IngestError::Unavailable(e.into()))?;
        record.published = true;
        self.record(&record).await?;
        metrics::counter!("mlops_datasets_ingested_total").increment(1);
        info!(pipeline = %name, dataset = %&id[..12], bytes = record.size_bytes, "dataset ingested");
        Ok((record, false))
    }

    /// Writes a catalog row (off the runtime: the commit waits for the disk).
    async fn record(&self, record: &DatasetRecord) -> Result<(), IngestError> {
        let (catalog, record) = (self.catalog.clone(), record.clone());
        off_runtime(move || catalog.put(&record).map_err(|e| IngestError::Unavailable(e.into()))).await
    }

    async fn on_arrived(&self, e: Envelope<pb::DataArrived>) -> Result<(), IngestError> {
        let ctx = e.follow();
        let a = e.payload;
        let environment =
            Environment::parse(&a.environment).map_err(|m| IngestError::BadInput(format!("data.arrived: {m}")))?;
        let too_large = |what: &str| {
            IngestError::BadInput(format!("data.arrived: {what} is over the limit of {} bytes", self.max_bytes))
        };
        let (staged, origin) = if a.path.is_empty() {
            let staged =
                self.datasets.stage_named(&a.object, &self.staging, self.max_bytes).await.map_err(|err| match err {
                    ObjectError::NotFound { .. } | ObjectError::TooLarge { .. } => {
                        IngestError::BadInput(format!("data.arrived: {err}"))
                    }
                    other => IngestError::Unavailable(other.into()),
                })?;
            (staged, format!("object:{}", a.object))
        } else {
            let file = paths::resolve(&a.path, &self.allowed_dirs).map_err(IngestError::BadInput)?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if size > self.max_bytes {
                return Err(too_large(&format!("{} ({size} bytes)", a.path)));
            }
            let reader = tokio::fs::File::open(&file).await.map_err(|e| IngestError::Unavailable(e.into()))?;
            let mut stager = self.stager()?;
            stager.copy_from(reader).await.map_err(|e| match e {
                StageError::TooLarge(_) => too_large(&a.path),
                StageError::Io(e) => IngestError::Unavailable(e.into()),
            })?;
            let staged = stager.finish().await.map_err(|e| IngestError::Unavailable(e.into()))?;
            (staged, format!("file:{}", file.display()))
        };
        let source = if a.source.is_empty() { origin.clone() } else { a.source };
        let name = if origin.starts_with("object:") { a.object.as_str() } else { a.path.as_str() };
        let format = mlops_shared::format::detect(name, &staged.head).0.as_str();
        self.ingest(&a.pipeline, &source, format, environment, &staged, ctx).await?;
        Ok(())
    }

    async fn on_validated(&self, e: Envelope<pb::DataValidated>) -> Result<(), IngestError> {
        let v = e.payload;
        let report = pb::Dataset { anomalies: v.warnings.clone(), profile: v.profile, ..Default::default() };
        self.verdict(v.dataset_id, v.pipeline, Verdict::Accepted, v.rows, summarize(&v.warnings), &report).await
    }

    async fn on_rejected(&self, e: Envelope<pb::DataRejected>) -> Result<(), IngestError> {
        let r = e.payload;
        let report = pb::Dataset { anomalies: r.columns, profile: r.profile, ..Default::default() };
        self.verdict(r.dataset_id, r.pipeline, Verdict::Rejected, r.rows, r.reason, &report).await
    }

    /// Records a verdict and its report in the catalog (off the runtime: the commit waits for
    /// the disk).
    async fn verdict(
        &self,
        id: String,
        pipeline: String,
        verdict: Verdict,
        rows: u64,
        detail: String,
        report: &pb::Dataset,
    ) -> Result<(), IngestError> {
        use prost::Message as _;
        let (catalog, report) = (self.catalog.clone(), hex::encode(report.encode_to_vec()));
        off_runtime(move || match catalog.set_verdict(&id, &pipeline, verdict, rows, &detail, report) {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(IngestError::BadInput(format!("dataset {id} of pipeline `{pipeline}` is not in the catalog")))
            }
            Err(e) => Err(IngestError::Unavailable(e.into())),
        })
        .await
    }
}

fn dataset_proto(r: DatasetRecord, duplicate: bool) -> pb::Dataset {
    use prost::Message as _;
    // Written by this service from a message it encoded; an unreadable one is shown as absent.
    let report =
        hex::decode(&r.report_hex).ok().and_then(|b| pb::Dataset::decode(b.as_slice()).ok()).unwrap_or_default();
    pb::Dataset {
        anomalies: report.anomalies,
        profile: report.profile,
        dataset_id: r.dataset_id,
        pipeline: r.pipeline,
        source: r.source,
        format: r.format,
        size_bytes: r.size_bytes,
        arrived_unix_ms: r.arrived_unix_ms,
        verdict: r.verdict.as_str().into(),
        rows: r.rows,
        verdict_detail: r.verdict_detail,
        duplicate,
        environment: r.environment,
    }
}

struct IngestApi(Arc<Ingest>);

#[tonic::async_trait]
impl pb::ingest_server::Ingest for IngestApi {
    async fn upload(&self, req: Request<Streaming<pb::UploadRequest>>) -> Result<Response<pb::Dataset>, Status> {
        use pb::upload_request::Part;
        let mut stream = req.into_inner();
        let header = match stream.next().await {
            Some(Ok(pb::UploadRequest { part: Some(Part::Header(h)) })) => h,
            Some(Ok(_)) => return Err(Status::invalid_argument("the first upload message must be the header")),
            Some(Err(e)) => return Err(e),
            None => return Err(Status::invalid_argument("empty upload: no header")),
        };
        PipelineName::new(&header.pipeline).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let environment = Environment::parse(&header.environment).map_err(Status::invalid_argument)?;
        // Staged to a file as it streams in: an upload of any size is never held in memory.
        let mut stager = self.0.stager()?;
        while let Some(msg) = stream.next().await {
            match msg?.part {
                Some(Part::Chunk(c)) => stager.write(&c).await.map_err(|e| match e {
                    StageError::TooLarge(limit) => {
                        Status::invalid_argument(format!("upload exceeds the limit of {limit} bytes"))
                    }
                    StageError::Io(e) => Status::unavailable(format!("staging the upload: {e}")),
                })?,
                Some(Part::Header(_)) => return Err(Status::invalid_argument("a second header in one upload")),
                None => {}
            }
        }
        let staged = stager.finish().await.map_err(|e| Status::unavailable(format!("staging the upload: {e}")))?;
        if header.size_bytes > 0 && staged.size != header.size_bytes {
            return Err(Status::invalid_argument(format!(
                "the upload carried {} bytes where its header announced {}",
                staged.size, header.size_bytes
            )));
        }
        // A run id from the content and pipeline, so a retried upload joins the same run.
        let ctx = EventContext::new_run(format!("run-{}-{}", header.pipeline, &staged.sha.as_str()[..16]));
        let (record, duplicate) =
            self.0.ingest(&header.pipeline, &header.source, &header.format, environment, &staged, ctx).await?;
        Ok(Response::new(dataset_proto(record, duplicate)))
    }

    async fn get_dataset(&self, req: Request<pb::GetDatasetRequest>) -> Result<Response<pb::Dataset>, Status> {
        let id = req.into_inner().dataset_id;
        let record = self.0.catalog.find(&id).map_err(|e| Status::internal(e.to_string()))?;
        let record = record.ok_or_else(|| Status::not_found(format!("dataset {id} not found")))?;
        Ok(Response::new(dataset_proto(record, false)))
    }

    async fn list_datasets(
        &self,
        req: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let req = req.into_inner();
        let verdict = match req.verdict.as_str() {
            "" => None,
            name => Some(Verdict::parse(name).ok_or_else(|| {
                Status::invalid_argument(format!("verdict {name:?}: use `pending`, `accepted` or `rejected`"))
            })?),
        };
        let records = self.0.catalog.list(&req.pipeline, verdict).map_err(|e| Status::internal(e.to_string()))?;
        let datasets = records.into_iter().map(|r| dataset_proto(r, false)).collect();
        Ok(Response::new(pb::ListDatasetsResponse { datasets }))
    }
}
