//! `POST /v1/features`: the current values of features for a batch of entities, from the online
//! store (through the deployer's replicas), in Feast's `get-online-features` form, for services
//! that want features without a prediction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use mlops_features::time::format_ms;
use mlops_proto as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;

use crate::Deployer;
use crate::error::DeployerError;
use crate::features::Looked;
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

/// A features read: the names answered (the features, or `VIEW__feature`) and what was found for
/// each entity, in the order asked.
pub(crate) struct FeatureRead {
    /// The key columns of the views read.
    pub key_names: Vec<String>,
    pub names: Vec<String>,
    pub looked: Looked,
}

/// Reads `features` (`VIEW:feature`, views keyed alike) for the entities whose key columns
/// `key_column` gives by name (one value per entity, `None` where null).
pub(crate) async fn read_features(
    d: &Deployer,
    features: &[String],
    key_column: impl Fn(&str) -> Option<Vec<Option<String>>>,
    full_names: bool,
) -> Result<FeatureRead, DeployerError> {
    let bad = DeployerError::BadInput;
    let refs = features
        .iter()
        .map(|r| mlops_shared::spec::parse_ref(r).map_err(|e| bad(e.replace("`lookup.from`", "`features`"))))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = refs.first() else { return Err(bad("`features` is empty".into())) };
    let view = d.online.view(first.view).await?;
    let mut key_columns = Vec::with_capacity(view.entities.len());
    for k in &view.entities {
        let values = key_column(k).ok_or_else(|| bad(format!("`entities` lacks the key column `{k}`")))?;
        key_columns.push(Column::Str(values));
    }
    if key_columns.iter().any(|c| c.len() != key_columns[0].len()) {
        return Err(bad("every key column of `entities` must hold one value per entity".into()));
    }
    let keys = crate::features::entity_keys(&key_columns);
    let looked = d.online.look_up(refs.iter().copied(), &keys).await?;
    let names = refs
        .iter()
        .map(|r| if full_names { format!("{}__{}", r.view, r.feature) } else { r.feature.to_owned() })
        .collect();
    Ok(FeatureRead { key_names: view.entities.clone(), names, looked })
}

/// `POST /v1/features`: statuses are `PRESENT`, or `NOT_FOUND` for an unknown entity or one past
/// the view's TTL; `event_timestamps` are the values' event times (RFC 3339).
pub(crate) async fn online_features(State(d): State<Arc<Deployer>>, b: Body) -> Result<impl IntoResponse, ApiError> {
    let body = body(b)?;
    let req: FeaturesRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid features request: {e}")))?;
    let key_column = |k: &str| req.entities.get(k).map(|values| values.iter().map(crate::features::key_text).collect());
    let read = read_features(&d, &req.features, key_column, req.full_feature_names).await?;
    let n = read.looked.event_ms.first().map_or(0, Vec::len);
    let mut results: Vec<FeatureResult> = read
        .key_names
        .iter()
        .map(|k| FeatureResult {
            values: Values::Given(&req.entities[k]),
            statuses: vec!["PRESENT"; n],
            event_timestamps: vec![None; n],
        })
        .collect();
    // A view's features share their entity's event time: each time is formatted once.
    let times: HashSet<i64> = read.looked.event_ms.iter().flatten().flatten().copied().collect();
    let stamps: HashMap<i64, String> = times.into_iter().map(|ms| (ms, format_ms(ms))).collect();
    for ((_, column), times) in read.looked.columns.into_iter().zip(&read.looked.event_ms) {
        let values = match column {
            Column::Num(v) => Values::Num(v),
            Column::Str(v) => Values::Str(v),
        };
        let statuses = times.iter().map(|t| if t.is_some() { "PRESENT" } else { "NOT_FOUND" }).collect();
        let event_timestamps = times.iter().map(|t| t.map(|ms| stamps[&ms].as_str())).collect();
        results.push(FeatureResult { values, statuses, event_timestamps });
    }
    let mut feature_names = read.key_names;
    feature_names.extend(read.names);
    let answer = FeaturesAnswer { metadata: Metadata { feature_names }, results };
    let json = serde_json::to_vec(&answer)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("features answer: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json))
}

/// `GetOnlineFeatures` on `mlops.v1.Deployer`: [`read_features`] answered in protobuf.
pub(crate) async fn grpc_online_features(
    d: &Deployer,
    req: pb::OnlineFeaturesRequest,
) -> Result<pb::OnlineFeaturesResponse, DeployerError> {
    let key_column = |k: &str| req.entities.get(k).map(|keys| keys.values.iter().map(|v| Some(v.clone())).collect());
    let read = read_features(d, &req.features, key_column, req.full_feature_names).await?;
    let results = read
        .looked
        .columns
        .into_iter()
        .zip(read.looked.event_ms)
        .map(|((_, column), times)| {
            let (numbers, categories) = match column {
                Column::Num(v) => (v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect(), Vec::new()),
                Column::Str(v) => (Vec::new(), v.into_iter().map(Option::unwrap_or_default).collect()),
            };
            pb::OnlineFeatureValues {
                numbers,
                categories,
                found: times.iter().map(Option::is_some).collect(),
                event_time_unix_ms: times.iter().map(|t| t.unwrap_or(0)).collect(),
            }
        })
        .collect();
    Ok(pb::OnlineFeaturesResponse { feature_names: read.names, results })
}
