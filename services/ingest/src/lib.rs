//! Ingest: turns uploads (gRPC client streaming) and `data.arrived` events (an object already in the
//! `datasets` bucket) into dataset versions. A version's id is the sha256 of its content; its blob
//! goes to the object store and its row to the redb catalog, then `data.ingested` is published.
//! The same content twice is one version: no second validation, no second training.

pub mod catalog;
mod erase;
pub mod lake;
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
use mlops_shared::ids::{PipelineName, PrefixError};
use mlops_shared::objects::external::Location;
use mlops_shared::objects::{ObjectError, Objects, StageError, Staged, Stager};
use mlops_shared::pii::Pseudonymiser;
use mlops_shared::service::Service;
use mlops_shared::spec::{Environment, Origin, SpecStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::catalog::{Catalog, DatasetRecord, Found, Judgement, Recorded, Verdict};

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
    /// Lake prefixes (`s3://bucket/folder/`, `gs://…`, `az://…`) whose objects `data.arrived`
    /// events and bucket notifications may name (repeat, or comma-separate); credentials from
    /// the provider's usual environment variables.
    #[arg(long = "allowed-uri", env = "MLOPS_INGEST_ALLOWED_URIS", value_delimiter = ',')]
    pub allowed_uris: Vec<String>,
    /// The key of `pii: pseudonymise` (HMAC-SHA256, at least 32 bytes): a column declared so has
    /// its values replaced by keyed hashes before anything is stored. Never printed.
    #[arg(long, env = "MLOPS_PII_KEY", hide_env_values = true)]
    pub pii_key: Option<String>,
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
    #[error("pipeline `{0}` not found (nor a feature view of that name); apply its spec first (mlops pipeline apply)")]
    UnknownPipeline(String),
    /// An erasure whose value no row holds: nothing was changed.
    #[error("erasure: {0}")]
    NothingMatched(String),
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
            IngestError::UnknownPipeline(_) | IngestError::NothingMatched(_) => Status::not_found(e.to_string()),
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
    /// Feature views, whose batches arrive as a pipeline's datasets do.
    features: mlops_features::FeatureStore,
    max_bytes: u64,
    allowed_dirs: Vec<PathBuf>,
    /// Lake prefixes, each ending in `/`.
    allowed_uris: Vec<String>,
    /// Where arriving data is staged (as anonymous files) on its way to the object store.
    staging: PathBuf,
    /// The keyed hash of `pii: pseudonymise`, when `MLOPS_PII_KEY` is set.
    pseudonymiser: Option<Arc<Pseudonymiser>>,
    /// Erasures run one at a time.
    erasing: tokio::sync::Mutex<()>,
    /// The prediction archive, which an erasure by a feature reaches.
    archive: mlops_archive::Archive,
    /// Held while content is stored and catalogued, or checked and deleted.
    content: ContentLocks,
}

/// Locks on content by id (striped): storing content and cataloguing it, and checking who holds
/// content and deleting it (for personal data, or by an erasure), happen under the same lock, so
/// a deletion never removes content another pipeline has just catalogued.
struct ContentLocks(Vec<tokio::sync::Mutex<()>>);

