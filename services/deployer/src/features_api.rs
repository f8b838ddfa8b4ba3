//! `POST /v1/features`: the current values of features for a batch of entities, from the online
//! store (through the deployer's replicas), in Feast's `get-online-features` form, for services
//! that want features without a prediction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mlops_features::time::format_ms;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;

use crate::Deployer;
use crate::rest::{ApiError, Body, bad, body};
use crate::serving::Column;

/// A batch of online feature reads, in Feast's `get-online-features` form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeaturesRequest {
    /// `VIEW:feature` references.
    features: Vec<String>,
    /// Each key column's values, one per entity.
    entities: BTreeMap<String, Vec<Json_>>,
    /// Name each feature `VIEW__feature` in the answer (Feast's option), for views that share
    /// feature names.
    #[serde(default)]
    full_feature_names: bool,
}

/// The answer: `metadata.feature_names` (the key columns, then the features) and one result per
/// name, serialised as it is built (no intermediate JSON tree).
#[derive(Serialize)]
struct FeaturesAnswer<'a> {
    metadata: Metadata,
    results: Vec<FeatureResult<'a>>,
}

#[derive(Serialize)]
struct Metadata {
    feature_names: Vec<String>,
}

#[derive(Serialize)]
struct FeatureResult<'a> {
    values: Values<'a>,
    statuses: Vec<&'static str>,
    event_timestamps: Vec<Option<&'a str>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Values<'a> {
    /// A key column, as the request gave it.
    Given(&'a [Json_]),
    Num(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

/// `POST /v1/features`: statuses are `PRESENT`, or `NOT_FOUND` for an unknown entity or one past
/// the view's TTL; `event_timestamps` are the values' event times (RFC 3339).
pub(crate) async fn online_features(State(d): State<Arc<Deployer>>, b: Body) -> Result<impl IntoResponse, ApiError> {
    let body = body(b)?;
    let req: FeaturesRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid features request: {e}")))?;
    let refs = req
        .features
        .iter()
        .map(|r| mlops_shared::spec::parse_ref(r).map_err(|e| bad(e.replace("`lookup.from`", "`features`"))))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = refs.first() else { return Err(bad("`features` is empty")) };
    let view = d.online.view(first.view).await?;
    let mut key_columns = Vec::with_capacity(view.entities.len());
    for k in &view.entities {
        let values = req.entities.get(k).ok_or_else(|| bad(format!("`entities` lacks the key column `{k}`")))?;
        let text = |v: &Json_| match v {
            Json_::String(s) => Some(s.clone()),
            Json_::Number(n) => Some(n.to_string()),
            _ => None,
        };
        key_columns.push(Column::Str(values.iter().map(text).collect()));
    }
    if key_columns.iter().any(|c| c.len() != key_columns[0].len()) {
        return Err(bad("every key column of `entities` must hold one value per entity"));
    }
    let keys = crate::features::entity_keys(&key_columns);
    let looked = d.online.look_up(refs.iter().copied(), &keys).await?;
    let n = keys.len();
    let mut names: Vec<String> = view.entities.clone();
    let mut results: Vec<FeatureResult> = view
        .entities
        .iter()
        .map(|k| FeatureResult {
            values: Values::Given(&req.entities[k]),
            statuses: vec!["PRESENT"; n],
            event_timestamps: vec![None; n],
        })
        .collect();
    // A view's features share their entity's event time: each time is formatted once.
    let times: HashSet<i64> = looked.event_ms.iter().flatten().flatten().copied().collect();
    let stamps: HashMap<i64, String> = times.into_iter().map(|ms| (ms, format_ms(ms))).collect();
    for ((name, column), times) in looked.columns.into_iter().zip(&looked.event_ms) {
        let values = match column {
            Column::Num(v) => Values::Num(v),
            Column::Str(v) => Values::Str(v),
        };
        let statuses = times.iter().map(|t| if t.is_some() { "PRESENT" } else { "NOT_FOUND" }).collect();
        let event_timestamps = times.iter().map(|t| t.map(|ms| stamps[&ms].as_str())).collect();
        names.push(name);
        results.push(FeatureResult { values, statuses, event_timestamps });
    }
    if req.full_feature_names {
        for (name, r) in names.iter_mut().skip(view.entities.len()).zip(&refs) {
            *name = format!("{}__{}", r.view, r.feature);
        }
    }
    let answer = FeaturesAnswer { metadata: Metadata { feature_names: names }, results };
    let json = serde_json::to_vec(&answer)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("features answer: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json))
}
