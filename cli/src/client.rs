//! Thin clients for the platform's gRPC and REST APIs, shared by the commands, the demo and tests.

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_proto::ingest_client::IngestClient;
use mlops_proto::registry_client::RegistryClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Upload chunk size: well under gRPC's default 4 MiB message limit.
const CHUNK: usize = 1 << 20;

async fn channel(url: &str) -> anyhow::Result<Channel> {
    mlops_shared::tls::endpoint(url)?.connect().await.with_context(|| format!("connecting to {url}"))
}

/// An HTTP client that trusts the platform's CA (`--tls-ca`, `MLOPS_TLS_CA`) for `https://` URLs.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    http_client_builder()?.build().context("building the HTTP client")
}

/// [`http_client`]'s builder, for callers that set more (a timeout).
pub fn http_client_builder() -> anyhow::Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = mlops_shared::tls::client_ca_pem()? {
        for cert in reqwest::Certificate::from_pem_bundle(&pem).context("reading the TLS CA file (MLOPS_TLS_CA)")? {
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
pub async fn deployer(url: &str) -> anyhow::Result<mlops_proto::deployer_client::DeployerClient<Channel>> {
    Ok(mlops_proto::deployer_client::DeployerClient::new(channel(url).await?))
}

/// The monitor's report on `pipeline`: drift windows, label quality, alerts.
pub async fn monitor_report(url: &str, pipeline: &str) -> anyhow::Result<pb::ReportResponse> {
    let mut c = mlops_proto::monitor_client::MonitorClient::new(channel(url).await?);
    let r = c.report(pb::ReportRequest { pipeline: pipeline.to_owned() }).await.map_err(status("monitor report"))?;
    Ok(r.into_inner())
}

/// A registry client.
pub async fn registry(url: &str) -> anyhow::Result<RegistryClient<Channel>> {
    Ok(RegistryClient::new(channel(url).await?))
}

/// Applies a YAML pipeline spec.
pub async fn apply_pipeline(registry_url: &str, yaml: &str) -> anyhow::Result<pb::Pipeline> {
    apply_pipeline_as(registry_url, yaml, std::env::var("MLOPS_ADMIN_TOKEN").ok().as_deref()).await
}

/// [`apply_pipeline`] carrying `token` as the admin bearer token.
pub async fn apply_pipeline_as(registry_url: &str, yaml: &str, token: Option<&str>) -> anyhow::Result<pb::Pipeline> {
    let mut c = registry(registry_url).await?;
    let request = mlops_shared::config::with_token(pb::ApplyPipelineRequest { spec_yaml: yaml.to_owned() }, token);
    let r = c.apply_pipeline(request).await.map_err(status("applying pipeline"))?;
    Ok(r.into_inner())
}

/// Uploads `bytes` as a dataset of `pipeline` through the client-streaming gRPC call.
pub async fn upload(ingest_url: &str, pipeline: &str, source: &str, bytes: Vec<u8>) -> anyhow::Result<pb::Dataset> {
    let header = pb::UploadHeader {
        pipeline: pipeline.into(),
        source: source.into(),
        // Empty: ingest recognises the format from the content and the source name.
        format: String::new(),
        environment: String::new(),
        size_bytes: bytes.len() as u64,
    };
    upload_with(ingest_url, header, bytes).await
}

/// Uploads a file, streamed in chunks (never read whole); the header announces its size, so a
/// read failure half way is refused by ingest rather than catalogued truncated.
pub async fn upload_file(
    ingest_url: &str,
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
    let mut c = IngestClient::new(channel(ingest_url).await?);
    let result = c.upload(requests).await;
    if let Some(e) = failed.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(anyhow::anyhow!("reading {}: {e}", path.display()));
    }
    Ok(result.map_err(status("upload"))?.into_inner())
}

/// Uploads a dataset with a full header (format, environment).
pub async fn upload_with(ingest_url: &str, header: pb::UploadHeader, bytes: Vec<u8>) -> anyhow::Result<pb::Dataset> {
    use pb::upload_request::Part;
    let mut c = IngestClient::new(channel(ingest_url).await?);
    let header = pb::UploadRequest { part: Some(Part::Header(header)) };
    let chunks: Vec<pb::UploadRequest> = std::iter::once(header)
        .chain(bytes.chunks(CHUNK).map(|c| pb::UploadRequest { part: Some(Part::Chunk(c.to_vec())) }))
        .collect();
    let r = c.upload(futures::stream::iter(chunks)).await.map_err(status("upload"))?;
    Ok(r.into_inner())
}

/// One dataset from the catalog.
pub async fn dataset(ingest_url: &str, id: &str) -> anyhow::Result<pb::Dataset> {
    let mut c = IngestClient::new(channel(ingest_url).await?);
    Ok(c.get_dataset(pb::GetDatasetRequest { dataset_id: id.into() }).await.map_err(status("dataset"))?.into_inner())
}

/// Catalogued datasets, filtered by pipeline and verdict (empty for all).
pub async fn datasets(ingest_url: &str, pipeline: &str, verdict: &str) -> anyhow::Result<Vec<pb::Dataset>> {
    let mut c = IngestClient::new(channel(ingest_url).await?);
    let r = c
        .list_datasets(pb::ListDatasetsRequest { pipeline: pipeline.into(), verdict: verdict.into() })
        .await
        .map_err(status("listing datasets"))?;
    Ok(r.into_inner().datasets)
}

/// Every version of `pipeline`.
pub async fn models(registry_url: &str, pipeline: &str) -> anyhow::Result<Vec<pb::ModelVersion>> {
    search_models(registry_url, pipeline, Default::default(), vec![]).await
}

/// The versions of `pipeline` carrying every tag in `tags` and meeting every metric condition
/// (`roc_auc>=0.8`, `rmse<2`).
pub async fn search_models(
    registry_url: &str,
    pipeline: &str,
    tags: std::collections::HashMap<String, String>,
    metric_filters: Vec<String>,
) -> anyhow::Result<Vec<pb::ModelVersion>> {
    let mut c = registry(registry_url).await?;
    let r = c
        .list_model_versions(pb::ListModelVersionsRequest { pipeline: pipeline.into(), tags, metric_filters })
        .await
        .map_err(status("listing models"))?;
    Ok(r.into_inner().versions)
}

/// Predicts one or more rows given as a JSON object (one row) or array of objects, through OIP v2
/// REST. Returns the response body.
pub async fn predict(deployer_url: &str, pipeline: &str, rows: &Value) -> anyhow::Result<Value> {
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
    let url = format!("{deployer_url}/v2/models/{pipeline}/infer");
    let resp = http_client()?
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
