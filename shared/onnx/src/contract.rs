//! The contract an ONNX model meets to stand in for a built-in one, checked from its declared inputs
//! and outputs before it answers anything:
//!
//! - **Inputs:** one named input per feature — a string tensor for a categorical feature, a float
//!   (32 or 64 bit) tensor for a numeric one, each `[N, 1]` or `[N]` — as skl2onnx exports a
//!   `Pipeline` whose `ColumnTransformer` takes named columns; or one `[N, F]` float tensor whose
//!   columns are the spec's F features in order (every feature numeric), as onnxmltools exports a
//!   LightGBM or XGBoost booster. The platform passes raw values: preprocessing is in the graph.
//! - **Outputs, classification:** the class probabilities as a `[N, 2]` float tensor, the
//!   classes in sorted order so that the positive class is the second column (scikit-learn's
//!   order for `0`/`1` and `no`/`yes`); a label output beside it is allowed. A ZipMap output (a
//!   sequence of maps, the exporters' default) is refused, naming the option that turns it off.
//! - **Outputs, regression:** one value per row, a `[N]` or `[N, 1]` float tensor.

use mlops_shared::spec::{FeatureKind, FeatureSpec, Task};
use ort::value::{Outlet, TensorElementType, ValueType};

/// How a model does not fit its pipeline.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ContractError {
    #[error("not a readable ONNX model: {0}")]
    Unreadable(String),
    #[error("input `{input}`: {problem}")]
    Input { input: String, problem: String },
    #[error(
        "feature `{0}` is not one of the model's inputs (give one named input per feature, or one [N, F] float tensor)"
    )]
    MissingFeature(String),
    #[error(
        "output `{output}` is a ZipMap (a sequence of maps): export the probabilities as a tensor — skl2onnx: options={{id(classifier): {{'zipmap': False}}}}; onnxmltools: zipmap=False"
    )]
    ZipMap { output: String },
    #[error("no output fits a {task} model: {expected}; the model has {found}")]
    Output { task: &'static str, expected: &'static str, found: String },
    #[error("on the sample rows: {0}")]
    Sample(String),
}

/// What a numeric value is fed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Number {
    F32,
    F64,
}

/// How rows are fed to the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Feed {
    /// One input per feature, in the spec's feature order: the input's name, its element type
    /// (`None` for strings) and whether it is `[N, 1]` (else `[N]`).
    Named(Vec<(String, Option<Number>, bool)>),
    /// One `[N, F]` float input named so.
    Matrix(String, Number),
}

/// Which output carries the answer, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) output: String,
    pub(crate) element: Number,
    /// Values per row, and the column that is the answer (the positive class's probability).
    pub(crate) width: usize,
    pub(crate) column: usize,
}

/// The feed and answer of a graph with `inputs` and `outputs` for `features` and `task`.
pub(crate) fn check(
    features: &[FeatureSpec],
    task: Task,
    inputs: &[Outlet],
    outputs: &[Outlet],
) -> Result<(Feed, Answer), ContractError> {
    Ok((feed(features, inputs)?, answer(task, outputs)?))
}

fn feed(features: &[FeatureSpec], inputs: &[Outlet]) -> Result<Feed, ContractError> {
    if let [only] = inputs
        && features.iter().all(|f| f.name != only.name())
    {
        return matrix(features, only);
    }
    for input in inputs {
        if features.iter().all(|f| f.name != input.name()) {
            let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
            let problem = format!("not a feature of the pipeline ({})", names.join(", "));
            return Err(ContractError::Input { input: input.name().into(), problem });
        }
    }
    let mut named = Vec::with_capacity(features.len());
    for f in features {
        let input =
            inputs.iter().find(|i| i.name() == f.name).ok_or_else(|| ContractError::MissingFeature(f.name.clone()))?;
        named.push(named_input(f, input)?);
    }
    Ok(Feed::Named(named))
}

