//! One training run: datasets → frame → seeded holdout split → preprocessing fitted on the
//! training rows → model → holdout metrics → artifact. Pure and deterministic: the same datasets,
//! spec and seed give the same artifact bytes.

use std::collections::BTreeMap;

use mlops_data::{DatasetError, read_datasets};
use mlops_shared::model::{Artifact, FORMAT, Manifest, Parameters, Preprocessor, ReferenceProfile, holdout_split};
use mlops_shared::spec::{Algorithm, PipelineSpec};

use crate::{gbt, logistic};

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DatasetError),
    #[error("too little data: {0} rows (at least 10 are needed)")]
    TooFew(usize),
    #[error("the training rows hold a single class; a classifier needs both")]
    OneClass,
}

/// A finished run.
#[derive(Debug)]
pub struct Trained {
    pub artifact: Artifact,
}

/// Trains `spec`'s model on `datasets` (id, CSV bytes), in the given order.
pub fn train(spec: &PipelineSpec, datasets: &[(String, Vec<u8>)]) -> Result<Trained, TrainError> {
    let frame = read_datasets(spec, datasets)?;
    if frame.rows < 10 {
        return Err(TrainError::TooFew(frame.rows));
    }
    let t = &spec.training;
    let (train_idx, holdout_idx) = holdout_split(frame.rows, t.holdout, t.seed);
    let train = frame.take(&train_idx);
    let holdout = frame.take(&holdout_idx);
    let y = train.target.as_deref().expect("frames are read with their target");
    if y.iter().all(|&v| v == y[0]) {
        return Err(TrainError::OneClass);
    }
    let preprocessing = Preprocessor::fit(&spec.features, &train);
    let x = preprocessing.transform_frame(&train);
    let parameters = match t.algorithm {
        Algorithm::LogisticRegression => {
            let defaults = logistic::Params::default();
            let params = logistic::Params {
                l2: t.params.get("l2").copied().unwrap_or(defaults.l2),
                max_iter: t.params.get("max_iter").map_or(defaults.max_iter, |v| *v as u32),
                tol: t.params.get("tol").copied().unwrap_or(defaults.tol),
            };
            let fit = logistic::fit(&x, preprocessing.width(), y, params);
            Parameters::Logistic { intercept: fit.intercept, weights: fit.weights }
        }
        Algorithm::GradientBoosting => {
            let d = gbt::Params::default();
            let get = |k: &str, default: f64| t.params.get(k).copied().unwrap_or(default);
            // The spec check keeps the whole-number parameters whole and in range.
            let params = gbt::Params {
                trees: get("trees", f64::from(d.trees)) as u32,
                learning_rate: get("learning_rate", d.learning_rate),
                num_leaves: get("num_leaves", f64::from(d.num_leaves)) as u32,
                max_depth: get("max_depth", f64::from(d.max_depth)) as u32,
                min_data_in_leaf: get("min_data_in_leaf", f64::from(d.min_data_in_leaf)) as u32,
                l2: get("l2", d.l2),
                max_bins: get("max_bins", f64::from(d.max_bins)) as u32,
            };
            let fit = gbt::fit(&x, preprocessing.width(), y, &preprocessing.one_hot_groups(), params, |_| {});
            Parameters::GradientBoosting { base_score: fit.base_score, trees: fit.trees }
        }
    };
    let mut artifact = Artifact {
        manifest: Manifest {
            format: FORMAT.into(),
            pipeline: spec.name.to_string(),
            algorithm: t.algorithm.as_str().into(),
            params: t.params.clone(),
            features: spec.features.clone(),
            target: spec.target.clone(),
            dataset_ids: datasets.iter().map(|(id, _)| id.clone()).collect(),
            spec_hash: spec.hash(),
            seed: t.seed,
            holdout_share: t.holdout,
            code_version: mlops_shared::CODE_VERSION.into(),
            training_rows: train.rows as u64,
            holdout_rows: holdout.rows as u64,
            metrics: BTreeMap::new(),
            reference: ReferenceProfile::fit(&spec.features, &train),
        },
        preprocessing,
        parameters,
    };
    let scores = artifact.predict_frame(&holdout);
    let labels = holdout.target.as_deref().expect("frames are read with their target");
    artifact.manifest.metrics =
        mlops_shared::scoring::classification(labels, &scores).into_iter().filter(|(_, v)| v.is_finite()).collect();
    Ok(Trained { artifact })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name: toy
features:
  - {name: x, type: numeric}
  - {name: c, type: categorical, categories: [a, b]}
target: {name: y}
"#;

    fn data(n: usize, flip: bool) -> Vec<u8> {
        let mut s = String::from("x,c,y\n");
        for i in 0..n {
            let x = (i as f64 * 0.37).sin() * 3.0;
            let c = if i % 3 == 0 { "a" } else { "b" };
            let y = (x + if c == "a" { 0.5 } else { -0.5 } > 0.0) != flip;
            s.push_str(&format!("{x:.4},{c},{}\n", u8::from(y)));
        }
        s.into_bytes()
    }

    #[test]
    fn trains_a_useful_model_bit_for_bit_reproducibly() {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        let ds = vec![("d1".to_string(), data(500, false))];
        let a = train(&spec, &ds).unwrap().artifact;
        let b = train(&spec, &ds).unwrap().artifact;
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert!(a.manifest.metrics["roc_auc"] > 0.95, "{:?}", a.manifest.metrics);
        assert_eq!((a.manifest.training_rows, a.manifest.holdout_rows), (400, 100));
        let mut other_seed = spec.clone();
        other_seed.training.seed = 7;
        assert_ne!(train(&other_seed, &ds).unwrap().artifact.to_bytes(), a.to_bytes());
    }

    #[test]
    fn gradient_boosting_trains_serves_and_reproduces_through_the_artifact() {
        let spec = PipelineSpec::from_yaml(&format!(
            "{SPEC}training: {{algorithm: gradient_boosting, params: {{trees: 40, num_leaves: 8, min_data_in_leaf: 5}}}}\n"
        ))
        .unwrap();
        let ds = vec![("d1".to_string(), data(800, false))];
        let a = train(&spec, &ds).unwrap().artifact;
        assert_eq!(a.to_bytes(), train(&spec, &ds).unwrap().artifact.to_bytes());
        assert_eq!(a.manifest.algorithm, "gradient_boosting");
        assert!(a.manifest.metrics["roc_auc"] > 0.95, "{:?}", a.manifest.metrics);
        let Parameters::GradientBoosting { trees, .. } = &a.parameters else { panic!("not boosted trees") };
        assert_eq!(trees.len(), 40);
        // What serving loads is what training wrote, and it predicts the same.
        let bytes = a.to_bytes();
        let loaded = Artifact::from_verified_bytes(&bytes, &mlops_shared::ids::Sha256::of(&bytes)).unwrap();
        let row = [mlops_shared::table::Value::Num(2.0), mlops_shared::table::Value::Cat("a".into())];
        assert_eq!(loaded.predict(&row), a.predict(&row));
        assert!(a.predict(&row).positive);
    }

    #[test]
    fn bad_training_parameters_are_refused_by_the_spec() {
        for (params, expected) in [
            ("{trees: 2.5}", "`training.params.trees` must be a whole number"),
            ("{num_leaves: 1}", "`training.params.num_leaves` must be a whole number in [2, 65536]"),
            ("{learning_rate: 0}", "`training.params.learning_rate` must be in (0, 1]"),
            ("{max_iter: 3}", "not a parameter of gradient_boosting"),
        ] {
            let text = format!("{SPEC}training: {{algorithm: gradient_boosting, params: {params}}}\n");
            let err = PipelineSpec::from_yaml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{params}: {err}");
        }
    }

    #[test]
    fn refuses_data_it_cannot_learn_from() {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        let few = train(&spec, &[("d".into(), data(5, false))]).unwrap_err();
        assert!(matches!(few, TrainError::TooFew(5)));
        let one_class = b"x,c,y\n".iter().copied().chain((0..20).flat_map(|_| b"1,a,1\n".iter().copied())).collect();
        assert!(matches!(train(&spec, &[("d".into(), one_class)]), Err(TrainError::OneClass)));
        let bad = train(&spec, &[("d9".into(), b"x,c,y\nzz,a,1\n".to_vec())]).unwrap_err().to_string();
        assert!(bad.contains("dataset d9") && bad.contains("not a number"), "{bad}");
    }
}
