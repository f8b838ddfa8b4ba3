//! Blobs in an external object store (`MLOPS_OBJECT_STORE`), tested against a real S3 server
//! (`s3s-fs`): the contract of the platform's object store on S3, the whole cascade with every
//! blob there and the server restarted mid-cascade, and a clear refusal to start on settings that
//! cannot work.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::s3::{self, S3Server, files_under};
use mlops_integration_tests::{TestApp, bus_at, client, rows_json, sample, wait_until};
use mlops_shared::objects::{ObjectError, Stager, external::Location};

const T: Duration = Duration::from_secs(90);

/// The object-store settings of `server` for a process of the test's own (which cannot set its
/// environment), as the services take them from theirs.
fn location(server: &S3Server, bucket: &str) -> Location {
    let endpoint = server.endpoint();
    let options = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", s3::ACCESS_KEY),
        ("aws_secret_access_key", s3::SECRET_KEY),
    ];
    Location::parse_with(&format!("s3://{bucket}/mlops"), &options).expect("a usable location")
}

/// On S3, blobs are content-addressed, verified on read, streamed, uploaded in parts when large,
/// and written once however many writers race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_on_s3_are_content_addressed_verified_streamed_and_written_once() {
    let server = S3Server::start(&["lake"]).await;
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = mlops_cli::stack::NatsServer::start(nats_dir.path(), None).await.expect("nats-server");
    let mut bus = bus_at(&nats.url).await;
    let at = location(&server, "lake");
    at.probe().await.expect("the server accepts the credentials");
    bus.object_store = Some(at);
    let objects = bus.objects("datasets").await.unwrap();

    // Two writers of the same content at once: both succeed, one object.
    let content = sample::csv(200, 1, sample::Variant::Normal);
    let (a, b) = tokio::join!(objects.put(content.as_bytes()), objects.put(content.as_bytes()));
    let sha = a.unwrap();
    assert_eq!(b.unwrap(), sha);
    assert_eq!(files_under(&server.root.join("lake")), [format!("mlops/datasets/{sha}")]);
    assert_eq!(objects.get_verified(&sha).await.unwrap(), content.as_bytes());

    // 20 MiB goes up in parts (the server keeps parts until the upload completes) and comes back
    // whole through a stream into a file.
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut stager = Stager::new(dir.path(), u64::MAX).unwrap();
    stager.write(&big).await.unwrap();
    let staged = stager.finish().await.unwrap();
    objects.put_staged(&staged).await.unwrap();
    let stored = server.object("lake", &format!("mlops/datasets/{}", staged.sha)).expect("the large blob");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), big.len() as u64);
    let file = objects.download_verified(&staged.sha, dir.path()).await.unwrap();
    assert_eq!(file.metadata().unwrap().len(), big.len() as u64);
    assert_eq!(objects.size_of(staged.sha.as_str()).await.unwrap(), Some(big.len() as u64));

    // Changed behind the platform's back: refused, never served.
    std::fs::write(server.object("lake", &format!("mlops/datasets/{sha}")).unwrap(), b"tampered").unwrap();
    let err = objects.get_verified(&sha).await.unwrap_err();
    assert!(matches!(err, ObjectError::Tampered { .. }), "{err}");
    let missing = mlops_shared::ids::Sha256::of(b"never stored");
    assert!(matches!(objects.get_verified(&missing).await, Err(ObjectError::NotFound { .. })));
}