impl ContentLocks {
    fn new() -> Self {
        Self((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    async fn lock(&self, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = id.bytes().take(4).fold(0usize, |h, b| h * 31 + b as usize) % self.0.len();
        self.0[stripe].lock().await
    }
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
    let allowed_uris = lake::allowed_prefixes(&config.allowed_uris).map_err(anyhow::Error::msg)?;
    let pseudonymiser = config.pii_key.as_deref().map(|k| Pseudonymiser::new(k.as_bytes()).map(Arc::new));
    let pseudonymiser = pseudonymiser.transpose().map_err(anyhow::Error::msg)?;
    let mut service = Service::start("ingest", &config.nats, &config.tls, &shutdown).await?;
    let bus = service.bus.clone();
    let ingest = Arc::new(Ingest {
        datasets: bus.objects(DATASETS_BUCKET).await?,
        specs: SpecStore::open(&bus).await?,
        features: mlops_features::FeatureStore::open(&bus).await?,
        bus,
        catalog,
        max_bytes: config.max_upload_bytes,
        allowed_dirs,
        allowed_uris,
        staging: config.data_dir.clone(),
        pseudonymiser,
        erasing: tokio::sync::Mutex::new(()),
        archive: mlops_archive::Archive::open(&service.bus).await?,
        content: ContentLocks::new(),
    });
    // Erasures left unfinished (a crash, a failure part-way) are finished at start-up and retried
    // every minute until they are.
    let (resuming, stop) = (ingest.clone(), service.shutdown());
    service.spawn(async move {
        loop {
            if let Err(e) = resuming.resume_erasures().await {
                tracing::error!(error = %e, "unfinished erasures could not be read; tried again in a minute");
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            }
        }
    });
    let arrived = ConsumerSpec::events::<pb::DataArrived>("ingest-arrived");
    service.consume(arrived, ingest.clone(), |i, e| async move { Ok(i.on_arrived(e).await?) });
    let notified = ConsumerSpec::events::<lake::Notification>("ingest-lake");
    service.consume(notified, ingest.clone(), |i, e| async move { Ok(i.on_notification(e).await?) });
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

    /// Stages a file ingest wrote itself (a rewritten dataset), hashing it on the way.
    async fn stage_file(&self, file: std::fs::File) -> Result<Staged, IngestError> {
        let mut stager = self.stager()?;
        stager.copy_from(tokio::fs::File::from_std(file)).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        stager.finish().await.map_err(|e| IngestError::Unavailable(e.into()))
    }

    /// Stores and catalogues a staged dataset for `pipeline`, then publishes `data.ingested` once.
    /// Content already known is validated again when its verdict was given under other checks
    /// than the spec's current ones. Returns the catalog row and what the arrival made of the
    /// content. Its span is the root
    /// of the trace that follows the data through the cascade.
    #[tracing::instrument(skip_all, fields(pipeline))]
    async fn ingest(
        &self,
        pipeline: &str,
        came: Provenance,
        format: &str,
        environment: Environment,
        staged: &Staged,
        ctx: EventContext,
    ) -> Result<(DatasetRecord, Arrival), IngestError> {
        let name = PipelineName::new(pipeline).map_err(|e| IngestError::BadInput(e.to_string()))?;
        let format = match format {
            "" => mlops_shared::format::detect(&came.source, &staged.head).0,
            named => Format::parse(named).ok_or_else(|| {
                IngestError::BadInput(format!("format {named:?} is not supported (csv, parquet, jsonl)"))
            })?,
        };
        if staged.size == 0 {
            return Err(IngestError::BadInput("the dataset is empty (0 bytes)".into()));
        }
        let Checks { validation_hash, environment, pseudonymised } = self.checks_of(name.as_str(), environment).await?;
        let rewritten = self.pseudonymise(name.as_str(), pseudonymised, format, staged).await?;
        let (staged, format, came) = match &rewritten {
            Some((rewritten, columns)) => {
                let source = format!("{} (pseudonymised: {})", came.source, columns.join(", "));
                (rewritten, Format::Parquet, Provenance { source, ..came })
            }
            None => (staged, format, came),
        };
        let id = staged.sha.to_string();
        let unavailable = |e: catalog::CatalogError| IngestError::Unavailable(e.into());
        let held = self.content.lock(&id).await;
        let record = match self.catalog.get(&id, name.as_str()).map_err(unavailable)? {
            Some(erased) if erased.erased.is_some() => {
                info!(pipeline = %name, dataset = %&id[..12], "content an erasure removed: not stored again");
                return Ok((erased, Arrival::Known));
            }
            Some(known) if known.published && judged_under_other_checks(&known, &validation_hash) => {
                info!(pipeline = %name, dataset = %&id[..12], "dataset known, judged under an older spec: validating it again");
                // Stored again if it was deleted for personal data its spec then refused.
                self.datasets.put_staged(staged).await.map_err(|e| IngestError::Unavailable(e.into()))?;
                drop(held);
                return Ok((self.revalidate(&known, ctx).await?, Arrival::Revalidating));
            }
            Some(existing) if existing.published => {
                info!(pipeline = %name, dataset = %&id[..12], "dataset already known, nothing to do");
                metrics::counter!("mlops_datasets_duplicate_total").increment(1);
                return Ok((existing, Arrival::Known));
            }
            Some(unpublished) => unpublished,
            None => DatasetRecord {
                dataset_id: id.clone(),
                pipeline: name.to_string(),
                source: came.source,
                format: format.as_str().into(),
                size_bytes: staged.size,
                arrived_unix_ms: mlops_shared::now_unix_ms(),
                environment: environment.as_str().into(),
                origin: came.origin.as_str().into(),
                feedback: came.feedback,
                ..DatasetRecord::default()
            },
        };
        self.datasets.put_staged(staged).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        self.record(&record).await?;
        drop(held);
        let record = self.publish_ingested(record, &ctx).await?;
        metrics::counter!("mlops_datasets_ingested_total").increment(1);
        info!(pipeline = %name, dataset = %&id[..12], bytes = record.size_bytes, "dataset ingested");
        Ok((record, Arrival::New))
    }

    /// The staged data rewritten as Parquet with `columns` (those pipeline `name` pseudonymises)
    /// replaced by their keyed hashes, and those columns; `None` when there are none. The data as
    /// it came stays in its anonymous staging file, gone when it is dropped: it is never stored.
    async fn pseudonymise(
        &self,
        name: &str,
        columns: Vec<String>,
        format: Format,
        staged: &Staged,
    ) -> Result<Option<(Staged, Vec<String>)>, IngestError> {
        if columns.is_empty() {
            return Ok(None);
        }
        let Some(pseudonymiser) = self.pseudonymiser.clone() else {
            return Err(IngestError::BadInput(format!(
                "pipeline `{name}` pseudonymises `{}` (pii: pseudonymise), but MLOPS_PII_KEY is not set on ingest: \
                 nothing was stored",
                columns.join("`, `")
            )));
        };
        let unavailable = |e: std::io::Error| IngestError::Unavailable(e.into());
        let source = staged.file.try_clone().map_err(unavailable)?;
        let mut out = tempfile::tempfile_in(&self.staging).map_err(unavailable)?;
        let (names, file) = (columns.clone(), format!("data.{}", format.as_str()));
        let out = off_runtime(move || {
            use std::io::Seek as _;
            let io = |e: std::io::Error| IngestError::Unavailable(e.into());
            let unreadable = |e: mlops_data::DataError| {
                IngestError::BadInput(format!("the data could not be read to pseudonymise it: {e}"))
            };
            let mut source = source;
            source.rewind().map_err(io)?;
            let batches = mlops_data::open(mlops_data::Source::File(source), &file, &mlops_data::Limits::default())
                .map_err(unreadable)?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            mlops_data::pseudonymise_to_parquet(batches, &names, |v| pseudonymiser.pseudonym(v), &mut out)
                .map_err(unreadable)?;
            out.rewind().map_err(io)?;
            Ok::<_, IngestError>(out)
        })
        .await?;
        Ok(Some((self.stage_file(out).await?, columns)))
    }

    /// What data arriving under `name` is judged by, from one read of its pipeline's spec (or its
    /// feature view's): a feature view's batches are always `features`, which a pipeline's may not
    /// claim.
    async fn checks_of(&self, name: &str, environment: Environment) -> Result<Checks, IngestError> {
        let unavailable = |e: &dyn std::fmt::Display| IngestError::Unavailable(anyhow::anyhow!("{e}"));
        if let Some(spec) = self.specs.get(name).await.map_err(|e| unavailable(&e))? {
            if environment == Environment::Features {
                return Err(IngestError::BadInput(format!(
                    "environment `features` is for feature views' batches; `{name}` is a pipeline"
                )));
            }
            let pseudonymised = spec.pseudonymised().into_iter().map(str::to_owned).collect();
            return Ok(Checks { validation_hash: spec.validation_hash(), environment, pseudonymised });
        }
        match self.features.view(name).await.map_err(|e| unavailable(&e))? {
            Some(view) => {
                Ok(Checks { validation_hash: view.hash(), environment: Environment::Features, pseudonymised: vec![] })
            }
            None => Err(IngestError::UnknownPipeline(name.to_owned())),
        }
    }

    /// Publishes `data.ingested` for the record's current round, then marks it published.
    async fn publish_ingested(
        &self,
        mut record: DatasetRecord,
        ctx: &EventContext,
    ) -> Result<DatasetRecord, IngestError> {
        let event = pb::DataIngested {
            pipeline: record.pipeline.clone(),
            dataset_id: record.dataset_id.clone(),
            size_bytes: record.size_bytes,
            source: record.source.clone(),
            format: record.format.clone(),
            environment: record.environment.clone(),
            round: record.round,
            arrived_unix_ms: record.arrived_unix_ms,
            origin: record.origin().as_str().into(),
            erased_from: record.erased_from.clone(),
        };
        // The id is stable per round, so a retry after a crash here is dropped by the stream's
        // dedup window.
        let round = mlops_shared::events::round_suffix(record.round);
        let msg_id = format!("ingested-{}-{}{round}", record.pipeline, record.dataset_id);
        self.bus.publish(&msg_id, ctx, &event).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        // Only the flag: the validator may have answered already, and its verdict stays.
        let (id, pipeline, round) = (record.dataset_id.clone(), record.pipeline.clone(), record.round);
        self.catalog(move |c| c.mark_published(&id, &pipeline, round)).await?;
        record.published = true;
        Ok(record)
    }

    /// Validates a known dataset again: a new round, pending, its `data.ingested` published. A
    /// round already published and awaiting its verdict is left to finish.
    async fn revalidate(&self, known: &DatasetRecord, ctx: EventContext) -> Result<DatasetRecord, IngestError> {
        if known.verdict == Verdict::Pending && known.published {
            return Ok(known.clone());
        }
        let record = if known.verdict == Verdict::Pending {
            known.clone() // a round opened before a crash: publish it now
        } else {
            let (id, pipeline) = (known.dataset_id.clone(), known.pipeline.clone());
            self.catalog(move |c| c.begin_round(&id, &pipeline)).await?.ok_or_else(|| {
                IngestError::BadInput(format!("dataset {} vanished from the catalog", known.dataset_id))
            })?
        };
        metrics::counter!("mlops_datasets_revalidated_total").increment(1);
        self.publish_ingested(record, &ctx).await
    }

    /// Runs `work` on the catalog off the runtime (a commit waits for the disk).
    async fn catalog<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Catalog) -> Result<T, catalog::CatalogError> + Send + 'static,
    ) -> Result<T, IngestError> {
        let catalog = self.catalog.clone();
        off_runtime(move || work(&catalog).map_err(|e| IngestError::Unavailable(e.into()))).await
    }

    /// Writes a catalog row.
    async fn record(&self, record: &DatasetRecord) -> Result<(), IngestError> {
        let record = record.clone();
        self.catalog(move |c| c.put(&record)).await
    }

    async fn on_arrived(&self, e: Envelope<pb::DataArrived>) -> Result<(), IngestError> {
        let ctx = e.follow();
        self.arrive(e.payload, None, ctx).await
    }

    /// A bucket notification: each object it reports created arrives as a `data.arrived` naming
    /// its URI would. All are tried; a transient failure retries the whole notification (the
    /// objects already ingested are then recognised by their content), else the permanent
    /// failures are reported together.
    async fn on_notification(&self, e: Envelope<lake::Notification>) -> Result<(), IngestError> {
        let ctx = e.follow();
        let prefix = format!("{}.", <lake::Notification as mlops_shared::events::Event>::SUBJECT_PREFIX);
        let pipeline = e.subject.strip_prefix(&prefix).unwrap_or_default().to_owned();
        let bad = |m: String| IngestError::BadInput(format!("bucket notification on {}: {m}", e.subject));
        PipelineName::new(&pipeline).map_err(|err| bad(err.to_string()))?;
        let created = lake::created_objects(&e.payload.json).map_err(bad)?;
        let mut refused = Vec::new();
        for object in created {
            let arrival = pb::DataArrived { pipeline: pipeline.clone(), path: object.uri, ..Default::default() };
            match self.arrive(arrival, object.e_tag.as_deref(), ctx.clone()).await {
                Ok(()) => {}
                Err(IngestError::BadInput(m)) => refused.push(m),
                Err(other) => return Err(other),
            }
        }
        if refused.is_empty() { Ok(()) } else { Err(IngestError::BadInput(refused.join("; "))) }
    }

    /// Ingests what `a` names; `notified` is the ETag a bucket notification announced for it.
    async fn arrive(&self, a: pb::DataArrived, notified: Option<&str>, ctx: EventContext) -> Result<(), IngestError> {
        let environment =
            Environment::parse(&a.environment).map_err(|m| IngestError::BadInput(format!("data.arrived: {m}")))?;
        let (staged, origin) = if !a.path.is_empty() && lake::is_uri(&a.path) {
            self.stage_from_lake(&a.path, notified).await?
        } else if a.path.is_empty() {
            let staged =
                self.datasets.stage_named(&a.object, &self.staging, self.max_bytes).await.map_err(|err| match err {
                    ObjectError::NotFound { .. } | ObjectError::TooLarge { .. } => {
                        IngestError::BadInput(format!("data.arrived: {err}"))
                    }
                    other => IngestError::Unavailable(other.into()),
                })?;
            (staged, format!("object:{}", a.object))
        } else {
            self.stage_from_file(&a.path).await?
        };
        let by_object = origin.starts_with("object:");
        let from_lake = origin.starts_with("uri:");
        let came = Provenance {
            source: match (a.source.is_empty(), from_lake) {
                (true, _) => origin,
                // The lake's URI and ETag are the lineage: kept beside the sender's words.
                (false, true) => format!("{} ({origin})", a.source),
                (false, false) => a.source,
            },
            origin: match (&a.feedback, by_object) {
                (Some(_), true) => Origin::Feedback,
                (Some(_), false) => {
                    return Err(IngestError::BadInput(
                        "data.arrived: a feedback version is an object the monitor wrote, not a `path`".into(),
                    ));
                }
                (None, true) => Origin::Object,
                (None, false) => Origin::Path,
            },
            feedback: a.feedback,
        };
        let name = if by_object { a.object.as_str() } else { a.path.as_str() };
        let format = mlops_shared::format::detect(name, &staged.head).0.as_str();
        self.ingest(&a.pipeline, came, format, environment, &staged, ctx).await?;
        Ok(())
    }

    fn too_large(&self, what: &str) -> IngestError {
        IngestError::BadInput(format!("data.arrived: {what} is over the limit of {} bytes", self.max_bytes))
    }

    /// Stages a file under an allowed directory.
    async fn stage_from_file(&self, path: &str) -> Result<(Staged, String), IngestError> {
        let file = paths::resolve(path, &self.allowed_dirs).map_err(IngestError::BadInput)?;
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if size > self.max_bytes {
            return Err(self.too_large(&format!("{path} ({size} bytes)")));
        }
        let reader = tokio::fs::File::open(&file).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        let staged = self.stage_from(reader, path).await?;
        Ok((staged, format!("file:{}", file.display())))
    }

    /// Stages the lake object `uri` as it streams, recording the ETag and version of what was
    /// read (the sha256 is of those bytes), and saying so when they are not what a notification
    /// announced: the object changed in between.
    async fn stage_from_lake(&self, uri: &str, notified: Option<&str>) -> Result<(Staged, String), IngestError> {
        lake::check(uri, &self.allowed_uris).map_err(IngestError::BadInput)?;
        let location = Location::parse_named("data.arrived: the lake URI", uri, &[])
            .map_err(|e| IngestError::BadInput(e.to_string()))?;
        let remote = location.open_object(self.max_bytes).await.map_err(|err| match err {
            ObjectError::NotFound { .. } => {
                IngestError::BadInput(format!("data.arrived: {uri} does not exist (removed since it was announced?)"))
            }
            ObjectError::TooLarge { size, .. } => self.too_large(&format!("{uri} ({size} bytes)")),
            other => IngestError::Unavailable(other.into()),
        })?;
        let read_tag = remote.e_tag.as_deref().map(|t| t.trim_matches('"').to_owned());
        let staged = self.stage_from(remote.reader, uri).await?;
        let mut origin = format!("uri:{uri}");
        if let Some(tag) = &read_tag {
            origin.push_str(&format!(" etag {tag}"));
        }
        if let Some(version) = &remote.version {
            origin.push_str(&format!(" version {version}"));
        }
        // `notified` comes unquoted from the notification's parser.
        if let Some(announced) = notified.filter(|n| read_tag.as_deref() != Some(*n)) {
            origin.push_str(&format!(" (changed since its notification, which announced etag {announced})"));
        }
        Ok((staged, origin))
    }

    /// Stages everything `reader` yields, refusing more than the size limit.
    async fn stage_from(&self, reader: impl tokio::io::AsyncRead + Unpin, what: &str) -> Result<Staged, IngestError> {
        let mut stager = self.stager()?;
        stager.copy_from(reader).await.map_err(|e| match e {
            StageError::TooLarge(_) => self.too_large(what),
            StageError::Io(e) => IngestError::Unavailable(e.into()),
        })?;
        stager.finish().await.map_err(|e| IngestError::Unavailable(e.into()))
    }

    async fn on_validated(&self, e: Envelope<pb::DataValidated>) -> Result<(), IngestError> {
        let v = e.payload;
        let report = pb::Dataset { anomalies: v.warnings.clone(), profile: v.profile, ..Default::default() };
        let judged = judgement(Verdict::Accepted, v.rows, summarize(&v.warnings), &report, v.validation_hash, v.round);
        self.verdict(v.dataset_id, v.pipeline, judged).await.map(drop)
    }

    /// Records the rejection; content rejected for personal data is then deleted.
    async fn on_rejected(&self, e: Envelope<pb::DataRejected>) -> Result<(), IngestError> {
        let r = e.payload;
        let personal = r.columns.iter().flat_map(|c| &c.anomalies).any(|a| a.blocking && a.kind == "personal_data");
        let (id, pipeline) = (r.dataset_id.clone(), r.pipeline.clone());
        let report = pb::Dataset { anomalies: r.columns, profile: r.profile, ..Default::default() };
        let judged = judgement(Verdict::Rejected, r.rows, r.reason, &report, r.validation_hash, r.round);
        if self.verdict(r.dataset_id, r.pipeline, judged).await? && personal {
            self.forget_content(&id, &pipeline).await?;
        }
        Ok(())
    }

    /// Deletes the content of a version rejected for personal data (found in a column that
    /// forbids it or declares no policy), so that it is not kept: unless the same content is a
    /// version of another pipeline that accepted it or is judging it. Deleting what is gone
    /// already is no error, so a redelivery does no harm. The same content sent again is stored
    /// again (see [`Ingest::ingest`]).
    async fn forget_content(&self, id: &str, pipeline: &str) -> Result<(), IngestError> {
        let _held = self.content.lock(id).await;
        let i = id.to_owned();
        let holders = self.catalog(move |c| c.of_content(&i)).await?;
        let dataset = mlops_shared::ids::short(id);
        let holds = |h: &&DatasetRecord| h.pipeline != pipeline && h.verdict != Verdict::Rejected && h.erased.is_none();
        if let Some(other) = holders.iter().find(holds) {
            info!(pipeline, %dataset, other = %other.pipeline, "content with personal data kept: another pipeline holds it");
            return Ok(());
        }
        self.datasets.delete(id).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        metrics::counter!("mlops_datasets_deleted_total", "reason" => "personal_data").increment(1);
        warn!(pipeline, %dataset, "content deleted: it holds personal data its spec does not allow");
        Ok(())
    }

    /// Records a verdict and its report in the catalog (off the runtime: the commit waits for
    /// the disk). Returns whether it was recorded: not when a newer round replaced its own.
    async fn verdict(&self, id: String, pipeline: String, judged: Judgement) -> Result<bool, IngestError> {
        let (i, p) = (id.clone(), pipeline.clone());
        match self.catalog(move |c| c.set_verdict(&i, &p, judged)).await? {
            Recorded::Recorded => Ok(true),
            Recorded::Stale => {
                info!(pipeline, dataset = %mlops_shared::ids::short(&id), "verdict of a replaced round ignored");
                Ok(false)
            }
            Recorded::Unknown => {
                Err(IngestError::BadInput(format!("dataset {id} of pipeline `{pipeline}` is not in the catalog")))
            }
        }
    }
}

/// What data arriving under a pipeline or feature view is judged by.
struct Checks {
    /// The spec's validation hash, or the view's hash.
    validation_hash: String,
    environment: Environment,
    /// The columns ingest replaces by keyed hashes (`pii: pseudonymise`).
    pseudonymised: Vec<String>,
}

/// Where arriving data came from: the source's words, how it came, and (for a feedback version)
/// the predictions behind it.
struct Provenance {
    source: String,
    origin: Origin,
    feedback: Option<pb::FeedbackOrigin>,
}

/// What an arrival made of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// A new dataset version.
    New,
    /// Known, and judged under the current checks: nothing to do.
    Known,
    /// Known, judged under older checks: validated again.
    Revalidating,
}

