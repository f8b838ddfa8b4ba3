//! Open Inference Protocol v2 over REST (KServe / Triton compatible): health, server and model
//! metadata, readiness, and infer on `/v2/models/{name}[/versions/{v}]`. Errors are HTTP 4xx with
//! `{"error": "..."}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::Deployer;
use crate::error::DeployerError;
use crate::serving::{Column, Models, PredictionLog, Served};

/// An API error: a status and a message, rendered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The REST edge: what is not served is 404, what the request got wrong 400.
impl From<DeployerError> for ApiError {
    fn from(e: DeployerError) -> Self {
        use DeployerError as E;
        let status = match &e {
            E::NotServed { .. } | E::VersionNotServed { .. } | E::UnknownVersion(_) => StatusCode::NOT_FOUND,
            E::BadInput(_) => StatusCode::BAD_REQUEST,
            E::Blocked(_)
            | E::NothingToRollBackTo { .. }
            | E::NothingToReleaseAgainst { .. }
            | E::NoRelease { .. }
            | E::ReleaseEnded
            | E::BadArtifact { .. }
            | E::RouteConflict { .. } => StatusCode::CONFLICT,
            E::RegistryDenied(_) => StatusCode::BAD_GATEWAY,
            E::RegistryUnavailable(_) | E::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::Inference { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// The OIP REST routes.
pub fn router(d: Arc<Deployer>) -> Router {
    Router::new()
        .route("/v2/health/live", get(|| async { Json(json!({ "live": true })) }))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/v1/features", post(crate::features_api::online_features))
        .route("/invocations", post(crate::invocations::invocations))
        .route("/models/{name}/invocations", post(crate::invocations::model_invocations))
        .with_state(d)
}

async fn ready(State(d): State<Arc<Deployer>>) -> Response {
    let ready = d.readiness.is_ready();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ready": ready }))).into_response()
}

async fn server_metadata() -> Json<Json_> {
    Json(json!({ "name": "mlops-deployer", "version": mlops_shared::CODE_VERSION, "extensions": [] }))
}

/// The OIP model metadata of a served model.
pub(crate) fn metadata(model: &Served) -> Json_ {
    let inputs: Vec<Json_> = model
        .artifact
        .manifest()
        .features
        .iter()
        .map(|f| json!({ "name": f.name, "datatype": crate::serving::oip_datatype(f.kind), "shape": [-1] }))
        .collect();
    json!({
        "name": model.pipeline,
        "versions": [model.version.to_string()],
        "platform": model.artifact.platform(),
        "inputs": inputs,
        "outputs": crate::serving::outputs(model)
            .iter()
            .map(|(name, datatype)| json!({ "name": name, "datatype": datatype, "shape": [-1] }))
            .collect::<Vec<_>>(),
    })
}

async fn model_metadata(State(d): State<Arc<Deployer>>, Path(name): Path<String>) -> Result<Json<Json_>, ApiError> {
    let model = d.models.find(&name, None)?;
    Ok(Json(metadata(&model)))
}

async fn model_metadata_v(
    State(d): State<Arc<Deployer>>,
    Path((name, v)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    let model = d.models.find(&name, Some(&v))?;
    Ok(Json(metadata(&model)))
}

async fn model_ready(State(d): State<Arc<Deployer>>, Path(name): Path<String>) -> Result<Json<Json_>, ApiError> {
    d.models.find(&name, None)?;
    Ok(Json(json!({ "name": name, "ready": true })))
}

async fn model_ready_v(
    State(d): State<Arc<Deployer>>,
    Path((name, v)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    d.models.find(&name, Some(&v))?;
    Ok(Json(json!({ "name": name, "ready": true })))
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InputTensor>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    #[serde(default)]
    shape: Vec<i64>,
    datatype: String,
    data: Json_,
}

/// Parses JSON as Python's writers make it: they send a missing float as a bare `NaN`, which JSON
/// lacks (tritonclient and `json.dumps` both do), and it reads as `null`, a missing value. The
/// rewrite runs only when plain parsing fails, so well-formed bodies cost nothing extra.
pub(crate) fn from_python_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) => match nan_as_null(body)? {
            Some(rewritten) => serde_json::from_slice(&rewritten).map_err(|e| e.to_string()),
            None => Err(e.to_string()),
        },
    }
}

/// `body` with every bare `NaN` outside strings made `null`; `None` when there is none. A bare
/// `Infinity` is refused by name: no feature value is infinite.
fn nan_as_null(body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let (mut out, mut changed) = (Vec::with_capacity(body.len()), false);
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if body[i..].starts_with(b"NaN") {
            out.extend_from_slice(b"null");
            (i, changed) = (i + 3, true);
            continue;
        } else if body[i..].starts_with(b"Infinity") {
            return Err(format!("`Infinity` at byte {i} is not a value a feature can take"));
        }
        out.push(b);
        i += 1;
    }
    Ok(changed.then_some(out))
}

/// A request body, or the reason it was refused (too large: 413) as `{"error": ...}`.
pub type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

pub(crate) fn body(b: Body) -> Result<Bytes, ApiError> {
    b.map_err(|e| ApiError(e.status(), format!("request body refused: {}", e.body_text())))
}

async fn infer(State(d): State<Arc<Deployer>>, Path(name): Path<String>, b: Body) -> Result<Json<Json_>, ApiError> {
    run_infer(&d, &name, None, &body(b)?).await
}

async fn infer_v(
    State(d): State<Arc<Deployer>>,
    Path((name, v)): Path<(String, String)>,
    b: Body,
) -> Result<Json<Json_>, ApiError> {
    run_infer(&d, &name, Some(&v), &body(b)?).await
}

/// Answers an inference body as [`infer_body`] does, fetching the features the picked model
/// looks up from the online store first.
async fn run_infer(d: &Deployer, name: &str, version: Option<&str>, body: &[u8]) -> Result<Json<Json_>, ApiError> {
    let started = std::time::Instant::now();
    let (id, inputs) = infer_inputs(&d.models, name, body)?;
    let picked = d.models.pick(name, version)?;
    let inputs = d.online.fill(picked.model.artifact.manifest().lookup.as_ref(), inputs).await?;
    let (model, scored) = crate::serving::infer_picked(picked, &d.log, inputs)?;
    Ok(Json(infer_answer(&model, scored, id, started)))
}

/// Answers an OIP v2 REST inference body with what `models` serve, logging to `log`: the whole
/// request path after routing, so tests and fuzz targets can drive it without a bus.
pub fn infer_body(
    models: &Models,
    log: &PredictionLog,
    name: &str,
    version: Option<&str>,
    body: &[u8],
) -> Result<Json_, ApiError> {
    let started = std::time::Instant::now();
    let (id, inputs) = infer_inputs(models, name, body)?;
    let (model, scored) = crate::serving::infer(models, log, name, version, inputs)?;
    Ok(infer_answer(&model, scored, id, started))
}

/// An inference body's id and named input columns.
fn infer_inputs(
    models: &Models,
    name: &str,
    body: &[u8],
) -> Result<(Option<String>, crate::serving::Inputs), ApiError> {
    let req: InferRequest = from_python_json(body).map_err(|e| bad(format!("invalid inference request: {e}")))?;
    let mut shaped = Vec::with_capacity(req.inputs.len());
    for t in req.inputs {
        let col = decode_json_tensor(&t).map_err(bad)?;
        shaped.push((t.name, t.shape, col));
    }
    let inputs = match crate::serving::matrix_columns(models, name, &shaped) {
        Some(columns) => columns?,
        None => shaped.into_iter().map(|(name, _, col)| (name, col)).collect(),
    };
    Ok((req.id, inputs))
}

fn infer_answer(
    model: &crate::serving::Served,
    scored: crate::serving::Scored,
    id: Option<String>,
    started: std::time::Instant,
) -> Json_ {
    metrics::histogram!("mlops_inference_seconds", "protocol" => "rest").record(started.elapsed().as_secs_f64());
    json!({
        "model_name": model.pipeline,
        "model_version": model.version.to_string(),
        "id": id.unwrap_or_else(|| scored.ids.first().cloned().unwrap_or_default()),
        "outputs": infer_outputs(scored),
    })
}

/// The output tensors of an inference call, as JSON.
fn infer_outputs(scored: crate::serving::Scored) -> Vec<Json_> {
    let n = scored.scores.len();
    let mut out = vec![json!({ "name": scored.scores_name, "datatype": "FP64", "shape": [n], "data": scored.scores })];
    if !scored.labels.is_empty() {
        out.push(json!({ "name": "label", "datatype": "BYTES", "shape": [n], "data": scored.labels }));
    }
    out.push(json!({ "name": "prediction_id", "datatype": "BYTES", "shape": [n], "data": scored.ids }));
    out
}

/// Decodes one JSON tensor; `data` may be flat or nested (row-major), values may be null.
fn decode_json_tensor(t: &InputTensor) -> Result<Column, String> {
    let mut flat = Vec::new();
    flatten(&t.data, &mut flat);
    if let Some(&rows) = t.shape.first()
        && rows >= 0
        && t.shape.iter().product::<i64>() != flat.len() as i64
    {
        return Err(format!("input `{}`: shape {:?} does not match its {} values", t.name, t.shape, flat.len()));
    }
    let wrong = |what: &str| format!("input `{}` is {} but holds {what}", t.name, t.datatype);
    match t.datatype.as_str() {
        "FP32" | "FP64" | "INT8" | "INT16" | "INT32" | "INT64" | "UINT8" | "UINT16" | "UINT32" | "UINT64" => flat
            .iter()
            .map(|v| match v {
                Json_::Null => Ok(None),
                Json_::Number(n) => n.as_f64().map(Some).ok_or_else(|| wrong("a number out of range")),
                _ => Err(wrong("a non-number")),
            })
            .collect::<Result<_, _>>()
            .map(Column::Num),
        "BOOL" => flat
            .iter()
            .map(|v| match v {
                Json_::Null => Ok(None),
                Json_::Bool(b) => Ok(Some(f64::from(u8::from(*b)))),
                _ => Err(wrong("a non-boolean")),
            })
            .collect::<Result<_, _>>()
            .map(Column::Num),
        "BYTES" => flat
            .iter()
            .map(|v| match v {
                Json_::Null => Ok(None),
                Json_::String(s) => Ok(Some(s.clone())),
                Json_::Number(n) => Ok(Some(n.to_string())),
                _ => Err(wrong("a non-string")),
            })
            .collect::<Result<_, _>>()
            .map(Column::Str),
        other => Err(format!("input `{}`: unsupported datatype {other:?}", t.name)),
    }
}

fn flatten<'a>(v: &'a Json_, out: &mut Vec<&'a Json_>) {
    match v {
        Json_::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_answers_not_served_with_404_and_bad_inputs_with_400() {
        let ApiError(status, message) = DeployerError::NotServed { pipeline: "nope".into() }.into();
        assert_eq!((status, message.as_str()), (StatusCode::NOT_FOUND, "model `nope` is not served"));
        let ApiError(status, _) = DeployerError::VersionNotServed {
            pipeline: "churn".into(),
            version: "9".into(),
            serving: "version 1".into(),
        }
        .into();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let ApiError(status, message) = DeployerError::BadInput("input `age` is missing".into()).into();
        assert_eq!((status, message.as_str()), (StatusCode::BAD_REQUEST, "input `age` is missing"));
        let ApiError(status, _) = DeployerError::store("kv: timed out").into();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn python_json_reads_a_bare_nan_as_missing_and_leaves_strings_alone() {
        let v: Json_ = from_python_json(br#"{"data": [1.0, NaN, -2], "name": "say \"NaN\" NaN"}"#).unwrap();
        assert_eq!(v, json!({"data": [1.0, null, -2], "name": "say \"NaN\" NaN"}));
        // Well-formed JSON is parsed as it is.
        let v: Json_ = from_python_json(br#"{"a": "NaN"}"#).unwrap();
        assert_eq!(v, json!({"a": "NaN"}));
        let e = from_python_json::<Json_>(br#"{"data": [Infinity]}"#).unwrap_err();
        assert!(e.contains("`Infinity` at byte 10"), "{e}");
        let e = from_python_json::<Json_>(b"{not json").unwrap_err();
        assert!(e.contains("key must be a string"), "{e}");
    }
}