/// Upload → validated → trained → evaluated → promoted with every dataset and artifact on S3
/// and none in NATS; then the server goes away mid-cascade and comes back, and the next version
/// still goes through, each step retried rather than lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cascade_keeps_every_blob_on_s3_and_rides_out_a_restart_of_the_server() {
    let mut server = S3Server::start(&["lake"]).await;
    let s3_env = server.env("lake", "mlops");
    let mut env: Vec<(&str, &str)> = s3_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("MLOPS_ARCHIVE_FLUSH_SECS", "0.3"));
    let app = TestApp::start_with(&env).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let csv = sample::csv(2000, 1, sample::Variant::Normal);
    let ds = app.upload("churn", &csv).await;
    app.wait_event("model.promoted", T, |s| matches!(&s.payload, Decoded::Promoted(p) if p.version == 1)).await;

    let dataset = server.object("lake", &format!("mlops/datasets/{}", ds.dataset_id)).expect("the dataset on S3");
    assert_eq!(std::fs::read(dataset).unwrap(), csv.as_bytes());
    let models = files_under(&server.root.join("lake/mlops/models"));
    assert_eq!(models.len(), 1, "one artifact: {models:?}");
    for bucket in ["datasets", "models"] {
        let store = app.js.get_object_store(bucket).await.unwrap();
        let mut list = store.list().await.unwrap();
        assert!(futures::StreamExt::next(&mut list).await.is_none(), "nothing in NATS's {bucket}");
    }

    // Served predictions are archived on S3 too, and the CLI finds them there.
    let customers = sample::customers(20, 5, sample::Variant::Normal);
    app.wait_serving("churn", 1, &rows_json(&customers[..1]), T).await;
    let online = client::predict(&app.stack.remote("deployer"), "churn", &rows_json(&customers)).await.unwrap();
    let ids: Vec<String> = serde_json::from_value(online["outputs"][2]["data"].clone()).unwrap();
    let shown = wait_until(T, || async {
        let (ok, said, _) = app.mlops_with_env(&["predictions", "show", &ids[3]], &s3_env);
        (ok && said.contains("archive file")).then_some(said)
    });
    assert!(shown.await.is_some(), "prediction {} never shown from the archive", ids[3]);
    let archived = files_under(&server.root.join("lake/mlops/archive"));
    assert!(archived.iter().any(|f| f.starts_with("churn/") && f.ends_with(".parquet")), "{archived:?}");

    // One store for every process: the CLI given none takes the one the services recorded, and a
    // service set to another refuses to start rather than write where the others never look.
    let credentials: Vec<(String, String)> =
        s3_env.iter().filter(|(k, _)| k != "MLOPS_OBJECT_STORE").cloned().collect();
    let (ok, said, _) = app.mlops_with_env(&["predictions", "show", &ids[3]], &credentials);
    assert!(ok && said.contains("archive file"), "{said}");
    let (ok, said, err) = app.mlops_with_env(&["object-store"], &credentials);
    assert!(ok && said == "blobs live in s3://lake/mlops\n", "{said}{err}");
    let mut elsewhere: std::collections::BTreeMap<String, String> = s3_env.iter().cloned().collect();
    elsewhere.insert("MLOPS_OBJECT_STORE".into(), "s3://lake/elsewhere".into());
    elsewhere.insert("MLOPS_NATS_URL".into(), app.stack.nats_url.clone());
    let refused = refused_service(&elsewhere).await;
    assert!(
        refused.contains(
            "MLOPS_OBJECT_STORE is s3://lake/elsewhere here, but the platform on this NATS keeps its blobs in s3://lake/mlops"
        ),
        "{refused}"
    );
    let (ok, _, err) =
        app.mlops_with_env(&["--object-store", "s3://lake/elsewhere", "predictions", "show", &ids[3]], &credentials);
    assert!(!ok && err.contains("keeps its blobs in s3://lake/mlops"), "{err}");

    // A second dataset arrives and the server dies before the cascade can read it.
    let csv2 = sample::csv(2000, 2, sample::Variant::Normal);
    let ds2 = app.upload("churn", &csv2).await;
    server.stop();
    let redelivered = wait_until(T, || async {
        let mut states = app.consumers("MLOPS_EVENTS").await;
        states.extend(app.consumers("MLOPS_JOBS").await);
        states.iter().any(|c| c.redelivered > 0).then_some(())
    });
    assert!(redelivered.await.is_some(), "a step meeting the dead server is retried");
    server.restart().await;
    let evaluated = |s: &mlops_cli::events::Seen| matches!(&s.payload, Decoded::Evaluated(e) if e.version == 2);
    app.wait_event("model.evaluated", T, evaluated).await;
    assert!(server.object("lake", &format!("mlops/datasets/{}", ds2.dataset_id)).is_some());
    assert_eq!(files_under(&server.root.join("lake/mlops/models")).len(), 2);
    let dlq = app.stored("MLOPS_DLQ", ">").await;
    assert!(
        dlq.is_empty(),
        "nothing dead-lettered: {:?}",
        dlq.iter().map(mlops_integration_tests::dlq_reason).collect::<Vec<_>>()
    );

    // Once the blobs are moved, the operator records the new store; one that cannot be used is
    // not recorded.
    let (ok, _, err) = app.mlops_with_env(&["object-store", "--set", "s3://nowhere/mlops"], &credentials);
    assert!(!ok && err.contains("s3://nowhere/mlops: the bucket or container cannot be listed"), "{err}");
    let (ok, said, err) = app.mlops_with_env(&["object-store", "--set", "s3://lake/moved/"], &credentials);
    assert!(ok && said.starts_with("blobs live in s3://lake/moved (was s3://lake/mlops)"), "{said}{err}");
}

