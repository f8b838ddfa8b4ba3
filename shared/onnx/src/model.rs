//! An ONNX model checked against its pipeline, answering rows of raw feature values.

use std::sync::Mutex;

use mlops_shared::model::onnx_graph::{GRAPH_FILE, check_external_name};
use mlops_shared::spec::{FeatureSpec, Task};
use mlops_shared::table::Value;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;

use crate::contract::{self, Answer, ContractError, Feed, Number};
use crate::runtime::Runtime;

/// Why rows got no answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PredictError {
    #[error("feature `{feature}`: {problem}")]
    Input { feature: String, problem: String },
    #[error("the ONNX runtime failed: {0}")]
    Runtime(String),
}

/// A loaded ONNX model that meets the contract of [`crate::contract`].
pub struct OnnxModel {
    /// `ort` runs a session through `&mut`: requests take turns (a run of one row takes microseconds).
    session: Mutex<Session>,
    feed: Feed,
    answer: Answer,
    names: Vec<String>,
}

impl OnnxModel {
    /// Reads `bytes` as an ONNX graph and checks it against `features` and `task`. One thread per
    /// session and no spinning: single rows are fastest so, and a busy server's requests are
    /// already parallel.
    pub fn load(runtime: &Runtime, bytes: &[u8], features: &[FeatureSpec], task: Task) -> Result<Self, ContractError> {
        Self::load_with(runtime, bytes, &[], features, task)
    }

