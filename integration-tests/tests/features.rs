//! The feature store end to end on real NATS: a feature view applied, its batches validated,
//! appended offline and materialised online; a pipeline trained on a point-in-time join and
//! served by entity key; the online endpoint; the offline CLI; and the refusals.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client};
use mlops_proto as pb;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

const VIEW: &str = "kind: feature_view
name: customer_stats
entities: [customer_id]
event_time: event_ts
ttl: 30d
features:
  - {name: spend_30d, type: numeric, min: 0}
  - {name: segment, type: categorical, categories: [retail, business]}
";

const PIPELINE: &str = r#"name: churn_features
features:
  - {name: tenure, type: numeric, min: 0, max: 100}
columns:
  - {name: customer_id, type: categorical}
  - {name: at, type: categorical}
target: {name: churned}
lookup: {from: ["customer_stats:spend_30d"], entities: customer_id, at: at}
gates:
  - {metric: roc_auc, min: 0.75}
monitoring: {window: 20}
"#;

const CUSTOMERS: usize = 300;

/// Customer `i`'s spend: spread over 0..100, unrelated to `i`'s order.
fn spend(i: usize) -> f64 {
    ((i * 37) % 100) as f64
}

fn time(ms: i64) -> String {
    mlops_features::time::format_ms(ms)
}

/// A batch of the view: every customer's spend, true since `event_ms`.
fn view_batch(event_ms: i64, spend_of: impl Fn(usize) -> f64) -> String {
    let mut csv = String::from("customer_id,event_ts,spend_30d,segment\n");
    for i in 0..CUSTOMERS {
        let segment = if i % 3 == 0 { "business" } else { "retail" };
        csv.push_str(&format!("c{i},{},{},{segment}\n", time(event_ms), spend_of(i)));
    }
    csv
}

/// Training rows as of `at_ms`: churn follows spend (one label in ten flipped), tenure is noise.
fn training_rows(at_ms: i64) -> String {
    let mut csv = String::from("customer_id,at,tenure,churned\n");
    for i in 0..CUSTOMERS {
        let churned = (spend(i) > 50.0) != (i % 10 == 0);
        csv.push_str(&format!("c{i},{},{},{}\n", time(at_ms), (i * 7) % 60, u8::from(churned)));
    }
    csv
}

async fn materialised(app: &TestApp, dataset: &str) -> pb::FeaturesMaterialised {
    let seen = app
        .wait_event(
            "features.materialised",
            T,
            |s| matches!(&s.payload, Decoded::Materialised(m) if m.dataset_id == dataset),
        )
        .await;
    match seen.payload {
        Decoded::Materialised(m) => m,
        _ => unreachable!("matched above"),
    }
}

