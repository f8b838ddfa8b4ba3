//! Preprocessing fitted on training data and stored in the artifact: numeric features are imputed
//! (with the training mean, or median) and standardised; categorical features are one-hot encoded
//! over the spec's categories, an unseen or missing category encoding as all zeros, or ordinally
//! encoded (the category's position; -1 for an unseen or missing one).

use serde::{Deserialize, Serialize};

use crate::spec::{Encoding, FeatureKind, FeatureSpec, Impute};
use crate::table::{Column, Frame, Value, ValueRef};

/// How one feature becomes model inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureTransform {
    /// (x - mean) / std, a missing x taken as `fill` (the mean when absent).
    Standardize {
        name: String,
        mean: f64,
        std: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fill: Option<f64>,
    },
    /// One input per category.
    OneHot { name: String, categories: Vec<String> },
    /// One input: the category's position, -1 when unseen or missing.
    Ordinal { name: String, categories: Vec<String> },
}

impl FeatureTransform {
    fn width(&self) -> usize {
        match self {
            Self::Standardize { .. } | Self::Ordinal { .. } => 1,
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
                    let fill = match f.impute {
                        None | Some(Impute::Mean) => None,
                        Some(Impute::Median) => Some(median(values)),
                    };
                    FeatureTransform::Standardize { name: f.name.clone(), mean, std, fill }
                }
                _ => match f.encoding {
                    None | Some(Encoding::OneHot) => {
                        FeatureTransform::OneHot { name: f.name.clone(), categories: f.categories.clone() }
                    }
                    Some(Encoding::Ordinal) => {
                        FeatureTransform::Ordinal { name: f.name.clone(), categories: f.categories.clone() }
                    }
                },
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
        self.transform_values(row.iter().map(Value::as_ref), out);
    }

    /// [`Self::transform_into`] for values seen where they are (a frame's row, without copying it).
    pub fn transform_values<'a>(&self, row: impl Iterator<Item = ValueRef<'a>>, out: &mut Vec<f64>) {
        for (t, v) in self.transforms.iter().zip(row) {
            match t {
                FeatureTransform::Standardize { mean, std, fill, .. } => {
                    let x = match v {
                        ValueRef::Num(x) if x.is_finite() => x,
                        _ => fill.unwrap_or(*mean),
                    };
                    out.push((x - mean) / std);
                }
                FeatureTransform::Ordinal { categories, .. } => {
                    let at = match v {
                        ValueRef::Cat(c) => categories.iter().position(|k| k == c),
                        _ => None,
                    };
                    out.push(at.map_or(-1.0, |i| i as f64));
                }
                FeatureTransform::OneHot { categories, .. } => {
                    let hit = match v {
                        ValueRef::Cat(c) => categories.iter().position(|k| k == c),
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
            self.transform_values(frame.columns.iter().map(|c| c.value_ref(i)), &mut out);
        }
        out
    }
}

/// The median of the present values (the mean of the middle two for an even count); 0 for none.
fn median(values: &[Option<f64>]) -> f64 {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
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

    #[test]
    fn ordinal_encoding_and_median_imputation_when_the_spec_asks() {
        let spec = PipelineSpec::from_yaml(
            &SPEC
                .replace(
                    "{name: charges, type: numeric, nullable: true}",
                    "{name: charges, type: numeric, nullable: true, impute: median}",
                )
                .replace("categories: [monthly, yearly]}", "categories: [monthly, yearly], encoding: ordinal}"),
        )
        .unwrap();
        let frame = Frame {
            columns: vec![
                Column::Numeric(vec![Some(0.0), Some(10.0), Some(5.0)]),
                Column::Numeric(vec![Some(1.0), Some(2.0), Some(30.0)]),
                Column::Categorical(vec![Some("monthly".into()), Some("yearly".into()), None]),
            ],
            target: Some(vec![1.0, 0.0, 1.0]),
            rows: 3,
        };
        let p = Preprocessor::fit(&spec.features, &frame);
        assert_eq!(p.width(), 3);
        assert!(p.one_hot_groups().is_empty());
        let mut out = vec![];
        p.transform_into(&[Value::Num(5.0), Value::Missing, Value::Cat("yearly".into())], &mut out);
        // charges: mean 11, a missing value filled with the median 2, then standardised.
        let FeatureTransform::Standardize { mean, std, fill, .. } = &p.transforms[1] else { panic!() };
        assert_eq!((*mean, *fill), (11.0, Some(2.0)));
        assert_eq!(out, vec![0.0, (2.0 - 11.0) / std, 1.0]);
        out.clear();
        p.transform_into(&[Value::Num(5.0), Value::Num(11.0), Value::Cat("weekly".into())], &mut out);
        assert_eq!(out[1..], [0.0, -1.0], "an unseen category is -1");
        let err = PipelineSpec::from_yaml(&SPEC.replace("max: 100}", "max: 100, encoding: ordinal}")).unwrap_err();
        assert!(err.to_string().contains("`encoding` is for categorical features"), "{err}");
    }
}