    /// As [`OnnxModel::load`], for a graph whose weights are partly in `external` files, by the
    /// relative path the graph names them with.
    pub fn load_with(
        runtime: &Runtime,
        bytes: &[u8],
        external: &[(String, Vec<u8>)],
        features: &[FeatureSpec],
        task: Task,
    ) -> Result<Self, ContractError> {
        let unreadable = |e: &dyn std::fmt::Display| ContractError::Unreadable(e.to_string());
        let builder = Session::builder(&runtime.environment).map_err(|e| unreadable(&e))?;
        let builder = builder.with_optimization_level(GraphOptimizationLevel::All).map_err(|e| unreadable(&e))?;
        let builder = builder.with_intra_threads(1).map_err(|e| unreadable(&e))?;
        let builder = builder.with_inter_threads(1).map_err(|e| unreadable(&e))?;
        let mut builder = builder.with_intra_op_spinning(false).map_err(|e| unreadable(&e))?;
        let session = if external.is_empty() {
            builder.commit_from_memory(bytes).map_err(|e| unreadable(&e))?
        } else {
            // The runtime resolves external tensors (shape inference included) from files beside
            // the graph: lay them out so in a directory of their own, read while the session is made.
            let dir = tempfile::tempdir().map_err(|e| unreadable(&format!("a directory for its files: {e}")))?;
            let graph = dir.path().join(GRAPH_FILE);
            for (name, _) in external {
                check_external_name(name).map_err(ContractError::Unreadable)?;
            }
            let files = external.iter().map(|(n, c)| (n.as_str(), &c[..]));
            for (name, contents) in std::iter::once((GRAPH_FILE, bytes)).chain(files) {
                let path = dir.path().join(name);
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, contents));
                written.map_err(|e| unreadable(&format!("writing {name}: {e}")))?;
            }
            builder.commit_from_file(&graph).map_err(|e| unreadable(&e))?
        };
        let (feed, answer) = contract::check(features, task, session.inputs(), session.outputs())?;
        let names = features.iter().map(|f| f.name.clone()).collect();
        Ok(Self { session: Mutex::new(session), feed, answer, names })
    }

    /// The answer for each row (its values in the spec's feature order): the probability of the
    /// positive class, or the predicted value. A missing number is fed as NaN and a missing
    /// category as the empty string, as the exporters' imputers expect.
    pub fn predict(&self, rows: &[Vec<Value>]) -> Result<Vec<f64>, PredictError> {
        let inputs = self.inputs(rows)?;
        let runtime = |e: ort::Error| PredictError::Runtime(e.to_string());
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(inputs).map_err(runtime)?;
        let out = outputs
            .get(&self.answer.output)
            .ok_or_else(|| PredictError::Runtime(format!("no output `{}`", self.answer.output)))?;
        let values: Vec<f64> = match self.answer.element {
            Number::F32 => out.try_extract_tensor::<f32>().map_err(runtime)?.1.iter().map(|&v| f64::from(v)).collect(),
            Number::F64 => out.try_extract_tensor::<f64>().map_err(runtime)?.1.to_vec(),
        };
        let (width, column) = (self.answer.width, self.answer.column);
        if values.len() != rows.len() * width {
            return Err(PredictError::Runtime(format!(
                "output `{}` has {} values for {} rows, not {width} a row",
                self.answer.output,
                values.len(),
                rows.len()
            )));
        }
        Ok(values.chunks(width).map(|row| row[column]).collect())
    }

    /// The graph's inputs for `rows`, by the feed the contract found.
    fn inputs(&self, rows: &[Vec<Value>]) -> Result<Vec<(String, SessionInputValue<'static>)>, PredictError> {
        match &self.feed {
            Feed::Named(inputs) => inputs
                .iter()
                .enumerate()
                .map(|(i, (name, number, column))| {
                    let shape = if *column { vec![rows.len(), 1] } else { vec![rows.len()] };
                    let value = match number {
                        Some(n) => {
                            numbers(*n, shape, rows.iter().map(|r| self.number(r, i)).collect::<Result<_, _>>()?)
                        }
                        None => strings(shape, rows.iter().map(|r| self.text(r, i)).collect::<Result<_, _>>()?),
                    };
                    Ok((name.clone(), value?))
                })
                .collect(),
            Feed::Matrix(name, n) => {
                let width = self.names.len();
                let mut flat = Vec::with_capacity(rows.len() * width);
                for row in rows {
                    for i in 0..width {
                        flat.push(self.number(row, i)?);
                    }
                }
                Ok(vec![(name.clone(), numbers(*n, vec![rows.len(), width], flat)?)])
            }
        }
    }

    fn number(&self, row: &[Value], i: usize) -> Result<f64, PredictError> {
        match row.get(i) {
            Some(Value::Num(v)) => Ok(*v),
            Some(Value::Missing) => Ok(f64::NAN),
            other => Err(self.bad(i, format!("expected a number, got {other:?}"))),
        }
    }

    fn text(&self, row: &[Value], i: usize) -> Result<String, PredictError> {
        match row.get(i) {
            Some(Value::Cat(s)) if s.contains('\0') => {
                Err(self.bad(i, "a category may not contain a NUL character".into()))
            }
            Some(Value::Cat(s)) => Ok(s.clone()),
            Some(Value::Missing) => Ok(String::new()),
            other => Err(self.bad(i, format!("expected a category, got {other:?}"))),
        }
    }

    fn bad(&self, i: usize, problem: String) -> PredictError {
        let feature = self.names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
        PredictError::Input { feature, problem }
    }
}

/// A float tensor of `values` in the element type the graph declares.
fn numbers(n: Number, shape: Vec<usize>, values: Vec<f64>) -> Result<SessionInputValue<'static>, PredictError> {
    let runtime = |e: ort::Error| PredictError::Runtime(e.to_string());
    Ok(match n {
        #[expect(clippy::cast_possible_truncation, reason = "the graph declares 32-bit floats")]
        Number::F32 => Tensor::from_array((shape, values.into_iter().map(|v| v as f32).collect::<Vec<f32>>()))
            .map_err(runtime)?
            .into(),
        Number::F64 => Tensor::from_array((shape, values)).map_err(runtime)?.into(),
    })
}

/// A string tensor of `values`.
fn strings(shape: Vec<usize>, values: Vec<String>) -> Result<SessionInputValue<'static>, PredictError> {
    Ok(Tensor::from_string_array((shape, &values[..])).map_err(|e| PredictError::Runtime(e.to_string()))?.into())
}
