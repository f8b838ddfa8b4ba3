//! A regression pipeline end to end: numeric labels validated, a least-squares model trained,
//! judged by error ceilings and against production by how much its error rises, promoted, and
//! served over OIP with a `prediction` output.

use std::fmt::Write as _;
use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client};
use mlops_proto as pb;

const T: Duration = Duration::from_secs(60);

const SPEC: &str = r#"
name: prices
features:
  - {name: sqft, type: numeric, min: 100, max: 10000}
  - {name: rooms, type: numeric, min: 0, max: 20}
  - {name: area, type: categorical, categories: [north, south, east]}
target: {name: price, task: regression}
gates:
  - {metric: r2, min: 0.9}
  - {metric: rmse, max: 10, max_drop: 0.5}
"#;

/// `n` houses: price = 50 + 0.1·sqft + 12·rooms + an area premium + noise in [-2, 2].
fn houses(n: usize, seed: u64) -> String {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut csv = String::from("sqft,rooms,area,price\n");
    for _ in 0..n {
        let sqft = 400.0 + next() * 3000.0;
        let rooms = (1.0 + next() * 6.0).floor();
        let (area, premium) = [("north", 30.0), ("south", 0.0), ("east", 15.0)][(next() * 3.0) as usize % 3];
        let price = 50.0 + 0.1 * sqft + 12.0 * rooms + premium + (next() * 4.0 - 2.0);
        let _ = writeln!(csv, "{sqft:.1},{rooms},{area},{price:.2}");
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regression_model_is_trained_gated_on_its_error_promoted_and_served() {
    let app = TestApp::start().await;
    app.apply(SPEC).await;

    // A label that is not a number is refused with the reason.
    let bad = app.upload("prices", "sqft,rooms,area,price\n1000,3,north,expensive\n").await;
    let rejected = app
        .wait_event(
            "data.rejected",
            T,
            |s| matches!(&s.payload, Decoded::Rejected(r) if r.dataset_id == bad.dataset_id),
        )
        .await;
    let Decoded::Rejected(r) = rejected.payload else { unreachable!() };
    let label =
        r.columns.iter().flat_map(|c| &c.anomalies).find(|a| a.kind == "unknown_label").expect("a label anomaly");
    assert!(label.message.contains("finite numbers") && label.message.contains("expensive"), "{label:?}");

    app.upload("prices", &houses(1500, 1)).await;
    let evaluated = app.wait_event("model.evaluated", T, |_| true).await;
    let Decoded::Evaluated(e) = evaluated.payload else { unreachable!() };
    assert!(e.passed, "{e:?}");
    let m = &e.candidate_metrics.as_ref().unwrap().values;
    assert!(m["r2"] > 0.99 && m["rmse"] < 2.0 && m.contains_key("mae") && m.contains_key("mape"), "{m:?}");
    assert!(e.checks.iter().any(|c| c.name == "rmse <= 10" && c.passed), "{:?}", e.checks);
    app.wait_event("model.promoted", T, |_| true).await;

    // Served as values: 50 + 0.1·2000 + 12·3 + 30 = 316 for a north house.
    let base = app.stack.url("deployer");
    let row = serde_json::json!({"sqft": 2000.0, "rooms": 3.0, "area": "north"});
    let out = client::predict(&base, "prices", &row).await.unwrap();
    let outputs = out["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["prediction", "prediction_id"], "{out}");
    let value = outputs[0]["data"][0].as_f64().unwrap();
    assert!((value - 316.0).abs() < 1.5, "predicted {value}");
    let meta: serde_json::Value = reqwest::get(format!("{base}/v2/models/prices")).await.unwrap().json().await.unwrap();
    assert_eq!(meta["outputs"][0]["name"], "prediction", "{meta}");

    // A second version is judged against production on the same rows: its error may not rise
    // by more than 0.5.
    app.upload("prices", &houses(1500, 2)).await;
    let second =
        app.wait_event("model.evaluated", T, |s| matches!(&s.payload, Decoded::Evaluated(e) if e.version == 2)).await;
    let Decoded::Evaluated(e2) = second.payload else { unreachable!() };
    let rise = e2.checks.iter().find(|c| c.name.starts_with("rmse no worse than production")).expect("a rise check");
    assert!(rise.detail.contains("rise"), "{rise:?}");
    assert_eq!(e2.production_version, 1);
    let trained: Vec<pb::ModelTrained> = app
        .seen()
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(trained.iter().all(|t| t.algorithm == "linear_regression"), "the task's default algorithm");
}