/// Whether `known` was judged under checks other than `current` (the spec's validation hash).
/// An acceptance from before rounds carries no hash and is taken as judged under the current ones.
fn judged_under_other_checks(known: &DatasetRecord, current: &str) -> bool {
    match known.verdict {
        Verdict::Pending => false,
        // A rejection from before rounds recorded no checks: judged again, in case they changed.
        Verdict::Rejected if known.validation_hash.is_empty() => true,
        _ => !known.validation_hash.is_empty() && known.validation_hash != current,
    }
}

fn judgement(
    verdict: Verdict,
    rows: u64,
    detail: String,
    report: &pb::Dataset,
    validation_hash: String,
    round: u32,
) -> Judgement {
    use prost::Message as _;
    Judgement { verdict, rows, detail, report_hex: hex::encode(report.encode_to_vec()), validation_hash, round }
}

fn dataset_proto(r: DatasetRecord) -> pb::Dataset {
    use prost::Message as _;
    // Written by this service from a message it encoded; an unreadable one is shown as absent.
    let report =
        hex::decode(&r.report_hex).ok().and_then(|b| pb::Dataset::decode(b.as_slice()).ok()).unwrap_or_default();
    let origin = r.origin().as_str().into();
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
        duplicate: false,
        revalidating: false,
        environment: r.environment,
        validation_hash: r.validation_hash,
        origin,
        feedback: r.feedback,
        erased: r.erased,
        erased_from: r.erased_from,
        history: r
            .history
            .into_iter()
            .map(|p| pb::PastVerdict {
                verdict: p.verdict.as_str().into(),
                rows: p.rows,
                detail: p.detail,
                validation_hash: p.validation_hash,
                round: p.round,
                decided_unix_ms: p.decided_unix_ms,
            })
            .collect(),
    }
}