/// One feature's input: its element type must fit the feature's type, its shape `[N, 1]` or `[N]`.
fn named_input(f: &FeatureSpec, input: &Outlet) -> Result<(String, Option<Number>, bool), ContractError> {
    let problem = |p: String| ContractError::Input { input: f.name.clone(), problem: p };
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(problem(format!("is {}, not a tensor", input.dtype())));
    };
    let element = match (f.kind, ty) {
        (FeatureKind::Categorical, TensorElementType::String) => None,
        (FeatureKind::Numeric, TensorElementType::Float32) => Some(Number::F32),
        (FeatureKind::Numeric, TensorElementType::Float64) => Some(Number::F64),
        (FeatureKind::Categorical, other) => {
            return Err(problem(format!("is {other}, where a categorical feature needs strings")));
        }
        (FeatureKind::Numeric, other) => {
            return Err(problem(format!("is {other}, where a numeric feature needs float or double")));
        }
    };
    let column = match **shape {
        [_] => false,
        [_, 1 | -1] => true,
        _ => return Err(problem(format!("has shape {shape:?}, where one value per row is [N, 1] or [N]"))),
    };
    Ok((f.name.clone(), element, column))
}

/// The one-tensor form: every feature numeric, the tensor `[N, F]` of floats.
fn matrix(features: &[FeatureSpec], input: &Outlet) -> Result<Feed, ContractError> {
    let problem = |p: String| ContractError::Input { input: input.name().into(), problem: p };
    if let Some(f) = features.iter().find(|f| f.kind == FeatureKind::Categorical) {
        return Err(problem(format!(
            "is not a feature; as the one [N, F] float input it cannot carry the categorical feature `{}`",
            f.name
        )));
    }
    let Some((number, shape)) = float_tensor(input) else {
        return Err(problem(format!("is {}, where the one input must be a float tensor [N, F]", input.dtype())));
    };
    let width = features.len() as i64;
    if !matches!(shape, [_, w] if *w == width || *w == -1) {
        return Err(problem(format!("has shape {shape:?}, where the spec's {width} features need [N, {width}]")));
    }
    Ok(Feed::Matrix(input.name().into(), number))
}

/// The element type and shape of a 32- or 64-bit float tensor; `None` for anything else.
fn float_tensor(outlet: &Outlet) -> Option<(Number, &[i64])> {
    match outlet.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => Some((Number::F32, shape)),
        ValueType::Tensor { ty: TensorElementType::Float64, shape, .. } => Some((Number::F64, shape)),
        _ => None,
    }
}

fn answer(task: Task, outputs: &[Outlet]) -> Result<Answer, ContractError> {
    if let Some(zipmap) = outputs.iter().find(|o| matches!(o.dtype(), ValueType::Sequence(_) | ValueType::Map { .. })) {
        return Err(ContractError::ZipMap { output: zipmap.name().into() });
    }
    let fits = |o: &&Outlet| match (task, float_tensor(o)) {
        (Task::BinaryClassification, Some((_, shape))) => matches!(shape, [_, 2 | -1]),
        (Task::Regression, Some((_, shape))) => matches!(shape, [_] | [_, 1 | -1]),
        (_, None) => false,
    };
    let Some(out) = outputs.iter().find(fits) else {
        let found: Vec<String> = outputs.iter().map(|o| format!("`{}` {}", o.name(), o.dtype())).collect();
        let expected = match task {
            Task::BinaryClassification => "the class probabilities as a [N, 2] float tensor",
            Task::Regression => "one float value per row, [N] or [N, 1]",
        };
        return Err(ContractError::Output { task: task.as_str(), expected, found: found.join(", ") });
    };
    let (element, _) = float_tensor(out).expect("found as a float tensor");
    let (width, column) = match task {
        Task::BinaryClassification => (2, 1),
        Task::Regression => (1, 0),
    };
    Ok(Answer { output: out.name().into(), element, width, column })
}
