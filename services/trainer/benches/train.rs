//! `just bench-train`: fits logistic regression and gradient-boosted trees on a training file and
//! scores a test file, as the trainer does (the spec's preprocessing, then the fit), timing the
//! fit alone, so the figures compare with scikit-learn's and LightGBM's `fit` on the same inputs.
//!
//! Usage: cargo bench -p mlops-trainer --bench train -- SPEC.yaml TRAIN.csv TEST.csv [logistic|gbt ...]

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::Instant;

use mlops_shared::model::{Preprocessor, Tree, sigmoid};
use mlops_shared::scoring::roc_auc;
use mlops_trainer::{gbt, linear};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [spec, train, test, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: train SPEC.yaml TRAIN.csv TEST.csv [logistic|gbt ...]");
    };
    let which: Vec<&str> =
        if rest.is_empty() { vec!["logistic", "gbt"] } else { rest.iter().map(String::as_str).collect() };
    let spec = mlops_shared::spec::PipelineSpec::from_yaml(&std::fs::read_to_string(spec)?)?;
    let read = |path: &str| -> anyhow::Result<_> {
        Ok(mlops_data::read_datasets(&spec, &[(path.to_owned(), std::fs::read(path)?)])?)
    };
    let (train, test) = (read(train)?, read(test)?);
    let pre = Preprocessor::fit(&spec.features, &train);
    let d = pre.width();
    let (x, xt) = (pre.transform_frame(&train), pre.transform_frame(&test));
    let (y, yt) = (train.target.as_deref().unwrap_or_default(), test.target.as_deref().unwrap_or_default());
    for name in which {
        let started = Instant::now();
        let (secs, scores): (f64, Vec<f64>) = match name {
            "logistic" => {
                let fit = linear::fit(&x, d, y, linear::Params::default(), |_| {});
                let secs = started.elapsed().as_secs_f64();
                eprintln!("logistic: {} Newton iterations", fit.iterations);
                let score =
                    |r: &[f64]| sigmoid(fit.intercept + fit.weights.iter().zip(r).map(|(w, v)| w * v).sum::<f64>());
                (secs, xt.chunks(d).map(score).collect())
            }
            "gbt" => {
                let fit = gbt::fit(&x, d, y, &pre.one_hot_groups(), gbt::Params::default(), |_| {});
                let secs = started.elapsed().as_secs_f64();
                let score =
                    |r: &[f64]| sigmoid(fit.base_score + fit.trees.iter().map(|t: &Tree| t.eval(r)).sum::<f64>());
                (secs, xt.chunks(d).map(score).collect())
            }
            other => anyhow::bail!("unknown model {other:?} (linear, gbt)"),
        };
        println!("{name:<9} fit_s={secs:.3} auc={:.4} rows={}", roc_auc(yt, &scores), y.len());
    }
    Ok(())
}