/// A lookup by id or prefix that found no single dataset, as a gRPC status.
fn found_status(e: Found) -> Status {
    match e {
        Found::Prefix(PrefixError::NotFound { .. }) | Found::NotInPipeline { .. } => Status::not_found(e.to_string()),
        Found::Prefix(_) => Status::invalid_argument(e.to_string()),
        Found::Catalog(e) => Status::internal(e.to_string()),
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
        let came = Provenance { source: header.source, origin: Origin::Upload, feedback: None };
        let (record, arrival) =
            self.0.ingest(&header.pipeline, came, &header.format, environment, &staged, ctx).await?;
        let dataset = pb::Dataset {
            duplicate: arrival == Arrival::Known,
            revalidating: arrival == Arrival::Revalidating,
            ..dataset_proto(record)
        };
        Ok(Response::new(dataset))
    }

    async fn get_dataset(&self, req: Request<pb::GetDatasetRequest>) -> Result<Response<pb::Dataset>, Status> {
        let req = req.into_inner();
        let record = self.0.catalog.find(&req.dataset_id, &req.pipeline).map_err(found_status)?;
        Ok(Response::new(dataset_proto(record)))
    }

    async fn revalidate(&self, req: Request<pb::RevalidateRequest>) -> Result<Response<pb::Dataset>, Status> {
        let req = req.into_inner();
        let known = self.0.catalog.find(&req.dataset_id, &req.pipeline).map_err(found_status)?;
        if let Some(mark) = &known.erased {
            let instead = match mark.successor_id.as_str() {
                "" => "every row was the subject's, so no version replaces it".to_owned(),
                successor => format!("validate its successor {successor} instead"),
            };
            return Err(Status::failed_precondition(format!(
                "dataset {} was erased by {}: {instead}",
                known.dataset_id, mark.erasure_id
            )));
        }
        let environment = Environment::parse(&known.environment).unwrap_or_default();
        self.0.checks_of(&known.pipeline, environment).await?;
        let stored =
            self.0.datasets.size_of(&known.dataset_id).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        if stored.is_none() {
            return Err(Status::failed_precondition(format!(
                "dataset {} was deleted for the personal data it held ({}): send the data again to validate it",
                known.dataset_id, known.verdict_detail
            )));
        }
        let ctx = EventContext::new_run(format!("revalidate-{}-{}", known.pipeline, &known.dataset_id[..16]));
        let record = self.0.revalidate(&known, ctx).await?;
        Ok(Response::new(pb::Dataset { revalidating: true, ..dataset_proto(record) }))
    }

    async fn erase(&self, req: Request<pb::EraseRequest>) -> Result<Response<pb::DataErased>, Status> {
        Ok(Response::new(self.0.erase(req.into_inner()).await?))
    }

    async fn list_erasures(
        &self,
        req: Request<pb::ListErasuresRequest>,
    ) -> Result<Response<pb::ListErasuresResponse>, Status> {
        let pipeline = req.into_inner().pipeline;
        let records = self.0.catalog.erasures(&pipeline).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ListErasuresResponse { erasures: records.into_iter().map(|r| r.audit).collect() }))
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
        let datasets = records.into_iter().map(dataset_proto).collect();
        Ok(Response::new(pb::ListDatasetsResponse { datasets }))
    }
}