/// Runs `mlops-ingest` with `env` alone (and an address and data directory of its own) and
/// returns what it said on stderr, once it exits; one still running after [`T`] is a failure.
async fn refused_service(env: &std::collections::BTreeMap<String, String>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let bin =
        mlops_cli::stack::StackOptions::beside_current_exe(dir.path().into()).unwrap().bin_dir.join("mlops-ingest");
    let child = tokio::process::Command::new(bin)
        .env_clear()
        .envs(env)
        .env("MLOPS_LISTEN", "127.0.0.1:0")
        .env("MLOPS_DATA_DIR", dir.path())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running mlops-ingest");
    let out = tokio::time::timeout(T, child.wait_with_output()).await;
    let out = out.expect("mlops-ingest was not refused: still running").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "mlops-ingest was not refused: {stderr}");
    assert!(!stderr.contains(s3::SECRET_KEY) && !stderr.contains("wrong-secret"), "{stderr}");
    stderr
}

/// A service with an object store it cannot use stops at start with an error naming the setting
/// and the cause, and never prints the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_will_not_start_on_an_object_store_it_cannot_use() {
    let server = S3Server::start(&["lake"]).await;
    let start = |changes: &[(&str, Option<&str>)]| {
        let mut env: std::collections::BTreeMap<String, String> = server.env("lake", "mlops").into_iter().collect();
        env.insert("MLOPS_NATS_URL".into(), "nats://127.0.0.1:1".into());
        for (k, v) in changes {
            match v {
                Some(v) => env.insert((*k).to_owned(), (*v).to_owned()),
                None => env.remove(*k),
            };
        }
        async move { refused_service(&env).await }
    };
    let wrong = start(&[("AWS_SECRET_ACCESS_KEY", Some("wrong-secret"))]).await;
    assert!(wrong.contains("MLOPS_OBJECT_STORE s3://lake/mlops: the store refused the credentials"), "{wrong}");
    let half = start(&[("AWS_SECRET_ACCESS_KEY", None)]).await;
    assert!(half.contains("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"), "{half}");
    let no_bucket = start(&[("MLOPS_OBJECT_STORE", Some("s3://nowhere/mlops"))]).await;
    assert!(
        no_bucket.contains(
            "MLOPS_OBJECT_STORE s3://nowhere/mlops: the bucket or container cannot be listed (does it exist?)"
        ),
        "{no_bucket}"
    );
    let not_url = start(&[("MLOPS_OBJECT_STORE", Some("lake/mlops"))]).await;
    assert!(not_url.contains("MLOPS_OBJECT_STORE \"lake/mlops\" is not a URL"), "{not_url}");
}

/// S3's "object created" notification for `key` of bucket `lake`, announcing `e_tag` if given,
/// published as a store publishes it: bare JSON, no headers.
async fn notify(app: &TestApp, pipeline: &str, key: &str, e_tag: Option<&str>) {
    let mut object = serde_json::json!({"key": key.replace(' ', "+"), "size": 1});
    if let Some(tag) = e_tag {
        object["eTag"] = tag.into();
    }
    let body = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "lake"}, "object": object},
    }]});
    let subject = format!("mlops.events.lake.notification.{pipeline}");
    app.js.publish(subject, body.to_string().into()).await.expect("published").await.expect("stored");
}

