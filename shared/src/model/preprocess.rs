//! Preprocessing fitted on training data and stored in the artifact: numeric features are imputed
//! with the training mean and standardised; categorical features are one-hot encoded over the
//! spec's categories, an unseen or missing category encoding as all zeros.

use serde::{Deserialize, Serialize};

use crate::spec::{FeatureKind, FeatureSpec};
use crate::table::{Column, Frame, Value};

/// How one feature becomes model inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureTransform {
    /// (x - mean) / std, a missing x taken as mean.
    Standardize { name: String, mean: f64, std: f64 },
    /// One input per category.
    OneHot { name: String, categories: Vec<String> },
}

impl FeatureTransform {
    fn width(&self) -> usize {
        match self {
            Self::Standardize { .. } => 1,
            Self::OneHot { categories, .. } => categories.len(),
        }
    }
}

/// The fitted preprocessing of every feature, in spec order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessor {
    pub transforms: Vec<FeatureTransform>,
}

impl Preprocessor {
    /// Fits on `frame`, whose columns follow `features`.
    pub fn fit(features: &[FeatureSpec], frame: &Frame) -> Self {
        let transforms = features
            .iter()
            .zip(&frame.columns)
            .map(|(f, col)| match (f.kind, col) {
                (FeatureKind::Numeric, Column::Numeric(values)) => {
                    let (mut n, mut sum) = (0usize, 0.0);
                    for v in values.iter().flatten() {
                        n += 1;
                        sum += v;
                    }
                    let mean = if n > 0 { sum / n as f64 } else { 0.0 };
                    let var = values.iter().flatten().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
                    // A constant column would divide by zero; it carries no signal, so scale by 1.
                    let std = if var > 1e-24 { var.sqrt() } else { 1.0 };
                    FeatureTransform::Standardize { name: f.name.clone(), mean, std }
                }
                _ => FeatureTransform::OneHot { name: f.name.clone(), categories: f.categories.clone() },
            })
            .collect();
        Self { transforms }
    }

    /// Number of model inputs.
    pub fn width(&self) -> usize {
        self.transforms.iter().map(FeatureTransform::width).sum()
    }

    /// The ranges of model inputs that one-hot encode one feature each.
    pub fn one_hot_groups(&self) -> Vec<std::ops::Range<usize>> {
        let mut at = 0;
        let mut groups = Vec::new();
        for t in &self.transforms {
            let w = t.width();
            if matches!(t, FeatureTransform::OneHot { .. }) {
                groups.push(at..at + w);
            }
            at += w;
        }
        groups
    }

    /// Appends the model inputs for one row (values in spec order) to `out`.
    pub fn transform_into(&self, row: &[Value], out: &mut Vec<f64>) {
        for (t, v) in self.transforms.iter().zip(row) {
            match t {
                FeatureTransform::Standardize { mean, std, .. } => {
                    let x = match v {
                        Value::Num(x) if x.is_finite() => *x,
                        _ => *mean,
                    };
                    out.push((x - mean) / std);
                }
                FeatureTransform::OneHot { categories, .. } => {
                    let hit = match v {
                        Value::Cat(c) => categories.iter().position(|k| k == c),
                        _ => None,
                    };
                    out.extend((0..categories.len()).map(|i| if Some(i) == hit { 1.0 } else { 0.0 }));
                }
            }
        }
    }

    /// The design matrix of `frame`, row-major, `width()` columns.
    pub fn transform_frame(&self, frame: &Frame) -> Vec<f64> {
        let mut out = Vec::with_capacity(frame.rows * self.width());
        for i in 0..frame.rows {
            self.transform_into(&frame.row(i), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PipelineSpec, tests::SPEC};

    #[test]
    fn standardises_imputes_and_one_hot_encodes() {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        let frame = Frame {
            columns: vec![
                Column::Numeric(vec![Some(0.0), Some(10.0)]),
                Column::Numeric(vec![Some(10.0), None]),
                Column::Categorical(vec![Some("monthly".into()), Some("yearly".into())]),
            ],
            target: Some(vec![1.0, 0.0]),
            rows: 2,
        };
        let p = Preprocessor::fit(&spec.features, &frame);
        assert_eq!(p.width(), 4);
        let m = p.transform_frame(&frame);
        // tenure mean 5, std 5; charges mean 10 (one value), constant so std 1, missing -> mean.
        assert_eq!(m, vec![-1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        let mut out = vec![];
        p.transform_into(&[Value::Num(5.0), Value::Num(12.0), Value::Cat("weekly".into())], &mut out);
        assert_eq!(out, vec![0.0, 2.0, 0.0, 0.0]);
    }
}
