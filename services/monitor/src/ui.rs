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
use crate::error::MonitorError;

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

/// An API error: a status and a message, rendered as `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The HTTP edge: a bad name is the caller's, an unknown one not found, and whatever the monitor
/// could not read (its database, the specs, the registry, the events stream) unavailable.
impl From<MonitorError> for ApiError {
    fn from(e: MonitorError) -> Self {
        use MonitorError as E;
        let status = match &e {
            E::BadId(_) | E::BadLabels(_) => StatusCode::BAD_REQUEST,
            E::UnknownPipeline(_) => StatusCode::NOT_FOUND,
            E::NotYet(_)
            | E::BadArtifact(_)
            | E::Erasure(_)
            | E::ModelUnavailable { .. }
            | E::Stopping
            | E::Store(_)
            | E::Objects(_)
            | E::Bus(_)
            | E::Registry(_)
            | E::Events(_)
            | E::Log(_)
            | E::Interrupted(_)
            | E::Feedback(_)
            | E::Features(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

#[derive(serde::Deserialize)]
struct Limit {
    events: Option<u64>,
}

async fn overview(State(m): State<Arc<Monitor>>, Query(q): Query<Limit>) -> Result<Json<Value>, ApiError> {
    Ok(Json(m.overview(q.events.unwrap_or(60).min(TIMELINE)).await?))
}

async fn pipeline(State(m): State<Arc<Monitor>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(m.pipeline_page(name).await?))
}

impl Monitor {
    /// Every pipeline with its production model, label quality and alert count, and the newest
    /// `events` of the cascade.
    async fn overview(&self, events: u64) -> Result<Value, MonitorError> {
        let mut pipelines = Vec::new();
        for spec in self.specs.all().await? {
            let name = spec.name.to_string();
            let versions = self.versions(&name).await?;
            let production = versions.iter().find(|v| v.aliases.iter().any(|a| a == "production"));
            let performance = self.store.performance(&name)?;
            let alerts = self.store.alerts(&name, 1000)?;
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
        let events = self.recent_events(events).await?;
        Ok(json!({ "pipelines": pipelines, "events": events }))
    }

    /// One pipeline: its versions, windows (oldest first), alerts and label quality.
    async fn pipeline_page(&self, name: String) -> Result<Value, MonitorError> {
        mlops_shared::ids::PipelineName::new(&name)?;
        let spec = self.specs.get(&name).await?.ok_or_else(|| MonitorError::UnknownPipeline(name.clone()))?;
        let versions = self.versions(&name).await?;
        let (windows, _) = self.store.windows(&name, 100)?;
        let alerts = self.store.alerts(&name, 100)?;
        let performance = self.store.performance(&name)?;
        Ok(json!({
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
        }))
    }
}

/// The events stream failing to be read back, in the monitor's terms.
fn events_unreadable(e: impl std::fmt::Display) -> MonitorError {
    MonitorError::Events(e.to_string())
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
    async fn versions(&self, pipeline: &str) -> Result<Vec<pb::ModelVersion>, MonitorError> {
        let request = pb::ListModelVersionsRequest { pipeline: pipeline.to_owned(), ..Default::default() };
        let mut versions =
            match self.registry.clone().list_model_versions(mlops_shared::telemetry::traced(request)).await {
                Ok(r) => r.into_inner().versions,
                Err(s) if s.code() == tonic::Code::NotFound => vec![],
                Err(s) => return Err(MonitorError::Registry(s.message().to_owned())),
            };
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(versions)
    }

    /// The newest `n` events of the cascade, newest first, read back from the events stream with
    /// an ordered consumer (no state is left on the server).
    async fn recent_events(&self, n: u64) -> Result<Vec<Value>, MonitorError> {
        let mut stream = self.bus.js.get_stream(EVENTS_STREAM).await.map_err(events_unreadable)?;
        let state = stream.info().await.map_err(events_unreadable)?.state.clone();
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
            .map_err(events_unreadable)?;
        let mut messages = consumer.messages().await.map_err(events_unreadable)?;
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