/// A bucket notification starts the cascade from the lake with no glue, and the dataset keeps
/// the object's URI and the ETag of what was read; an object that changed since its notification
/// says so, and one gone since, one outside the allowed prefixes and a `data.arrived` naming a
/// lake URI are handled as the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_notification_starts_the_cascade_and_the_dataset_keeps_the_uri_and_etag() {
    let server = S3Server::start(&["lake"]).await;
    let mut env = server.env("lake", "mlops");
    env.push(("MLOPS_INGEST_ALLOWED_URIS".into(), "s3://lake/incoming".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::start_with(&env).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let incoming = server.root.join("lake/incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let ingest = app.stack.remote("ingest");
    let dataset = |csv: &str| {
        let (ingest, id) = (ingest.clone(), mlops_shared::sha256_hex(csv.as_bytes()));
        async move {
            let found = wait_until(T, || {
                let (ingest, id) = (ingest.clone(), id.clone());
                async move { mlops_integration_tests::client::dataset_in(ingest, &id, "churn").await.ok() }
            });
            found.await.unwrap_or_else(|| panic!("dataset {id} was never catalogued"))
        }
    };

    let csv = sample::csv(2000, 1, sample::Variant::Normal);
    std::fs::write(incoming.join("day 1.csv"), &csv).unwrap();
    notify(&app, "churn", "incoming/day 1.csv", None).await;
    app.wait_event("model.promoted", T, |s| matches!(&s.payload, Decoded::Promoted(p) if p.version == 1)).await;
    let source = dataset(&csv).await.source;
    let etag = source.strip_prefix("uri:s3://lake/incoming/day 1.csv etag ").unwrap_or_else(|| panic!("{source}"));
    assert!(etag.len() == 32 && etag.chars().all(|c| c.is_ascii_hexdigit()), "{source}");

    // Rewritten between its notification and the read: the content read is catalogued, and says so.
    let csv2 = sample::csv(500, 2, sample::Variant::Normal);
    std::fs::write(incoming.join("day2.csv"), &csv2).unwrap();
    notify(&app, "churn", "incoming/day2.csv", Some("00000000000000000000000000000000")).await;
    let source = dataset(&csv2).await.source;
    assert!(
        source.ends_with("(changed since its notification, which announced etag 00000000000000000000000000000000)"),
        "{source}"
    );

    // data.arrived may name a lake URI too; the sender's words are kept beside it.
    let csv3 = sample::csv(500, 3, sample::Variant::Normal);
    std::fs::write(incoming.join("day3.csv"), &csv3).unwrap();
    let arrived =
        serde_json::json!({"pipeline": "churn", "path": "s3://lake/incoming/day3.csv", "source": "nightly export"});
    app.publish_json("mlops.events.data.arrived.churn", Some("day3"), &arrived).await;
    let source = dataset(&csv3).await.source;
    assert!(source.starts_with("nightly export (uri:s3://lake/incoming/day3.csv etag "), "{source}");

    // Gone since its notification, and outside the allowed prefixes: dead-lettered with the reason.
    notify(&app, "churn", "incoming/removed.csv", None).await;
    std::fs::create_dir_all(server.root.join("lake/private")).unwrap();
    std::fs::write(server.root.join("lake/private/salaries.csv"), &csv3).unwrap();
    notify(&app, "churn", "private/salaries.csv", None).await;
    let reasons = wait_until(T, || async {
        let reasons: Vec<String> =
            app.stored("MLOPS_DLQ", "mlops.dlq.>").await.iter().map(mlops_integration_tests::dlq_reason).collect();
        (reasons.len() >= 2).then_some(reasons)
    });
    let reasons = reasons.await.expect("two dead letters").join("\n");
    assert!(reasons.contains("s3://lake/incoming/removed.csv does not exist"), "{reasons}");
    assert!(reasons.contains("s3://lake/private/salaries.csv is outside the allowed prefixes"), "{reasons}");

    // A file larger than one part of a multipart upload (8 MiB) is staged, stored in parts and
    // read back whole by the validator.
    let big = sample::csv(200_000, 4, sample::Variant::Normal);
    assert!(big.len() > 8 << 20, "{} bytes", big.len());
    std::fs::write(incoming.join("month.csv"), &big).unwrap();
    notify(&app, "churn", "incoming/month.csv", None).await;
    let id = mlops_shared::sha256_hex(big.as_bytes());
    let whole = |s: &mlops_cli::events::Seen| matches!(&s.payload, Decoded::Validated(v) if v.dataset_id == id && v.rows == 200_000);
    app.wait_event("data.validated", T, whole).await;
    let stored = server.object("lake", &format!("mlops/datasets/{id}")).expect("the large dataset in the store");
    assert_eq!(std::fs::metadata(stored).unwrap().len(), big.len() as u64);
}

/// A lake that stays down: the arrival it announced is retried with backoff as any outage is, then
/// dead-lettered with the reason, naming the object; nothing is catalogued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrival_from_a_lake_that_stays_down_is_retried_then_dead_lettered_with_the_reason() {
    let mut server = S3Server::start(&["lake"]).await;
    let mut env = server.env("lake", "mlops");
    env.push(("MLOPS_INGEST_ALLOWED_URIS".into(), "s3://lake/incoming".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::start_with(&env).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    server.stop();
    let arrived = serde_json::json!({"pipeline": "churn", "path": "s3://lake/incoming/day.csv"});
    app.publish_json("mlops.events.data.arrived.churn", Some("lake-down"), &arrived).await;
    // Ten deliveries, backing off from a quarter of a second to half a minute: about 90 s.
    let reasons = wait_until(Duration::from_secs(240), || async {
        let reasons: Vec<String> =
            app.stored("MLOPS_DLQ", "mlops.dlq.>").await.iter().map(mlops_integration_tests::dlq_reason).collect();
        (!reasons.is_empty()).then_some(reasons)
    });
    let reasons = reasons.await.expect("a dead letter").join("\n");
    assert!(
        reasons.contains("gave up after 10 attempts") && reasons.contains("s3://lake/incoming/day.csv"),
        "{reasons}"
    );
    let datasets = client::datasets(&app.stack.url("ingest"), "churn", "").await.unwrap();
    assert!(datasets.is_empty(), "{datasets:?}");
}
