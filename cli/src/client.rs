//! Thin clients for the platform's gRPC and REST APIs, shared by the commands, the demo and tests.
//! Each takes the [`Remote`] it calls: the service's URL and the CA its certificate is checked
//! against, passed explicitly rather than set for the whole process.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_proto::ingest_client::IngestClient;
use mlops_proto::registry_client::RegistryClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Upload chunk size: well under gRPC's default 4 MiB message limit.
const CHUNK: usize = 1 << 20;

/// Where a service answers, and which CA its `https://` URL is checked against.
///
/// Built from a URL alone (`"http://127.0.0.1:50051".into()`) it has no CA: gRPC then trusts the
/// system's roots and HTTP trusts no certificate. The CLI builds one per service from its
/// `--*-url` flag and `--tls-ca`; a test stack hands out its own with
/// [`Stack::remote`](crate::stack::Stack::remote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The base URL, `http://host:port` or `https://host:port`.
    pub url: String,
    /// A PEM file of the CA certificates to trust for an `https://` URL.
    pub ca: Option<PathBuf>,
}

impl Remote {
    /// The service at `url`, its certificate checked against the CA file `ca`.
    pub fn new(url: impl Into<String>, ca: Option<PathBuf>) -> Self {
        Self { url: url.into(), ca }
    }

    /// A gRPC channel to the service, connected now.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let url = &self.url;
        mlops_shared::tls::endpoint(url, self.ca.as_deref())?
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))
    }

    /// An HTTP client that trusts this service's CA.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        http_client_builder(self.ca.as_deref())?.build().context("building the HTTP client")
    }
}

impl From<&str> for Remote {
    fn from(url: &str) -> Self {
        Self::new(url, None)
    }
}

impl From<&String> for Remote {
    fn from(url: &String) -> Self {
        Self::new(url.as_str(), None)
    }
}

impl From<String> for Remote {
    fn from(url: String) -> Self {
        Self::new(url, None)
    }
}

impl From<&Remote> for Remote {
    fn from(remote: &Remote) -> Self {
        remote.clone()
    }
}

/// An HTTP client that trusts no CA: for `http://` URLs. A service behind TLS is reached with
/// [`Remote::http_client`].
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    http_client_builder(None)?.build().context("building the HTTP client")
}

/// An HTTP client's builder, for callers that set more (a timeout), trusting the PEM CA
/// certificates in the file `ca` for `https://` URLs. No roots are built in: without `ca` it
/// trusts no certificate.
pub fn http_client_builder(ca: Option<&Path>) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca {
        let pem = mlops_shared::tls::read_ca(path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("reading the TLS CA file {} (MLOPS_TLS_CA)", path.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// Turns a gRPC status into an error that shows its message.
fn status(what: &str) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code())
}

/// A deployer admin client (`mlops.v1.Deployer`).
pub async fn deployer(at: impl Into<Remote>) -> anyhow::Result<mlops_proto::deployer_client::DeployerClient<Channel>> {
    Ok(mlops_proto::deployer_client::DeployerClient::new(at.into().channel().await?))
}

/// The monitor's report on `pipeline`: drift windows, label quality, alerts.
pub async fn monitor_report(at: impl Into<Remote>, pipeline: &str) -> anyhow::Result<pb::ReportResponse> {
    let mut c = mlops_proto::monitor_client::MonitorClient::new(at.into().channel().await?);
    let r = c.report(pb::ReportRequest { pipeline: pipeline.to_owned() }).await.map_err(status("monitor report"))?;
    Ok(r.into_inner())
}

/// The evaluator's staleness report (`mlops.v1.Evaluator/Staleness`); a pipeline that cannot
/// have one yet (unknown, no data, no production version) is an error saying why.
pub async fn staleness(at: impl Into<Remote>, req: pb::StalenessRequest) -> anyhow::Result<pb::StalenessReported> {
    let mut c = mlops_proto::evaluator_client::EvaluatorClient::new(at.into().channel().await?);
    match c.staleness(req).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(anyhow::anyhow!("{}", s.message())),
        Err(s) => Err(status("staleness")(s)),
    }
}

/// A registry client.
pub async fn registry(at: impl Into<Remote>) -> anyhow::Result<RegistryClient<Channel>> {
    Ok(RegistryClient::new(at.into().channel().await?))
}

/// Applies a YAML pipeline spec.
pub async fn apply_pipeline(at: impl Into<Remote>, yaml: &str) -> anyhow::Result<pb::Pipeline> {
    apply_pipeline_as(at, yaml, std::env::var("MLOPS_ADMIN_TOKEN").ok().as_deref()).await
}

/// [`apply_pipeline`] carrying `token` as the admin bearer token.
pub async fn apply_pipeline_as(at: impl Into<Remote>, yaml: &str, token: Option<&str>) -> anyhow::Result<pb::Pipeline> {
    apply_pipeline_with_code(at, yaml, None, token).await
}

/// Applies a YAML pipeline spec with the code bundle its `training.code` names.
pub async fn apply_pipeline_with_code(
    at: impl Into<Remote>,
    yaml: &str,
    code: Option<crate::code_bundle::CodeUpload>,
    token: Option<&str>,
) -> anyhow::Result<pb::Pipeline> {
    apply_pipeline_from(at, yaml, code, "", token).await
}

