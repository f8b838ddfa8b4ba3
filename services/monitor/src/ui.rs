//! The web dashboard, served on the monitor's port: `/ui` is one self-contained page (no build
//! step, no outside assets) that draws what `/api/overview` and `/api/pipelines/{name}` answer —
//! pipelines and their production models, every version with its metrics and gate verdict, the
//! recent cascade read back from the events stream, each feature's drift over time, label quality
//! and alerts. `mlops ui` prints (and opens) its address.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt as _;
use mlops_proto as pb;
use mlops_shared::bus::EVENTS_STREAM;
use serde_json::{Value, json};

use crate::Monitor;

const PAGE: &str = include_str!("ui/index.html");
/// Events the timeline shows at most.
const TIMELINE: u64 = 200;

/// `/ui` and its JSON API.
pub(crate) fn router(m: Arc<Monitor>) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::temporary("/ui") }))
        .route("/ui", get(|| async { ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE)) }))
        .route("/api/overview", get(overview))
        .route("/api/pipelines/{name}", get(pipeline))
        .with_state(m)
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn unavailable(what: &str) -> impl Fn(String) -> ApiError + '_ {
    move |e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{what}: {e}"))
}

#[derive(serde::Deserialize)]
struct Limit {
    events: Option<u64>,
}

async fn overview(State(m): State<Arc<Monitor>>, Query(q): Query<Limit>) -> Result<Json<Value>, ApiError> {
    let specs = m.specs.all().await.map_err(|e| unavailable("pipelines")(e.to_string()))?;
    let mut pipelines = Vec::new();
    for spec in specs {
        let name = spec.name.to_string();
        let versions = m.versions(&name).await.map_err(unavailable("registry"))?;
        let production = versions.iter().find(|v| v.aliases.iter().any(|a| a == "production"));
        let performance = m.store.performance(&name).map_err(|e| unavailable("monitor store")(e.to_string()))?;
        let alerts = m.store.alerts(&name, 1000).map_err(|e| unavailable("monitor store")(e.to_string()))?;
        pipelines.push(json!({
            "name": name,
            "description": spec.description,
            "task": spec.target.task.as_str(),
            "versions": versions.len(),
            "production": production.map(version_json),
            "performance": performance,
            "alerts": alerts.len(),
        }));
    }
    let events = m.recent_events(q.events.unwrap_or(60).min(TIMELINE)).await.map_err(unavailable("events"))?;
    Ok(Json(json!({ "pipelines": pipelines, "events": events })))
}

async fn pipeline(State(m): State<Arc<Monitor>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    mlops_shared::ids::PipelineName::new(&name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let Some(spec) = m.specs.get(&name).await.map_err(|e| unavailable("pipelines")(e.to_string()))? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("there is no pipeline `{name}`")));
    };
    let store = |e: crate::store::StoreError| unavailable("monitor store")(e.to_string());
    let versions = m.versions(&name).await.map_err(unavailable("registry"))?;
    let (windows, _) = m.store.windows(&name, 100).map_err(store)?;
    let alerts = m.store.alerts(&name, 100).map_err(store)?;
    let performance = m.store.performance(&name).map_err(store)?;
    Ok(Json(json!({
        "name": name,
        "description": spec.description,
        "task": spec.target.task.as_str(),
        "versions": versions.iter().map(version_json).collect::<Vec<_>>(),
        // Oldest first, for charts.
        "windows": windows.iter().rev().map(|w| json!({
            "version": w.version,
            "rows": w.rows,
            "drifted_share": w.drifted_share,
            "closed_unix_ms": w.closed_unix_ms,
            "alert_id": w.alert_id,
            "features": w.features.iter().map(|(feature, method, score, threshold, drifted)| json!({
                "feature": feature, "method": method, "score": finite(*score), "threshold": threshold, "drifted": drifted,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "alerts": alerts,
        "performance": performance,
    })))
}

/// JSON has no NaN or infinity: such scores travel as `null`.
fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

fn version_json(v: &pb::ModelVersion) -> Value {
    let metrics: serde_json::Map<String, Value> =
        v.holdout_metrics.iter().flat_map(|m| &m.values).map(|(k, x)| (k.clone(), finite(*x))).collect();
    json!({
        "version": v.version,
        "aliases": v.aliases,
        "gate": v.gate,
        "algorithm": v.algorithm,
        "artifact_sha256": v.artifact_sha256,
        "created_unix_ms": v.created_unix_ms,
        "promoted_unix_ms": v.promoted_unix_ms,
        "metrics": metrics,
    })
}

impl Monitor {
    /// Every version of `pipeline`, newest first.
    async fn versions(&self, pipeline: &str) -> Result<Vec<pb::ModelVersion>, String> {
        let request = pb::ListModelVersionsRequest { pipeline: pipeline.to_owned(), ..Default::default() };
        let mut versions = match self.registry.clone().list_model_versions(request).await {
            Ok(r) => r.into_inner().versions,
            Err(s) if s.code() == tonic::Code::NotFound => vec![],
            Err(s) => return Err(s.message().to_owned()),
        };
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(versions)
    }

    /// The newest `n` events of the cascade, newest first, read back from the events stream with
    /// an ordered consumer (no state is left on the server).
    async fn recent_events(&self, n: u64) -> Result<Vec<Value>, String> {
        let mut stream = self.bus.js.get_stream(EVENTS_STREAM).await.map_err(|e| e.to_string())?;
        let state = stream.info().await.map_err(|e| e.to_string())?.state.clone();
        if state.messages == 0 || n == 0 {
            return Ok(vec![]);
        }
        let start = state.last_sequence.saturating_sub(n - 1).max(state.first_sequence);
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                filter_subject: "mlops.events.>".into(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
            let info =
                msg.info().ok().map(|i| (i.stream_sequence, (i.published.unix_timestamp_nanos() / 1_000_000) as i64));
            let seen = mlops_shared::describe::decode(&msg.subject, &msg.payload);
            out.push(json!({
                "time_unix_ms": info.map_or(0, |i| i.1),
                "kind": seen.kind,
                "pipeline": seen.pipeline,
                "summary": seen.summary,
            }));
            if info.is_none_or(|i| i.0 >= state.last_sequence) {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }
}
