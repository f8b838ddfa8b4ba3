//! Request inputs, as both OIP transports and `/invocations` deliver them: named columns of numbers
//! or text, or one 2-D tensor of rows, laid out as rows in the model's feature order. Errors name
//! the input at fault.

use std::collections::HashMap;

use mlops_shared::model::Model;
use mlops_shared::spec::FeatureKind;
use mlops_shared::table::Value;

use super::models::Models;
use crate::error::DeployerError;

/// One named input column, decoded from either transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Num(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

impl Column {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::Num(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request's named input columns.
pub type Inputs = Vec<(String, Column)>;

/// Lays named `inputs` out as rows in the model's feature order. Errors name the input.
pub fn rows(artifact: &dyn Model, inputs: Vec<(String, Column)>) -> Result<Vec<Vec<Value>>, DeployerError> {
    let bad = DeployerError::BadInput;
    let mut by_name: HashMap<String, Column> = HashMap::with_capacity(inputs.len());
    let mut n: Option<usize> = None;
    for (name, col) in inputs {
        if artifact.manifest().features.iter().all(|f| f.name != name) {
            let known: Vec<&str> = artifact.manifest().features.iter().map(|f| f.name.as_str()).collect();
            return Err(bad(format!("unknown input `{name}` (the model's inputs: {})", known.join(", "))));
        }
        match n {
            None => n = Some(col.len()),
            Some(len) if len != col.len() => {
                return Err(bad(format!("input `{name}` has {} values where another input has {len}", col.len())));
            }
            _ => {}
        }
        if by_name.insert(name.clone(), col).is_some() {
            return Err(bad(format!("input `{name}` is given twice")));
        }
    }
    let n = n.ok_or_else(|| bad("the request has no inputs".into()))?;
    let mut out = vec![Vec::with_capacity(artifact.manifest().features.len()); n];
    for f in &artifact.manifest().features {
        let col = by_name.remove(&f.name).ok_or_else(|| bad(format!("input `{}` is missing", f.name)))?;
        match (f.kind, col) {
            (FeatureKind::Numeric, Column::Num(v)) => {
                for (row, x) in out.iter_mut().zip(v) {
                    row.push(x.map_or(Value::Missing, Value::Num));
                }
            }
            (FeatureKind::Categorical, Column::Str(v)) => {
                for (row, x) in out.iter_mut().zip(v) {
                    row.push(x.map_or(Value::Missing, Value::Cat));
                }
            }
            (FeatureKind::Numeric, Column::Str(_)) => {
                return Err(bad(format!("input `{}` must be numeric (FP32, FP64, INT64)", f.name)));
            }
            (FeatureKind::Categorical, Column::Num(_)) => {
                return Err(bad(format!("input `{}` must be BYTES (strings)", f.name)));
            }
        }
    }
    Ok(out)
}

/// Splits one 2-D input tensor of shape `[rows, features]` (row-major, one column per feature in
/// the model's order, as `GET /v2/models/{name}` lists them) into the named columns. Numbers
/// for categorical features are taken as their text; text for numeric features must parse.
/// `None` when the request is not one such tensor (named inputs are the usual form).
pub fn matrix_columns(
    models: &Models,
    pipeline: &str,
    inputs: &[(String, Vec<i64>, Column)],
) -> Option<Result<Vec<(String, Column)>, DeployerError>> {
    let [(name, shape, col)] = inputs else { return None };
    let model = models.get(pipeline)?;
    let features = &model.artifact.manifest().features;
    if shape.len() != 2 || features.iter().any(|f| &f.name == name) {
        return None;
    }
    let width = features.len();
    if shape[1] != width as i64 || shape[0] < 0 || shape[0] * shape[1] != col.len() as i64 {
        return Some(Err(DeployerError::BadInput(format!(
            "input `{name}`: a 2-D tensor must be [rows, {width}] (one column per feature: {}) holding rows × {width} values; got shape {shape:?} with {} values",
            features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
            col.len()
        ))));
    }
    let rows = shape[0] as usize;
    let out = features
        .iter()
        .enumerate()
        .map(|(j, f)| {
            let at = (0..rows).map(move |i| i * width + j);
            let column = match (f.kind, col) {
                (FeatureKind::Numeric, Column::Num(v)) => Column::Num(at.map(|k| v[k]).collect()),
                (FeatureKind::Categorical, Column::Num(v)) => {
                    Column::Str(at.map(|k| v[k].map(|x| x.to_string())).collect())
                }
                (FeatureKind::Categorical, Column::Str(v)) => Column::Str(at.map(|k| v[k].clone()).collect()),
                (FeatureKind::Numeric, Column::Str(v)) => Column::Num(
                    at.map(|k| match v[k].as_deref().map(str::trim) {
                        None | Some("") => Ok(None),
                        Some(text) => text.parse().map(Some).map_err(|_| {
                            DeployerError::BadInput(format!(
                                "input `{name}` column {j} (`{}`): {text:?} is not a number",
                                f.name
                            ))
                        }),
                    })
                    .collect::<Result<_, _>>()?,
                ),
            };
            Ok((f.name.clone(), column))
        })
        .collect();
    Some(out)
}

/// The OIP datatype a feature of `kind` is declared with in the model's metadata.
pub(crate) fn oip_datatype(kind: FeatureKind) -> &'static str {
    match kind {
        FeatureKind::Numeric => "FP64",
        FeatureKind::Categorical => "BYTES",
    }
}