/// [`apply_pipeline_with_code`], naming the git `commit` the spec comes from.
pub async fn apply_pipeline_from(
    at: impl Into<Remote>,
    yaml: &str,
    code: Option<crate::code_bundle::CodeUpload>,
    commit: &str,
    token: Option<&str>,
) -> anyhow::Result<pb::Pipeline> {
    let code = code.unwrap_or_default();
    let request = pb::ApplyPipelineRequest {
        spec_yaml: yaml.to_owned(),
        code_bundle: code.bundle,
        code_commit: code.commit,
        code_dirty: code.dirty,
        commit: commit.to_owned(),
        promoted_from: String::new(),
    };
    apply_request(at, request, token).await
}

/// Sends one `ApplyPipeline` request, carrying `token` as the admin bearer token.
pub async fn apply_request(
    at: impl Into<Remote>,
    request: pb::ApplyPipelineRequest,
    token: Option<&str>,
) -> anyhow::Result<pb::Pipeline> {
    let mut c = registry(at).await?.max_encoding_message_size(usize::MAX);
    let request = mlops_shared::config::with_token(request, token);
    let r = c.apply_pipeline(request).await.map_err(status("applying pipeline"))?;
    Ok(r.into_inner())
}

/// Uploads `bytes` as a dataset of `pipeline` through the client-streaming gRPC call.
pub async fn upload(
    at: impl Into<Remote>,
    pipeline: &str,
    source: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<pb::Dataset> {
    let header = pb::UploadHeader {
        pipeline: pipeline.into(),
        source: source.into(),
        // Empty: ingest recognises the format from the content and the source name.
        format: String::new(),
        environment: String::new(),
        size_bytes: bytes.len() as u64,
    };
    upload_with(at, header, bytes).await
}

/// Uploads a file, streamed in chunks (never read whole); the header announces its size, so a
/// read failure half way is refused by ingest rather than catalogued truncated.
pub async fn upload_file(
    at: impl Into<Remote>,
    mut header: pb::UploadHeader,
    path: &std::path::Path,
) -> anyhow::Result<pb::Dataset> {
    use pb::upload_request::Part;
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
    header.size_bytes = file.metadata().await.with_context(|| format!("reading {}", path.display()))?.len();
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
    let failure = failed.clone();
    let chunks = futures::stream::unfold(Some(file), move |file| {
        let failure = failure.clone();
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((pb::UploadRequest { part: Some(Part::Chunk(buf)) }, Some(file)))
                }
                Err(e) => {
                    if let Ok(mut slot) = failure.lock() {
                        *slot = Some(e);
                    }
                    None
                }
            }
        }
    });
    let requests = futures::StreamExt::chain(
        futures::stream::iter([pb::UploadRequest { part: Some(Part::Header(header)) }]),
        chunks,
    );
    let mut c = IngestClient::new(at.into().channel().await?);
    let result = c.upload(requests).await;
    if let Some(e) = failed.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(anyhow::anyhow!("reading {}: {e}", path.display()));
    }
    Ok(result.map_err(status("upload"))?.into_inner())
}

/// Uploads a dataset with a full header (format, environment).
pub async fn upload_with(
    at: impl Into<Remote>,
    header: pb::UploadHeader,
    bytes: Vec<u8>,
) -> anyhow::Result<pb::Dataset> {
    use pb::upload_request::Part;
    let mut c = IngestClient::new(at.into().channel().await?);
    let header = pb::UploadRequest { part: Some(Part::Header(header)) };
    let chunks: Vec<pb::UploadRequest> = std::iter::once(header)
        .chain(bytes.chunks(CHUNK).map(|c| pb::UploadRequest { part: Some(Part::Chunk(c.to_vec())) }))
        .collect();
    let r = c.upload(futures::stream::iter(chunks)).await.map_err(status("upload"))?;
    Ok(r.into_inner())
}

/// Imports a model made elsewhere (`mlops models import`): the registry checks it, registers it
/// and announces it for the gates.
pub async fn import_model(
    at: impl Into<Remote>,
    header: pb::ImportModelHeader,
    files: crate::onnx_import::ModelFiles,
    token: Option<&str>,
) -> anyhow::Result<pb::ImportModelResponse> {
    let requests = crate::onnx_import::requests(header, files);
    let mut c = RegistryClient::new(at.into().channel().await?);
    let request = mlops_shared::config::with_token(futures::stream::iter(requests), token);
    Ok(c.import_model(request).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?.into_inner())
}

/// One dataset from the catalog.
pub async fn dataset(at: impl Into<Remote>, id: &str) -> anyhow::Result<pb::Dataset> {
    dataset_in(at, id, "").await
}

/// A catalogued dataset (`id` may be a unique prefix) as uploaded to `pipeline` (empty: the
/// first pipeline that has it).
pub async fn dataset_in(at: impl Into<Remote>, id: &str, pipeline: &str) -> anyhow::Result<pb::Dataset> {
    let mut c = IngestClient::new(at.into().channel().await?);
    let request = pb::GetDatasetRequest { dataset_id: id.into(), pipeline: pipeline.into() };
    Ok(c.get_dataset(request).await.map_err(status("dataset"))?.into_inner())
}

