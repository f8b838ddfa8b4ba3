//! ONNX models as their users export them, run by the platform's ONNX layer (`mlops-onnx`) on the
//! ONNX Runtime library of the pinned `onnxruntime` wheel, answer as `onnxruntime` in Python does:
//! a scikit-learn logistic regression and gradient boosting `Pipeline` (skl2onnx, one named input
//! per feature), a LightGBM booster (onnxmltools, one float tensor) and a linear regression, on
//! 1,000 rows, batched and one at a time, to 1e-6. Models that do not fit their pipeline — a ZipMap
//! output, a file that is not ONNX or is cut short, inputs that are not the spec's features, the
//! wrong task — are refused with the reason. The fixtures come from `scripts/onnx-fixtures.py`,
//! run once per clean `target/` in a virtual environment of `scripts/onnx-requirements.txt`.

use mlops_integration_tests::onnx;
use mlops_onnx::{ContractError, OnnxModel, PredictError, Runtime};
use mlops_shared::spec::{FeatureSpec, PipelineSpec, Task};
use mlops_shared::table::Value;

const CUSTOMERS: &str = "name: churn
features:
  - {name: tenure, type: numeric}
  - {name: charges, type: numeric}
  - {name: contract, type: categorical, categories: [monthly, yearly, two-year]}
target: {name: churned}
";

fn runtime() -> &'static Runtime {
    Runtime::load(&onnx::library()).unwrap_or_else(|e| panic!("{e}"))
}

fn spec(yaml: &str) -> PipelineSpec {
    PipelineSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn model(file: &str, spec: &PipelineSpec) -> Result<OnnxModel, ContractError> {
    let bytes = std::fs::read(onnx::fixtures().join(file)).expect("a fixture");
    OnnxModel::load(runtime(), &bytes, &spec.features, spec.target.task)
}

/// A fixture's rows in the spec's feature order, and what onnxruntime in Python answered for them
/// batched and one at a time.
fn rows_and_answers(file: &str, features: &[FeatureSpec]) -> (Vec<Vec<Value>>, Vec<f64>, Vec<f64>) {
    let text = std::fs::read_to_string(onnx::fixtures().join(file)).expect("a fixture");
    let json: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let rows = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            features
                .iter()
                .map(|f| match &r[&f.name] {
                    serde_json::Value::String(s) => Value::Cat(s.clone()),
                    v => Value::Num(v.as_f64().expect("a number")),
                })
                .collect()
        })
        .collect();
    let numbers = |key: &str| json[key].as_array().expect(key).iter().map(|a| a.as_f64().expect("a number")).collect();
    (rows, numbers("answers"), numbers("single"))
}

/// The largest difference between the model's answers and Python's, batched against batched and
/// row by row against row by row (ONNX Runtime's kernels for one row may round a 32-bit result
/// differently from its kernels for many, in Python as here).
fn largest_difference(model: &OnnxModel, rows: &[Vec<Value>], batched: &[f64], single: &[f64]) -> f64 {
    let ours = model.predict(rows).expect("a batch");
    let ours_single: Vec<f64> =
        rows.iter().map(|r| model.predict(std::slice::from_ref(r)).expect("a row")[0]).collect();
    assert_eq!((ours.len(), ours_single.len()), (batched.len(), single.len()));
    ours.iter().chain(&ours_single).zip(batched.iter().chain(single)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

#[test]
fn exports_from_scikit_learn_and_lightgbm_answer_as_onnxruntime_in_python() {
    let customers = spec(CUSTOMERS);
    let boosted = spec(&CUSTOMERS.replace(
        "{name: contract, type: categorical, categories: [monthly, yearly, two-year]}",
        "{name: contract_code, type: numeric}",
    ));
    let value = spec(&CUSTOMERS.replace("target: {name: churned}", "target: {name: value, task: regression}"));
    for (file, spec) in [("logreg", &customers), ("gbc", &customers), ("lgbm", &boosted), ("linreg", &value)] {
        let model = model(&format!("{file}.onnx"), spec).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (rows, batched, single) = rows_and_answers(&format!("{file}.json"), &spec.features);
        assert_eq!(rows.len(), 1000);
        let diff = largest_difference(&model, &rows, &batched, &single);
        assert!(diff <= 1e-6, "{file}: answers differ from onnxruntime's by up to {diff}");
    }
}

#[test]
fn models_that_do_not_fit_their_pipeline_are_refused_with_the_reason() {
    let customers = spec(CUSTOMERS);
    let refused =
        |file: &str, spec: &PipelineSpec| model(file, spec).err().unwrap_or_else(|| panic!("{file} accepted"));
    assert!(matches!(refused("zipmap.onnx", &customers), ContractError::ZipMap { .. }));
    assert!(refused("zipmap.onnx", &customers).to_string().contains("'zipmap': False"));
    // Not ONNX, and cut short.
    let bytes = std::fs::read(onnx::fixtures().join("logreg.onnx")).expect("a fixture");
    for broken in [&b"this is not an onnx model\n"[..], &bytes[..bytes.len() / 2], &[][..]] {
        let e = OnnxModel::load(runtime(), broken, &customers.features, Task::BinaryClassification).err();
        assert!(matches!(e, Some(ContractError::Unreadable(_))), "{e:?}");
    }
    // A feature the model does not take; a numeric feature where it takes strings.
    let extra = spec(&CUSTOMERS.replace("target:", "  - {name: age, type: numeric}\ntarget:"));
    assert_eq!(refused("logreg.onnx", &extra), ContractError::MissingFeature("age".into()));
    let numeric = spec(&CUSTOMERS.replace(
        "{name: contract, type: categorical, categories: [monthly, yearly, two-year]}",
        "{name: contract, type: numeric}",
    ));
    let e = refused("logreg.onnx", &numeric);
    assert!(
        matches!(&e, ContractError::Input { input, .. } if input == "contract")
            && e.to_string().contains("needs float"),
        "{e}"
    );
    // One float tensor cannot carry a categorical feature.
    let e = refused("lgbm.onnx", &customers);
    assert!(e.to_string().contains("cannot carry the categorical feature `contract`"), "{e}");
    // A classifier under a regression spec, and a regression under a classification spec.
    let regression = spec(&CUSTOMERS.replace("target: {name: churned}", "target: {name: churned, task: regression}"));
    assert!(matches!(refused("logreg.onnx", &regression), ContractError::Output { task: "regression", .. }));
    assert!(matches!(refused("linreg.onnx", &customers), ContractError::Output { task: "binary_classification", .. }));
}

#[test]
fn a_value_of_the_wrong_type_is_refused_naming_the_feature() {
    let customers = spec(CUSTOMERS);
    let model = model("logreg.onnx", &customers).expect("logreg fits");
    let row = vec![Value::Cat("long".into()), Value::Num(50.0), Value::Cat("monthly".into())];
    let e = model.predict(&[row]).unwrap_err();
    assert!(matches!(&e, PredictError::Input { feature, .. } if feature == "tenure"), "{e}");
    // Missing values and an unseen category still get an answer (the graph's encoder ignores it).
    let row = vec![Value::Num(12.0), Value::Missing, Value::Cat("weekly".into())];
    assert_eq!(model.predict(&[row]).expect("an answer").len(), 1);
}
