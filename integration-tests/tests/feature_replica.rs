//! The deployer's in-memory replica of the online store, against a real nats-server: current once
//! it holds every entry, following updates, new entities and deletions; reads through it answer as
//! the bucket does (a new entity is read from the bucket at once); a view beyond the limit is not
//! held; after nats-server restarts the replica follows again.

use std::time::Duration;

use mlops_cli::stack::NatsServer;
use mlops_features::online::{Entry, entry_key};
use mlops_features::replica::Replica;
use mlops_features::{FeatureStore, ViewRows};
use mlops_integration_tests::{bus_at, wait_until};
use mlops_shared::spec::FeatureViewSpec;
use mlops_shared::table::Column;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

const VIEW: &str = "kind: feature_view
name: stats
entities: [customer_id]
event_time: event_ts
ttl: 30d
features:
  - {name: spend, type: numeric}
  - {name: segment, type: categorical, categories: [retail, business]}
";

/// One row per `(key, spend, segment)`, all of event time `event_ms`.
fn rows(view: &FeatureViewSpec, event_ms: i64, of: &[(&str, Option<f64>, Option<&str>)]) -> ViewRows {
    let mut rows = ViewRows::empty(view);
    rows.keys = of.iter().map(|(k, ..)| (*k).to_owned()).collect();
    rows.event_ms = vec![event_ms; of.len()];
    rows.written_ms = vec![event_ms; of.len()];
    rows.columns = vec![
        Column::Numeric(of.iter().map(|(_, s, _)| *s).collect()),
        Column::Categorical(of.iter().map(|(.., c)| c.map(str::to_owned)).collect()),
    ];
    rows
}

/// The values the replica holds for `key`, once current.
fn held(replica: &Replica, key: &str) -> Option<Vec<serde_json::Value>> {
    replica.held(&[entry_key("stats", key)]).pop().flatten().map(|e: Entry| e.values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_the_online_store_and_reads_through_it_answer_as_the_bucket_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), None).await.unwrap();
    let bus = bus_at(&server.url).await;
    bus.provision(1).await.unwrap();
    let store = FeatureStore::open(&bus).await.unwrap();
    let view = FeatureViewSpec::from_yaml(VIEW).unwrap();
    store.put_view(&view).await.unwrap();
    let now = mlops_shared::now_unix_ms();

    // Empty view: never current (nothing to be current with); reads go to the bucket.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let replica = store.replica("stats", 10, shutdown.child_token());
    let keys: Vec<String> = ["c1", "c2", "c9"].map(String::from).to_vec();
    assert_eq!(store.online(&view, &keys, now, Some(&replica)).await.unwrap(), vec![None; 3]);
    assert!(!replica.current() && !replica.given_up());

    store
        .materialise(
            &view,
            &rows(&view, now - 1000, &[("c1", Some(1.5), Some("retail")), ("c2", None, Some("business"))]),
        )
        .await
        .unwrap();
    wait_until(T, || async { replica.current().then_some(()) }).await.expect("the replica becomes current");
    wait_until(T, || async { (replica.len() == 2).then_some(()) }).await.expect("both entities held");
    assert_eq!(held(&replica, "c1"), Some(vec![json!(1.5), json!("retail")]));
    assert_eq!(held(&replica, "c2"), Some(vec![json!(null), json!("business")]));
    assert_eq!(held(&replica, "c9"), None);
    let through = store.online(&view, &keys, now, Some(&replica)).await.unwrap();
    assert_eq!(through, store.online(&view, &keys, now, None).await.unwrap());
    assert_eq!(through[0].as_ref().map(|e| e.event_ms), Some(now - 1000));

    // A replica started later starts from the bucket's values.
    store.materialise(&view, &rows(&view, now - 500, &[("c1", Some(2.5), Some("retail"))])).await.unwrap();
    wait_until(T, || async { (held(&replica, "c1")? == [json!(2.5), json!("retail")]).then_some(()) })
        .await
        .expect("an update reaches the replica");
    let late = store.replica("stats", 10, shutdown.child_token());
    wait_until(T, || async { (late.current() && late.len() == 2).then_some(()) }).await.expect("a second replica");
    assert_eq!(held(&late, "c1"), Some(vec![json!(2.5), json!("retail")]));

    // A new entity is answered at once: what the replica lacks is read from the bucket.
    store.materialise(&view, &rows(&view, now, &[("c9", Some(9.0), None)])).await.unwrap();
    let got = store.online(&view, &keys, now, Some(&replica)).await.unwrap();
    assert_eq!(got[2].as_ref().map(|e| e.values.clone()), Some(vec![json!(9.0), json!(null)]));
    // Past the TTL is absent through the replica as from the bucket.
    let much_later = now + 31 * 86_400_000;
    assert_eq!(store.online(&view, &keys, much_later, Some(&replica)).await.unwrap(), vec![None; 3]);

    // A deleted key leaves the replica.
    let kv = bus.kv(mlops_shared::bus::ONLINE_FEATURES_KV).await.unwrap();
    kv.delete(entry_key("stats", "c2")).await.unwrap();
    wait_until(T, || async { (replica.len() == 2 && held(&replica, "c2").is_none()).then_some(()) })
        .await
        .expect("a deletion reaches the replica");

    // Beyond its limit a replica holds nothing, is never current, and reads still answer.
    let small = store.replica("stats", 1, shutdown.child_token());
    wait_until(T, || async { small.given_up().then_some(()) }).await.expect("a view beyond the limit is given up");
    assert!(!small.current() && small.is_empty());
    let through = store.online(&view, &keys, now, Some(&small)).await.unwrap();
    assert_eq!(through, store.online(&view, &keys, now, None).await.unwrap());
    assert!(through[0].is_some());

    // nats-server restarted: the watch resumes and the replica follows again.
    let mut server = server;
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    server.kill().await;
    let _server = NatsServer::start(dir.path(), Some(port)).await.expect("nats-server restarts");
    wait_until(T, || async {
        store.materialise(&view, &rows(&view, now + 1, &[("c1", Some(3.5), Some("retail"))])).await.ok()
    })
    .await
    .expect("the store writes again");
    wait_until(T, || async { (held(&replica, "c1")? == [json!(3.5), json!("retail")]).then_some(()) })
        .await
        .expect("the replica follows after the restart");
}