/// Asks ingest to validate a known dataset again (`dataset_id` may be a unique prefix).
pub async fn revalidate(at: impl Into<Remote>, dataset_id: &str, pipeline: String) -> anyhow::Result<pb::Dataset> {
    let mut c = IngestClient::new(at.into().channel().await?);
    let request = pb::RevalidateRequest { dataset_id: dataset_id.into(), pipeline };
    Ok(c.revalidate(request).await.map_err(status("revalidating"))?.into_inner())
}

/// Asks ingest to erase a data subject from a pipeline; the audit record of what it erased.
pub async fn erase(at: impl Into<Remote>, request: pb::EraseRequest) -> anyhow::Result<pb::DataErased> {
    let mut c = IngestClient::new(at.into().channel().await?);
    Ok(c.erase(request).await.map_err(status("erasing"))?.into_inner())
}

/// The audit records of past erasures of `pipeline` (empty: every pipeline), oldest first.
pub async fn erasures(at: impl Into<Remote>, pipeline: &str) -> anyhow::Result<Vec<pb::DataErased>> {
    let mut c = IngestClient::new(at.into().channel().await?);
    let request = pb::ListErasuresRequest { pipeline: pipeline.into() };
    Ok(c.list_erasures(request).await.map_err(status("listing erasures"))?.into_inner().erasures)
}

/// Catalogued datasets, filtered by pipeline and verdict (empty for all).
pub async fn datasets(at: impl Into<Remote>, pipeline: &str, verdict: &str) -> anyhow::Result<Vec<pb::Dataset>> {
    let mut c = IngestClient::new(at.into().channel().await?);
    let r = c
        .list_datasets(pb::ListDatasetsRequest { pipeline: pipeline.into(), verdict: verdict.into() })
        .await
        .map_err(status("listing datasets"))?;
    Ok(r.into_inner().datasets)
}

/// Every version of `pipeline`.
pub async fn models(at: impl Into<Remote>, pipeline: &str) -> anyhow::Result<Vec<pb::ModelVersion>> {
    search_models(at, pipeline, Default::default(), vec![]).await
}

/// The versions of `pipeline` carrying every tag in `tags` and meeting every metric condition
/// (`roc_auc>=0.8`, `rmse<2`).
pub async fn search_models(
    at: impl Into<Remote>,
    pipeline: &str,
    tags: std::collections::HashMap<String, String>,
    metric_filters: Vec<String>,
) -> anyhow::Result<Vec<pb::ModelVersion>> {
    let mut c = registry(at).await?;
    let r = c
        .list_model_versions(pb::ListModelVersionsRequest { pipeline: pipeline.into(), tags, metric_filters })
        .await
        .map_err(status("listing models"))?;
    Ok(r.into_inner().versions)
}

/// Predicts one or more rows given as a JSON object (one row) or array of objects, through OIP v2
/// REST. Returns the response body.
pub async fn predict(at: impl Into<Remote>, pipeline: &str, rows: &Value) -> anyhow::Result<Value> {
    let at = at.into();
    let rows: Vec<&serde_json::Map<String, Value>> = match rows {
        Value::Object(o) => vec![o],
        Value::Array(a) => {
            a.iter().map(|r| r.as_object().context("each row must be a JSON object")).collect::<Result<_, _>>()?
        }
        _ => anyhow::bail!("a row is a JSON object of feature values, e.g. {{\"tenure_months\": 3}}"),
    };
    let mut names: Vec<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    names.sort();
    names.dedup();
    let inputs: Vec<Value> = names
        .iter()
        .map(|name| {
            let data: Vec<Value> = rows.iter().map(|r| r.get(*name).cloned().unwrap_or(Value::Null)).collect();
            let datatype = if data.iter().any(Value::is_string) { "BYTES" } else { "FP64" };
            json!({ "name": name, "shape": [rows.len()], "datatype": datatype, "data": data })
        })
        .collect();
    let url = format!("{}/v2/models/{pipeline}/infer", at.url);
    let resp = at
        .http_client()?
        .post(&url)
        .json(&json!({ "inputs": inputs }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let code = resp.status();
    let body: Value = resp.json().await.context("reading the inference response")?;
    if !code.is_success() {
        anyhow::bail!("inference failed ({code}): {}", body["error"].as_str().unwrap_or("no message"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_alone_carries_no_ca_and_an_unreadable_ca_is_named() {
        let url = "https://127.0.0.1:50051";
        assert_eq!(Remote::from(url), Remote::new(url, None));
        assert_eq!(Remote::from(url.to_owned()), Remote::from(&url.to_owned()));
        let with_ca = Remote::new(url, Some("/nonexistent/ca.pem".into()));
        assert_eq!(Remote::from(&with_ca), with_ca);
        let e = format!("{:#}", with_ca.http_client().unwrap_err());
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(Remote::from(url).http_client().is_ok());
    }
}
