//! One training run: datasets → frame → seeded holdout split → preprocessing fitted on the
//! training rows → model → holdout metrics → artifact. Pure and deterministic: the same datasets,
//! spec and seed give the same artifact bytes.

use std::collections::BTreeMap;

use mlops_data::{DatasetError, read_datasets};
use mlops_shared::model::{Artifact, FORMAT, Manifest, Parameters, Preprocessor, ReferenceProfile, holdout_split};
use mlops_shared::spec::{Algorithm, PipelineSpec};

use crate::logistic;

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
