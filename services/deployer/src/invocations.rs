//! MLflow-style scoring: `POST /invocations` (or `/models/NAME/invocations`) with a JSON body in
//! one of MLflow's four layouts, or `text/csv` with a header row, answered as `{"predictions":
//! [...]}` with `labels`, `prediction_ids` and `model_version` beside it. A model that looks
//! features up takes its entity key columns in their place, as on the OIP endpoints.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value as Json_, json};

use crate::Deployer;
use crate::rest::{ApiError, bad};
use crate::serving::{Column, Models, PredictionLog, Served};

/// Which pipeline to score: `?pipeline=NAME`, which may be left out when the deployer serves one.
#[derive(serde::Deserialize)]
pub struct Which {
    pipeline: Option<String>,
}

/// `POST /invocations`: scores the rows of the body with the pipeline `?pipeline=` names.
pub async fn invocations(
    State(d): State<Arc<Deployer>>,
    Query(which): Query<Which>,
    headers: HeaderMap,
    body: crate::rest::Body,
) -> Result<Json<Json_>, ApiError> {
    let body = crate::rest::body(body)?;
    let pipeline = match which.pipeline {
        Some(p) => p,
        None => {
            let served = d.models.all();
            match served.as_slice() {
                [one] => one.pipeline.clone(),
                [] => return Err(ApiError(StatusCode::NOT_FOUND, "no model is served".into())),
                _ => {
                    let names: Vec<&str> = served.iter().map(|m| m.pipeline.as_str()).collect();
                    return Err(bad(format!(
                        "several pipelines are served ({}): name one with ?pipeline=NAME",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    score(&d, &pipeline, &headers, &body).await
}

/// `POST /models/{pipeline}/invocations`.
pub async fn model_invocations(
    State(d): State<Arc<Deployer>>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    body: crate::rest::Body,
) -> Result<Json<Json_>, ApiError> {
    score(&d, &pipeline, &headers, &crate::rest::body(body)?).await
}

/// Scores an `/invocations` body; a model that looks features up takes the entity key columns
/// instead of those features, which come from the online store (as OIP requests do).
async fn score(d: &Deployer, pipeline: &str, headers: &HeaderMap, body: &[u8]) -> Result<Json<Json_>, ApiError> {
    let started = std::time::Instant::now();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let picked = d.models.pick(pipeline, None)?;
    let inputs = invocation_inputs(&picked.model, content_type, body)?;
    let inputs = d.online.fill(picked.model.artifact.manifest().lookup.as_ref(), inputs).await?;
    Ok(Json(answer(crate::serving::infer_picked(picked, &d.log, inputs)?, started)))
}

/// Answers an MLflow-style `/invocations` body (`application/json` or `text/csv`) with what
/// `models` serve for `pipeline`, logging to `log`; tests and fuzz targets drive it directly (no
/// online store: a model that looks features up needs them in the body). The answer holds the
/// positive class's probability, or the value for a regression model; columns the model does not
/// take (ids, the label) are ignored.
pub fn score_body(
    models: &Models,
    log: &PredictionLog,
    pipeline: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Json_, ApiError> {
    let started = std::time::Instant::now();
    let picked = models.pick(pipeline, None)?;
    let inputs = invocation_inputs(&picked.model, content_type, body)?;
    Ok(answer(crate::serving::infer_picked(picked, log, inputs)?, started))
}

/// The answer to an `/invocations` request.
fn answer((model, scored): (Arc<Served>, crate::serving::Scored), started: std::time::Instant) -> Json_ {
    metrics::histogram!("mlops_inference_seconds", "protocol" => "invocations").record(started.elapsed().as_secs_f64());
    let mut out = json!({
        "predictions": scored.scores,
        "prediction_ids": scored.ids,
        "model_version": model.version.to_string(),
    });
    if !scored.labels.is_empty() {
        out["labels"] = json!(scored.labels);
    }
    out
}

/// The body's rows as `model`'s input columns: one per feature it takes, typed as it wants it;
/// for a model that looks features up, also the entity key columns, and a looked-up feature
/// may be left out.
fn invocation_inputs(model: &Served, content_type: &str, body: &[u8]) -> Result<crate::serving::Inputs, ApiError> {
    let records = if content_type.starts_with("text/csv") {
        csv_records(body)?
    } else if content_type.starts_with("application/json") {
        let value: Json_ = crate::rest::from_python_json(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        json_records(value)?
    } else {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?}: send application/json or text/csv"),
        ));
    };
    if records.is_empty() {
        return Err(bad("the request holds no rows"));
    }
    let manifest = model.artifact.manifest();
    let lookup = manifest.lookup.as_ref();
    let looked_up = |name: &str| lookup.is_some_and(|l| l.refs().any(|r| r.feature == name));
    let given = |name: &str| records.iter().any(|r| r.contains_key(name));
    let mut inputs = Vec::with_capacity(manifest.features.len());
    for f in &manifest.features {
        if !given(&f.name) {
            if looked_up(&f.name) {
                continue;
            }
            return Err(bad(format!("column `{}` is missing", f.name)));
        }
        inputs.push((f.name.clone(), column(&records, &f.name, f.kind)?));
    }
    for key in lookup.iter().flat_map(|l| &l.entities).filter(|k| given(k)) {
        let keys = records.iter().map(|r| r.get(key).and_then(crate::features::key_text)).collect();
        inputs.push((key.clone(), Column::Str(keys)));
    }
    Ok(inputs)
}

/// Column `name` of `records`, typed as `kind`; a row without it is missing.
fn column(records: &[Record], name: &str, kind: mlops_shared::spec::FeatureKind) -> Result<Column, ApiError> {
    let cells = records.iter().map(|r| r.get(name).unwrap_or(&Json_::Null)).enumerate();
    Ok(match kind {
        mlops_shared::spec::FeatureKind::Numeric => Column::Num(
            cells
                .map(|(i, v)| match v {
                    Json_::Null => Ok(None),
                    Json_::Number(n) => Ok(n.as_f64()),
                    Json_::Bool(b) => Ok(Some(f64::from(u8::from(*b)))),
                    Json_::String(s) if s.trim().is_empty() => Ok(None),
                    Json_::String(s) => s
                        .trim()
                        .parse()
                        .map(Some)
                        .map_err(|_| bad(format!("column `{name}` row {i}: {s:?} is not a number"))),
                    other => Err(bad(format!("column `{name}` row {i}: {other} is not a number"))),
                })
                .collect::<Result<_, _>>()?,
        ),
        mlops_shared::spec::FeatureKind::Categorical => Column::Str(
            cells
                .map(|(i, v)| match v {
                    Json_::Null => Ok(None),
                    Json_::String(s) if s.is_empty() => Ok(None),
                    Json_::String(s) => Ok(Some(s.clone())),
                    Json_::Number(n) => Ok(Some(n.to_string())),
                    Json_::Bool(b) => Ok(Some(b.to_string())),
                    other => Err(bad(format!("column `{name}` row {i}: {other} is not a category"))),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

type Record = Map<String, Json_>;

/// The layouts of an MLflow JSON body, each named by its one top-level key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `{"columns": [...], "data": [[...], ...]}`.
    DataframeSplit,
    /// A list of row objects.
    DataframeRecords,
    /// A list of row objects, or one object of equal-length columns.
    Instances,
    /// As `instances`.
    Inputs,
}

impl Layout {
    const ALL: [Layout; 4] = [Layout::DataframeSplit, Layout::DataframeRecords, Layout::Instances, Layout::Inputs];

    /// The layout's key in the body.
    fn as_str(self) -> &'static str {
        match self {
            Layout::DataframeSplit => "dataframe_split",
            Layout::DataframeRecords => "dataframe_records",
            Layout::Instances => "instances",
            Layout::Inputs => "inputs",
        }
    }
}

/// The rows of an MLflow JSON body, as column → cell maps.
fn json_records(value: Json_) -> Result<Vec<Record>, ApiError> {
    let Json_::Object(mut top) = value else {
        return Err(bad(
            "the body must be a JSON object with `dataframe_split`, `dataframe_records`, `instances` or `inputs`",
        ));
    };
    let present: Vec<Layout> = Layout::ALL.into_iter().filter(|l| top.contains_key(l.as_str())).collect();
    let [layout] = present[..] else {
        let found: Vec<&str> = present.iter().map(|l| l.as_str()).collect();
        return Err(bad(format!(
            "give exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs` (found {})",
            if found.is_empty() { "none".to_owned() } else { found.join(", ") }
        )));
    };
    let key = layout.as_str();
    let body = top.remove(key).unwrap_or_default();
    match layout {
        Layout::DataframeSplit => dataframe_split(body),
        Layout::DataframeRecords => records_list(body, key),
        Layout::Instances | Layout::Inputs => match body {
            Json_::Array(_) => records_list(body, key),
            Json_::Object(columns) => columnar(columns, key),
            _ => Err(bad(format!("`{key}` must be a list of rows or an object of columns"))),
        },
    }
}

/// The rows of a `dataframe_split` body: named columns, then rows of as many values.
fn dataframe_split(body: Json_) -> Result<Vec<Record>, ApiError> {
    let Json_::Object(split) = body else { return Err(bad("`dataframe_split` must be an object")) };
    let columns: Vec<String> = match split.get("columns") {
        Some(Json_::Array(c)) => c
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad("`dataframe_split.columns` must be strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("`dataframe_split.columns` is missing")),
    };
    let Some(Json_::Array(data)) = split.get("data") else {
        return Err(bad("`dataframe_split.data` is missing"));
    };
    data.iter()
        .enumerate()
        .map(|(i, row)| match row {
            Json_::Array(cells) if cells.len() == columns.len() => {
                Ok(columns.iter().cloned().zip(cells.iter().cloned()).collect())
            }
            Json_::Array(cells) => Err(bad(format!(
                "`dataframe_split.data` row {i} has {} values for {} columns",
                cells.len(),
                columns.len()
            ))),
            _ => Err(bad(format!("`dataframe_split.data` row {i} is not an array"))),
        })
        .collect()
}

fn records_list(body: Json_, key: &str) -> Result<Vec<Record>, ApiError> {
    let Json_::Array(rows) = body else { return Err(bad(format!("`{key}` must be a list of row objects"))) };
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Json_::Object(m) => Ok(m),
            _ => Err(bad(format!("`{key}` row {i} is not an object of column values"))),
        })
        .collect()
}

fn columnar(columns: Map<String, Json_>, key: &str) -> Result<Vec<Record>, ApiError> {
    let mut n = None;
    let mut lists = Vec::with_capacity(columns.len());
    for (name, v) in columns {
        let values = match v {
            Json_::Array(a) => a,
            scalar => vec![scalar],
        };
        match n {
            None => n = Some(values.len()),
            Some(len) if len != values.len() => {
                return Err(bad(format!("`{key}.{name}` has {} values where another column has {len}", values.len())));
            }
            _ => {}
        }
        lists.push((name, values));
    }
    let n = n.unwrap_or(0);
    let mut rows = vec![Record::new(); n];
    for (name, values) in lists {
        for (row, v) in rows.iter_mut().zip(values) {
            row.insert(name.clone(), v);
        }
    }
    Ok(rows)
}

/// The rows of a CSV body with a header row; cells stay text (typed per feature later).
fn csv_records(body: &[u8]) -> Result<Vec<Record>, ApiError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(format!("invalid CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    reader
        .records()
        .enumerate()
        .map(|(i, r)| {
            let r = r.map_err(|e| bad(format!("invalid CSV row {}: {e}", i + 1)))?;
            Ok(header.iter().cloned().zip(r.iter().map(|c| Json_::String(c.to_owned()))).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: Json_) -> Result<Vec<Record>, String> {
        json_records(v).map_err(|e| e.1)
    }

    #[test]
    fn every_mlflow_layout_gives_the_same_rows() {
        let want = rows(json!({"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]})).unwrap();
        assert_eq!(want.len(), 2);
        for layout in [
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}),
            json!({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}),
            json!({"inputs": {"a": [1, 2], "b": ["x", "y"]}}),
            json!({"inputs": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}),
        ] {
            assert_eq!(rows(layout.clone()).unwrap(), want, "{layout}");
        }
        let csv = csv_records(b"a,b\n1,x\n2,y\n").unwrap();
        assert_eq!(csv[1]["b"], "y");
        assert_eq!(csv[0]["a"], "1");
    }

    #[test]
    fn malformed_bodies_are_refused_with_the_reason() {
        for (body, expected) in [
            (json!([1, 2]), "must be a JSON object"),
            (json!({"rows": []}), "found none"),
            (json!({"inputs": {}, "instances": []}), "found instances, inputs"),
            (json!({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}), "row 0 has 2 values for 1 columns"),
            (json!({"dataframe_split": {"data": []}}), "`dataframe_split.columns` is missing"),
            (json!({"dataframe_records": [3]}), "row 0 is not an object"),
            (json!({"inputs": {"a": [1, 2], "b": [1]}}), "has 1 values where another column has 2"),
        ] {
            let err = rows(body.clone()).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
        assert!(csv_records(b"a,b\n1,2,3\n").unwrap_err().1.contains("invalid CSV row 1"));
    }
}