fn write_view(app: &TestApp, yaml: &str) -> std::path::PathBuf {
    let path = app.drop_dir().with_file_name("view.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_trains_on_a_point_in_time_join_and_serves_by_entity_key() {
    let app = TestApp::start().await;
    let view = write_view(&app, VIEW);
    let (ok, out, err) = app.mlops(&["features", "apply", view.to_str().unwrap()]);
    assert!(ok && out.contains("feature view customer_stats applied"), "{out}{err}");
    let now = mlops_shared::now_unix_ms();
    let first = app.upload("customer_stats", &view_batch(now - 3_600_000, spend)).await;
    let m = materialised(&app, &first.dataset_id).await;
    assert_eq!((m.rows, m.entities_written, m.entities_kept), (CUSTOMERS as u64, CUSTOMERS as u64, 0));
    assert!(m.offline_file.starts_with("customer_stats/"), "{}", m.offline_file);

    // Trained on rows as of the batch's write time: each row sees its customer's spend.
    app.apply(PIPELINE).await;
    app.upload("churn_features", &training_rows(m.arrived_unix_ms)).await;
    let promoted = app.wait_event("model.promoted", T, |s| s.pipeline == "churn_features").await;
    let Decoded::Promoted(p) = promoted.payload else { unreachable!() };
    let high = json!([{"customer_id": "c3", "tenure": 10}]); // spend 11: churn unlikely
    app.wait_serving("churn_features", p.version, &high, T).await;

    // Served by entity key alone: the spend comes from the online store.
    let deployer = app.stack.remote("deployer");
    let score = |v: &Value| v["outputs"][0]["data"][0].as_f64().unwrap();
    let low_spend =
        client::predict(&deployer, "churn_features", &json!({"customer_id": "c3", "tenure": 10})).await.unwrap();
    let high_spend =
        client::predict(&deployer, "churn_features", &json!({"customer_id": "c1", "tenure": 10})).await.unwrap();
    assert!(score(&high_spend) > score(&low_spend) + 0.2, "{high_spend} vs {low_spend}");
    // A value the request names for a looked-up feature yields to the store's (documented).
    let explicit =
        client::predict(&deployer, "churn_features", &json!({"customer_id": "c1", "tenure": 10, "spend_30d": 0.0}))
            .await
            .unwrap();
    assert_eq!(score(&explicit), score(&high_spend));
    // An unknown entity is still answered, its looked-up feature missing (imputed as in training).
    let unknown = client::predict(&deployer, "churn_features", &json!({"customer_id": "nobody", "tenure": 10})).await;
    assert!(unknown.is_ok(), "{unknown:?}");
    // MLflow's /invocations takes the key in place of the looked-up feature too.
    let invocations = format!("{}/models/churn_features/invocations", app.stack.url("deployer"));
    let post = |body: Value| reqwest::Client::new().post(&invocations).json(&body).send();
    let rows = json!({"dataframe_records": [{"customer_id": "c1", "tenure": 10}, {"customer_id": "c3", "tenure": 10}]});
    let mlflow: Value = post(rows).await.unwrap().json().await.unwrap();
    assert_eq!(mlflow["predictions"], json!([score(&high_spend), score(&low_spend)]), "{mlflow}");
    let neither = post(json!({"instances": [{"tenure": 10}]})).await.unwrap();
    assert_eq!(neither.status(), 400);
    let refusal = neither.text().await.unwrap();
    assert!(refusal.contains("input `customer_id` is missing: the model looks features up by it"), "{refusal}");
    // Logged as the deployer answers: the known entities' spends and the unknown one's missing.
    let spends = mlops_integration_tests::wait_until(T, || async {
        let logs = app.logged_predictions("churn_features").await;
        let spends: Vec<Option<f64>> = logs.iter().map(|l| l.numeric.get("spend_30d").copied()).collect();
        let all = [Some(spend(1)), Some(spend(3)), None].iter().all(|s| spends.contains(s));
        all.then_some(spends)
    })
    .await
    .unwrap_or_else(|| panic!("the spends served were never all logged"));
    assert!(!spends.contains(&Some(0.0)), "the request's own value was used: {spends:?}");

    // Requests that bring their own (stale) spend instead of the key: what was served no longer
    // looks like the offline store, and the monitor says so when the window closes.
    for _ in 0..20 {
        client::predict(&deployer, "churn_features", &json!({"tenure": 10, "spend_30d": 0.0})).await.unwrap();
    }
    let seen = app.wait_event("monitor.skew_detected", T, |s| s.pipeline == "churn_features").await;
    let Decoded::Skew(skew) = seen.payload else { unreachable!() };
    assert!(skew.features.iter().any(|f| f.feature == "spend_30d" && f.drifted && f.score > 0.1), "{skew:?}");

    // The online endpoint, in Feast's form.
    let url = format!("{}/v1/features", app.stack.url("deployer"));
    let body = json!({"features": ["customer_stats:spend_30d", "customer_stats:segment"],
                      "entities": {"customer_id": ["c1", "nobody", "c3"]}});
    let answer: Value = reqwest::Client::new().post(&url).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["metadata"]["feature_names"], json!(["customer_id", "spend_30d", "segment"]), "{answer}");
    assert_eq!(answer["results"][1]["values"], json!([spend(1), null, spend(3)]), "{answer}");
    assert_eq!(answer["results"][1]["statuses"], json!(["PRESENT", "NOT_FOUND", "PRESENT"]), "{answer}");
    assert_eq!(answer["results"][2]["values"], json!(["retail", null, "business"]), "{answer}");
    assert!(answer["results"][1]["event_timestamps"][0].is_string(), "{answer}");
    // The same over gRPC; a malformed reference is refused naming it.
    let mut grpc = client::deployer(app.stack.remote("deployer")).await.unwrap();
    let keys = pb::EntityKeys { values: vec!["c1".into(), "nobody".into(), "c3".into()] };
    let ask = |features: &[&str]| pb::OnlineFeaturesRequest {
        features: features.iter().map(|f| f.to_string()).collect(),
        entities: [("customer_id".to_owned(), keys.clone())].into(),
        full_feature_names: true,
    };
    let got = grpc.get_online_features(ask(&["customer_stats:spend_30d", "customer_stats:segment"])).await.unwrap();
    let got = got.into_inner();
    assert_eq!(got.feature_names, ["customer_stats__spend_30d", "customer_stats__segment"]);
    let (spends, segments) = (&got.results[0], &got.results[1]);
    assert_eq!((spends.numbers[0], spends.numbers[2]), (spend(1), spend(3)));
    assert!(spends.numbers[1].is_nan());
    assert_eq!(segments.categories, ["retail", "", "business"]);
    assert_eq!(spends.found, [true, false, true]);
    assert!(spends.event_time_unix_ms[0] > 0 && spends.event_time_unix_ms[1] == 0);
    let refused = grpc.get_online_features(ask(&["spend_30d"])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("spend_30d"), "{refused:?}");

    // A later batch with older event times does not replace newer online values.
    let late = app.upload("customer_stats", &view_batch(now - 7_200_000, |_| 1.0)).await;
    let m = materialised(&app, &late.dataset_id).await;
    assert_eq!((m.entities_written, m.entities_kept), (0, CUSTOMERS as u64));
    let (ok, out, err) = app.mlops(&["features", "get", "customer_stats", "--entity", "c1"]);
    assert!(ok && out.contains(&format!("spend_30d            {}", spend(1))), "{out}{err}");
    let (ok, out, err) = app.mlops(&["features", "history", "customer_stats", "--entity", "c1"]);
    assert!(ok && out.lines().count() == 3, "two values and a header: {out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_sets_are_correct_in_time_and_bad_batches_and_breaking_changes_are_refused() {
    let app = TestApp::start().await;
    app.apply(VIEW).await;
    let now = mlops_shared::now_unix_ms();
    let event = now - 3_600_000;
    let first = app.upload("customer_stats", &view_batch(event, spend)).await;
    let written = materialised(&app, &first.dataset_id).await.arrived_unix_ms;
    // A late correction of the same event, written later.
    let correction = app.upload("customer_stats", &view_batch(event, |i| spend(i) + 1000.0)).await;
    let corrected = materialised(&app, &correction.dataset_id).await.arrived_unix_ms;
    assert!(corrected > written);

    let dir = app.drop_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let entities = dir.join("entities.csv");
    let rows = [
        ("c1", event - 1),     // before the event: nothing
        ("c1", written - 1),   // the event happened, but was not written yet
        ("c1", written),       // the first write
        ("c1", corrected - 1), // still the first write: the correction is not visible
        ("c1", corrected),     // the correction
        ("nobody", corrected),
        ("c1", event + 31 * 86_400_000), // past the 30-day TTL
    ];
    let csv: String = std::iter::once("customer_id,event_timestamp,label\n".to_owned())
        .chain(rows.iter().map(|(c, at)| format!("{c},{},1\n", time(*at))))
        .collect();
    std::fs::write(&entities, csv).unwrap();
    let out_file = dir.join("training.parquet");
    let training_set = |features: &str| {
        let (entities, out) = (entities.to_str().unwrap(), out_file.to_str().unwrap());
        app.mlops(&["features", "training-set", "--entities", entities, "--features", features, "--out", out])
    };
    let (ok, out, err) = training_set("customer_stats:spend_30d,customer_stats:segment");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("customer_stats: 3 rows matched, 1 of entities it has never seen, 3 with no value then"),
        "{out}"
    );
    let bytes = std::fs::read(&out_file).unwrap();
    let batches: Vec<_> = mlops_data::open(mlops_data::Source::Bytes(bytes.into()), "t.parquet", &Default::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let spend_column = batches[0].column_by_name("spend_30d").unwrap();
    let view = mlops_data::view(spend_column);
    let got: Vec<mlops_data::Cell<'_>> = (0..rows.len()).map(|i| view.get(i)).collect();
    use mlops_data::Cell::{Null, Num};
    assert_eq!(got, [Null, Null, Num(spend(1)), Num(spend(1)), Num(spend(1) + 1000.0), Null, Null]);
    assert!(batches[0].column_by_name("label").is_some(), "the entity rows' own columns are kept");

    // Batches with an event time far in the future, or without a key, are refused.
    let future = format!("customer_id,event_ts,spend_30d,segment\nc1,{},5,retail\n", time(now + 86_400_000));
    let refused = app.upload("customer_stats", &future).await;
    let seen = app.wait_event("data.rejected", T, |s| s.summary.contains(&refused.dataset_id[..12])).await;
    assert!(seen.summary.contains("in the future"), "{}", seen.summary);
    let keyless = format!("customer_id,event_ts,spend_30d,segment\n,{},5,retail\n", time(now));
    let refused = app.upload("customer_stats", &keyless).await;
    let seen = app.wait_event("data.rejected", T, |s| s.summary.contains(&refused.dataset_id[..12])).await;
    assert!(seen.summary.contains("customer_id"), "{}", seen.summary);

    // A pipeline may look up only what exists; a view may not drop what a pipeline looks up.
    let registry = app.stack.remote("registry");
    let apply = |yaml: String| {
        let registry = registry.clone();
        async move { client::apply_pipeline_as(&registry, &yaml, None).await.map(drop).map_err(|e| format!("{e:#}")) }
    };
    let err = apply(PIPELINE.replace("spend_30d", "visits")).await.unwrap_err();
    assert!(err.contains("feature view `customer_stats` has no feature `visits`"), "{err}");
    apply(PIPELINE.to_owned()).await.unwrap();
    let dropped = VIEW.replace("  - {name: spend_30d, type: numeric, min: 0}\n", "");
    let err = apply(dropped).await.unwrap_err();
    assert!(err.contains("would drop `spend_30d`, which pipeline `churn_features` looks up"), "{err}");
    let err = apply(VIEW.replace("name: customer_stats", "name: churn_features")).await.unwrap_err();
    assert!(err.contains("is a pipeline"), "{err}");
    // The offline log kept every accepted batch and nothing refused.
    let (ok, out, err) = app.mlops(&["features", "list"]);
    assert!(ok && out.contains("customer_stats  key (customer_id)") && out.contains("2 offline file(s)"), "{out}{err}");

    // An offline file that is not Parquet (damaged in the store) fails the join, naming it.
    let offline = app.bus().await.js.get_object_store(mlops_shared::bus::FEATURES_BUCKET).await.unwrap();
    let damaged = "customer_stats/9999999999999-damaged.parquet";
    offline.put(damaged, &mut &b"not parquet"[..]).await.unwrap();
    let (ok, out, err) = training_set("customer_stats:spend_30d");
    assert!(!ok && err.contains(&format!("{damaged}: unreadable Parquet")), "{out}{err}");
}
