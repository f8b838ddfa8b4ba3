//! Erasure ("right to be forgotten") through the platform: `mlops data erase` removes a subject's
//! rows from every version of a pipeline, deletes the old content, keeps an audit record with the
//! value's keyed hash only, marks the models trained on it (whose `reproduce` then says so) and
//! retrains on the versions written in their place. Bad requests change nothing.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, sample};
use mlops_proto as pb;
use mlops_shared::bus::DATASETS_BUCKET;
use mlops_shared::ids::Sha256;
use mlops_shared::pii::Pseudonymiser;

const T: Duration = Duration::from_secs(90);
const KEY: &str = "a key of thirty-two bytes or more, for this test only";
const SUBJECT: &str = "ada@example.org";

/// The example spec with an `email` column declared under `policy`, training on the newest two
/// versions.
fn spec(policy: &str) -> String {
    mlops_cli::EXAMPLE_SPEC
        .replace(
            "\nvalidation:\n",
            &format!("\ncolumns:\n  - {{name: email, type: categorical, {policy}}}\nvalidation:\n"),
        )
        .replace("  seed: 42\n", "  seed: 42\n  window: {versions: 2}\n")
}

/// `rows` sample rows (from `seed`) with an e-mail column, the subject's address on `subject`
/// of them.
fn with_emails(rows: usize, seed: u64, subject: &[usize]) -> String {
    let csv = sample::csv(rows, seed, sample::Variant::Normal);
    csv.lines()
        .enumerate()
        .map(|(i, line)| match i {
            0 => format!("{line},email\n"),
            _ if subject.contains(&i) => format!("{line}, {SUBJECT}\n"),
            _ => format!("{line},c{seed}-{i}@example.org\n"),
        })
        .collect()
}

/// The stored content of dataset `id` (none once deleted), and its `email` column.
async fn stored_emails(app: &TestApp, id: &str) -> Option<(Vec<String>, Vec<u8>)> {
    let datasets = app.bus().await.objects(DATASETS_BUCKET).await.unwrap();
    datasets.size_of(id).await.unwrap()?;
    let bytes = datasets.get_verified(&Sha256::parse(id.to_owned()).unwrap()).await.unwrap();
    let source = mlops_data::Source::Bytes(bytes.clone().into());
    let mut values = Vec::new();
    let name = if bytes.starts_with(b"PAR1") { "data.parquet" } else { "data.csv" };
    for batch in mlops_data::open(source, name, &Default::default()).unwrap() {
        let batch = batch.unwrap();
        let column = mlops_data::view(batch.column(batch.schema().index_of("email").unwrap()));
        values.extend((0..batch.num_rows()).map(|r| mlops_data::text(column.get(r)).into_owned()));
    }
    Some((values, bytes.to_vec()))
}

/// `mlops data erase --key COLUMN=-` with `value` on stdin: (succeeded, stdout, stderr).
fn erase_by_stdin(app: &TestApp, column: &str, value: &str, reason: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let key = format!("{column}=-");
    let mut child = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--ingest-url", &app.stack.url("ingest"), "data", "erase", "--pipeline", "churn", "--key", &key])
        .args(["--reason", reason])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Matches `model.trained` of a model trained on `ids`.
fn trained_on(ids: &[String]) -> impl Fn(&mlops_cli::events::Seen) -> bool + '_ {
    move |s| matches!(&s.payload, Decoded::Trained(t) if t.dataset_ids == ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_removes_a_subject_from_every_version_marks_its_models_and_retrains_without_it() {
    let app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY)]).await;
    app.apply(&spec("pii: allow, purpose: account recovery")).await;
    let first = app.upload("churn", &with_emails(400, 1, &[3, 50, 77])).await;
    let second = app.upload("churn", &with_emails(400, 2, &[9, 200])).await;
    let both = [first.dataset_id.clone(), second.dataset_id.clone()];
    let on_both = app.wait_event("model.trained", T, trained_on(&both)).await;
    let Decoded::Trained(on_both) = on_both.payload else { unreachable!() };
    let registered = app
        .wait_event(
            "model.registered",
            T,
            |s| matches!(&s.payload, Decoded::Registered(r) if r.artifact_sha256 == on_both.artifact_sha256),
        )
        .await;
    let Decoded::Registered(registered) = registered.payload else { unreachable!() };

    // Erased through the CLI, as an operator would, the value read from stdin.
    let key = format!("email={SUBJECT}");
    let (ok, out, err) = erase_by_stdin(&app, "email", SUBJECT, "ticket 42");
    assert!(ok, "{out}{err}");
    assert!(out.contains("5 row(s) with that `email` removed from 2 of 2 version(s)"), "{out}");
    assert!(!out.contains(SUBJECT), "the value is printed: {out}");

    // The audit record keeps the keyed hash, never the value.
    let erased = app.wait_event("data.erased", T, |_| true).await;
    let Decoded::Erased(erased) = erased.payload else { unreachable!() };
    let hash = Pseudonymiser::new(KEY.as_bytes()).unwrap().pseudonym(SUBJECT);
    assert_eq!((erased.subject_hash.as_str(), erased.reason.as_str()), (hash.as_str(), "ticket 42"));
    assert!(!format!("{erased:?}").contains(SUBJECT), "the value is in the audit record: {erased:?}");
    let removed: Vec<(&str, u64, u64, bool)> = erased
        .versions
        .iter()
        .map(|v| (v.dataset_id.as_str(), v.rows_removed, v.rows_kept, v.content_deleted))
        .collect();
    assert_eq!(removed, [(both[0].as_str(), 3, 397, true), (both[1].as_str(), 2, 398, true)]);

    // The old content is gone; each successor holds every other row and none of the subject's.
    let successors: Vec<String> = erased.versions.iter().map(|v| v.successor_id.clone()).collect();
    for (old, new) in both.iter().zip(&successors) {
        assert!(stored_emails(&app, old).await.is_none(), "{old} still stored");
        let (emails, bytes) = stored_emails(&app, new).await.expect("the successor is stored");
        assert_eq!(emails.len(), if old == &both[0] { 397 } else { 398 });
        assert!(!bytes.windows(SUBJECT.len()).any(|w| w == SUBJECT.as_bytes()), "the subject is stored");
        let catalogued = client::dataset(&app.stack.url("ingest"), old).await.unwrap();
        let mark = catalogued.erased.expect("the old version is marked erased");
        assert_eq!((mark.erasure_id.as_str(), mark.successor_id.as_str()), (erased.erasure_id.as_str(), new.as_str()));
        let refused = client::revalidate(&app.stack.url("ingest"), old, "churn".into()).await.unwrap_err();
        assert!(
            format!("{refused:#}").contains(&format!("was erased by {}: validate its successor", erased.erasure_id))
        );
        let successor = client::dataset(&app.stack.url("ingest"), new).await.unwrap();
        assert_eq!(
            (successor.erased_from.as_str(), successor.arrived_unix_ms),
            (old.as_str(), catalogued.arrived_unix_ms)
        );
    }

    // The model trained on them is marked, and `reproduce` says why it cannot rebuild it.
    // (The registry marks it on its own consumer of `data.erased`.)
    let model = mlops_integration_tests::wait_until(T, || async {
        let models = client::models(&app.stack.url("registry"), "churn").await.ok()?;
        models.into_iter().find(|m| m.version == registered.version && !m.erasures.is_empty())
    })
    .await
    .expect("the model is marked");
    let marked = &model.erasures[0];
    assert_eq!((marked.erasure_id.as_str(), marked.dataset_ids.as_slice()), (erased.erasure_id.as_str(), &both[..]));
    let target = format!("churn@{}", registered.version);
    let (ok, out, err) = app.mlops(&["reproduce", &target]);
    assert!(
        !ok && err.contains("cannot be rebuilt from its lineage") && err.contains(&erased.erasure_id),
        "{out}{err}"
    );

    // A retraining on the successors follows, its lineage naming them and its reason.
    let retrained = app.wait_event("model.trained", T, trained_on(&successors)).await;
    let Decoded::Trained(retrained) = retrained.payload else { unreachable!() };
    assert_eq!(retrained.reason, pb::TrainReason::Erasure as i32);

    // The audit list shows it; erasing the subject again finds nothing and changes nothing.
    let (ok, list, _) = app.mlops(&["data", "erasures", "--pipeline", "churn"]);
    assert!(ok && list.contains(&erased.erasure_id) && list.contains("ticket 42"), "{list}");
    let (ok, out, err) = app.mlops(&["data", "erase", "--pipeline", "churn", "--key", &key, "--reason", "again"]);
    assert!(!ok && err.contains("no row of pipeline `churn` has that value in `email`"), "{out}{err}");
    assert!(err.contains("nothing was changed") && !err.contains(SUBJECT), "{err}");
    let erasures = client::erasures(&app.stack.url("ingest"), "churn").await.unwrap();
    assert_eq!(erasures.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_matches_pseudonymised_values_and_refuses_bad_requests_without_changing_anything() {
    let bare = TestApp::start().await;
    bare.apply(&spec("pii: allow, purpose: account recovery")).await;
    let request = |column: &str, value: &str, reason: &str| pb::EraseRequest {
        pipeline: "churn".into(),
        column: column.into(),
        value: value.into(),
        reason: reason.into(),
        requested_by: "dpo".into(),
    };
    let refused = client::erase(&bare.stack.url("ingest"), request("email", SUBJECT, "r")).await.unwrap_err();
    assert!(format!("{refused:#}").contains("MLOPS_PII_KEY is not set on ingest"), "{refused:#}");
    drop(bare);

    let app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY)]).await;
    app.apply(&spec("pii: pseudonymise")).await;
    let ds = app.upload("churn", &with_emails(300, 3, &[4, 5])).await;
    app.apply(
        "kind: feature_view\nname: customer_stats\nentities: [customer_id]\nevent_time: event_ts\nttl: 30d\nfeatures:\n  \
         - {name: spend_30d, type: numeric, min: 0}\n",
    )
    .await;
    let ingest = app.stack.url("ingest");
    let cases = [
        (request("age", "", "r"), "the value of `age` to erase is empty"),
        (request("email", SUBJECT, " "), "a `reason` is required"),
        (request("phone", SUBJECT, "r"), "column `phone` is not declared in pipeline `churn`"),
        (request("churned", "1", "r"), "column `churned` is not declared"),
        (request("age", "forty", "r"), "`age`: the column is numeric and the value given is not a number"),
        (request("email", "nobody@example.org", "r"), "no row of pipeline `churn` has that value in `email`"),
        (pb::EraseRequest { pipeline: "nope".into(), ..request("email", SUBJECT, "r") }, "pipeline `nope` not found"),
        (
            pb::EraseRequest { pipeline: "customer_stats".into(), ..request("spend_30d", "3", "r") },
            "feature view `customer_stats` is erased by one of its entity key columns (customer_id), whose rows are \
             the subject's; `spend_30d` is not one",
        ),
    ];
    for (req, expected) in cases {
        let e = format!("{:#}", client::erase(&ingest, req).await.unwrap_err());
        assert!(e.contains(expected), "{e}");
        assert!(!e.contains("nobody@") && !e.contains(SUBJECT) && !e.contains("forty"), "a value is quoted: {e}");
    }
    let (ok, _, err) = app.mlops(&["data", "erase", "--pipeline", "churn", "--key", "email", "--reason", "r"]);
    assert!(!ok && err.contains("give COLUMN=VALUE"), "{err}");
    // Nothing changed: the version is stored, unmarked, and no erasure is recorded.
    assert!(stored_emails(&app, &ds.dataset_id).await.is_some());
    assert!(client::dataset(&ingest, &ds.dataset_id).await.unwrap().erased.is_none());
    assert!(client::erasures(&ingest, "").await.unwrap().is_empty());

    // The same content is also a version of a second pipeline.
    let second = spec("pii: pseudonymise")
        .replace("name: churn", "name: churn2")
        .replace("  window: {versions: 2}\n", "  window: {versions: 2}\n  triggers: {on: []}\n");
    app.apply(&second).await;
    let shared = app.upload("churn2", &with_emails(300, 3, &[4, 5])).await;
    assert_eq!(shared.dataset_id, ds.dataset_id);

    // The stored values are keyed hashes; the subject is found by its value all the same. The
    // content stays while the other pipeline holds it, and says why.
    let erased = client::erase(&ingest, request("email", &format!(" {SUBJECT} "), "ticket 7")).await.unwrap();
    let v = &erased.versions[0];
    assert_eq!((v.dataset_id.as_str(), v.rows_removed, v.rows_kept), (ds.dataset_id.as_str(), 2, 298));
    let (emails, _) = stored_emails(&app, &v.successor_id).await.unwrap();
    assert!(!emails.contains(&erased.subject_hash) && emails.len() == 298);
    assert!(!v.content_deleted && v.kept_because.contains("a version of pipeline `churn2`"), "{v:?}");
    assert!(stored_emails(&app, &ds.dataset_id).await.is_some());
    // Erased there too, the content is deleted.
    let there = pb::EraseRequest { pipeline: "churn2".into(), ..request("email", SUBJECT, "ticket 7") };
    let erased = client::erase(&ingest, there).await.unwrap();
    assert!(erased.versions[0].content_deleted, "{erased:?}");
    assert!(stored_emails(&app, &ds.dataset_id).await.is_none());
    // The content an erasure removed is not stored again when the same file is sent again.
    let again = app.upload("churn", &with_emails(300, 3, &[4, 5])).await;
    assert!(again.duplicate && again.erased.is_some(), "{again:?}");
    assert!(stored_emails(&app, &ds.dataset_id).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_by_a_feature_rewrites_the_archive_files_that_hold_it() {
    let app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY), ("MLOPS_ARCHIVE_FLUSH_SECS", "0.3")]).await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let bus = app.bus().await;
    for start in [0, 100] {
        let id = format!("log-{start}");
        let batch = mlops_integration_tests::prediction_logs("churn", start, 100, mlops_shared::now_unix_ms());
        bus.publish(&id, &mlops_shared::events::EventContext::default(), &batch).await.unwrap();
    }
    let archive = mlops_archive::Archive::open(&bus).await.unwrap();
    let rows = || async {
        let mut files = Vec::new();
        for hour in archive.hours("churn").await.unwrap() {
            files.extend(archive.partition("churn", &hour).await.unwrap());
        }
        files
    };
    let files = mlops_integration_tests::wait_until(T, || async {
        let files = rows().await;
        (files.iter().map(|f| f.rows).sum::<u64>() == 200).then_some(files)
    })
    .await
    .unwrap_or_else(|| panic!("never archived:\n{}", app.log("monitor")));

    let erased = client::erase(
        &app.stack.url("ingest"),
        pb::EraseRequest {
            pipeline: "churn".into(),
            column: "tenure_months".into(),
            value: "142".into(),
            reason: "ticket 9".into(),
            requested_by: String::new(),
        },
    )
    .await
    .unwrap();
    assert!(erased.versions.is_empty(), "{erased:?}");
    let [file] = erased.archive_files.as_slice() else { panic!("{erased:?}") };
    assert_eq!((file.rows_removed, file.rows_kept), (1, file.rows_kept));
    let holder = files.iter().find(|f| f.name == file.name).unwrap();
    assert_eq!(file.rows_kept + 1, holder.rows);

    // The entry keeps its name and points at the new object; the old object is gone.
    let now = rows().await;
    let entry = now.iter().find(|f| f.name == file.name).unwrap();
    assert!(entry.object.ends_with(&erased.erasure_id) && entry.rows == file.rows_kept, "{entry:?}");
    let store = app.js.get_object_store("archive").await.unwrap();
    assert!(store.get(holder.name.as_str()).await.is_err(), "the old file is still stored");
    let bytes = archive.file(entry).await.unwrap();
    let batches = mlops_data::open(mlops_data::Source::Bytes(bytes), "f.parquet", &Default::default()).unwrap();
    let mut tenures = Vec::new();
    for batch in batches {
        let batch = batch.unwrap();
        let column = mlops_data::view(batch.column(batch.schema().index_of("tenure_months").unwrap()));
        tenures.extend((0..batch.num_rows()).map(|r| mlops_data::text(column.get(r)).into_owned()));
    }
    assert!(!tenures.contains(&"142".to_owned()) && tenures.len() as u64 == file.rows_kept);
    assert_eq!(now.iter().map(|f| f.rows).sum::<u64>(), 199);

    // A file that held only the subject's rows keeps its entry, with none: the compactor's next
    // passes (which index their flushes again) never bring the old file back, and the archive
    // still reads whole.
    let lone = mlops_integration_tests::prediction_logs("churn", 900, 1, mlops_shared::now_unix_ms());
    bus.publish("log-900", &mlops_shared::events::EventContext::default(), &lone).await.unwrap();
    let archived = |n: u64| async move { (rows().await.iter().map(|f| f.rows).sum::<u64>() == n).then_some(()) };
    mlops_integration_tests::wait_until(T, || archived(200)).await.expect("the lone prediction archived");
    let request = pb::EraseRequest {
        pipeline: "churn".into(),
        column: "tenure_months".into(),
        value: "900.0".into(),
        reason: "ticket 10".into(),
        requested_by: String::new(),
    };
    let erased = client::erase(&app.stack.url("ingest"), request).await.unwrap();
    let [file] = erased.archive_files.as_slice() else { panic!("{erased:?}") };
    assert_eq!((file.rows_removed, file.rows_kept), (1, 0));
    let after = mlops_integration_tests::prediction_logs("churn", 901, 1, mlops_shared::now_unix_ms());
    bus.publish("log-901", &mlops_shared::events::EventContext::default(), &after).await.unwrap();
    mlops_integration_tests::wait_until(T, || archived(200)).await.expect("a pass after the erasure");
    let emptied = rows().await.into_iter().find(|f| f.name == file.name).expect("the entry stays");
    assert!(emptied.rows == 0 && emptied.object.ends_with(&erased.erasure_id), "{emptied:?}");
    let out = app.drop_dir().join("after.parquet");
    let (from, to) = (
        (mlops_shared::now_unix_ms() / 1000 - 600).to_string(),
        (mlops_shared::now_unix_ms() / 1000 + 600).to_string(),
    );
    let (ok, said, err) = app.mlops(&[
        "predictions",
        "export",
        "--pipeline",
        "churn",
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{said}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_cut_short_by_kill_9_is_finished_when_ingest_starts_again() {
    let mut app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY)]).await;
    let no_training = spec("pii: allow, purpose: account recovery")
        .replace("  window: {versions: 2}\n", "  window: {versions: 2}\n  triggers: {on: []}\n");
    app.apply(&no_training).await;
    const VERSIONS: u64 = 100;
    let mut ids = Vec::new();
    for seed in 0..VERSIONS {
        ids.push(app.upload("churn", &with_emails(1000, 100 + seed, &[7])).await.dataset_id);
    }
    let ingest = app.stack.url("ingest");
    let validated = |s: &mlops_cli::events::Seen| s.kind == "data.validated";
    mlops_integration_tests::wait_until(T, || async {
        (app.seen().iter().filter(|s| validated(s)).count() as u64 == VERSIONS).then_some(())
    })
    .await
    .expect("every version validated");

    // kill -9 once the first version is erased, while the others wait.
    let request = pb::EraseRequest {
        pipeline: "churn".into(),
        column: "email".into(),
        value: SUBJECT.into(),
        reason: "ticket 5".into(),
        requested_by: String::new(),
    };
    let erasing = tokio::spawn(client::erase(ingest.clone(), request));
    // Versions are erased oldest first: the first one's mark is the first sign of progress.
    let first_erased = || async { client::dataset(&ingest, &ids[0]).await.ok()?.erased };
    mlops_integration_tests::wait_until(T, first_erased).await.expect("the first version erased");
    app.stack.kill("ingest").await.unwrap();
    assert!(erasing.await.unwrap().is_err(), "the erasure finished before the kill");
    assert!(app.seen().iter().all(|s| s.kind != "data.erased"));

    // Started again on its catalog, ingest finishes the erasure: every version once, published once.
    app.stack.spawn("ingest", "ingest", &[]).await.unwrap();
    let event = app.wait_event("data.erased", T, |_| true).await;
    let Decoded::Erased(event) = event.payload else { unreachable!() };
    let mut done: Vec<&str> = event.versions.iter().map(|v| v.dataset_id.as_str()).collect();
    done.sort();
    let mut all: Vec<&str> = ids.iter().map(String::as_str).collect();
    all.sort();
    assert_eq!(done, all, "every version erased once");
    assert!(event.versions.iter().all(|v| v.rows_removed == 1 && v.rows_kept == 999));
    for v in &event.versions {
        assert!(stored_emails(&app, &v.dataset_id).await.is_none(), "{} still stored", v.dataset_id);
        let (emails, _) = stored_emails(&app, &v.successor_id).await.expect("the successor is stored");
        assert!(!emails.iter().any(|e| e == SUBJECT));
    }
    let successors: std::collections::HashSet<&str> = event.versions.iter().map(|v| v.successor_id.as_str()).collect();
    let ingested = |s: &&mlops_cli::events::Seen| matches!(&s.payload, Decoded::Ingested(i) if successors.contains(i.dataset_id.as_str()));
    mlops_integration_tests::wait_until(T, || async {
        (app.seen().iter().filter(ingested).count() as u64 >= VERSIONS).then_some(())
    })
    .await
    .expect("each successor announced");
    let erasures = client::erasures(&app.stack.url("ingest"), "churn").await.unwrap();
    assert_eq!(erasures.len(), 1, "{erasures:?}");
    assert_eq!(app.seen().iter().filter(|s| s.kind == "data.erased").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_by_a_feature_drops_the_subjects_labelled_rows_waiting_for_feedback() {
    let app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY)]).await;
    let customers = serving_with_feedback(&app).await;
    let served = serve(&app, &customers).await;
    label(&app, &served, &customers).await;
    wait_waiting(&app, 200).await;
    let (subject, theirs) = first_customers_tenure(&customers);
    client::erase(&app.stack.url("ingest"), by_tenure(&subject)).await.unwrap();
    wait_waiting(&app, 200 - theirs).await;
}

/// Applies the example spec with feedback on (labelled rows wait for a version of 100 000) and
/// trains it; 200 customers to serve.
async fn serving_with_feedback(app: &TestApp) -> Vec<sample::Customer> {
    let feedback = mlops_cli::EXAMPLE_SPEC.replace(
        "\nmonitoring:\n",
        "\nmonitoring:\n  performance: {metric: accuracy, min: 0.5, window: 100}\n  feedback: {min_rows: 100000}\n",
    );
    app.apply(&feedback).await;
    app.upload("churn", &sample::csv(1000, 11, sample::Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.pipeline == "churn").await;
    sample::customers(200, 12, sample::Variant::Normal)
}

/// Scores `customers` in four requests: their prediction ids.
async fn serve(app: &TestApp, customers: &[sample::Customer]) -> Vec<String> {
    let mut served = Vec::new();
    for chunk in customers.chunks(50) {
        let body =
            client::predict(&app.stack.url("deployer"), "churn", &mlops_integration_tests::rows_json(chunk)).await;
        let body = body.unwrap();
        let ids = body["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "prediction_id").unwrap();
        served.extend(ids["data"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
    }
    served
}

/// Publishes the true label of each prediction `served`.
async fn label(app: &TestApp, served: &[String], customers: &[sample::Customer]) {
    let labels: Vec<(&str, &str)> =
        served.iter().zip(customers).map(|(id, c)| (id.as_str(), if c.churned { "1" } else { "0" })).collect();
    let event = mlops_integration_tests::labels_event("churn", &labels);
    app.bus().await.publish("labels-1", &mlops_shared::events::EventContext::default(), &event).await.unwrap();
}

/// Waits until the monitor says `n` labelled rows wait for feedback.
async fn wait_waiting(app: &TestApp, n: u64) {
    let waiting = || async {
        let report = client::monitor_report(&app.stack.url("monitor"), "churn").await.ok()?;
        report.feedback.map(|f| f.waiting)
    };
    mlops_integration_tests::wait_until(T, || async { waiting().await.filter(|w| *w == n) })
        .await
        .unwrap_or_else(|| panic!("{n} labelled rows never waited:\n{}", app.log("monitor")));
}

/// The subject: whoever has the first customer's tenure; and how many customers have it.
fn first_customers_tenure(customers: &[sample::Customer]) -> (String, u64) {
    let tenure = mlops_shared::table::number_text(customers[0].tenure_months);
    let theirs =
        customers.iter().filter(|c| mlops_shared::table::number_text(c.tenure_months) == tenure).count() as u64;
    (tenure, theirs)
}

fn by_tenure(tenure: &str) -> pb::EraseRequest {
    pb::EraseRequest {
        pipeline: "churn".into(),
        column: "tenure_months".into(),
        value: tenure.into(),
        reason: "ticket 11".into(),
        requested_by: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_logged_before_an_erasure_but_read_after_it_are_not_kept_or_archived() {
    // The monitor (which writes the archive) is down while the subject is served and erased: it
    // reads those predictions only after the erasure ran.
    let mut app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY), ("MLOPS_ARCHIVE_FLUSH_SECS", "1")]).await;
    let customers = serving_with_feedback(&app).await;
    app.stack.kill("monitor").await.unwrap();
    let served = serve(&app, &customers).await;
    // Logged (the deployer logs as it answers, not before): the erasure begins after them.
    let logged = || async { (app.logged_predictions("churn").await.len() == served.len()).then_some(()) };
    mlops_integration_tests::wait_until(T, logged).await.expect("every prediction logged");
    let (subject, theirs) = first_customers_tenure(&customers);
    let erased = client::erase(&app.stack.url("ingest"), by_tenure(&subject)).await.unwrap();
    assert!(erased.archive_files.is_empty() && erased.predictions_sequence > 0, "{erased:?}");
    app.stack.spawn("monitor", "monitor", &[]).await.unwrap();

    // The monitor keeps none of the subject's predictions for feedback…
    label(&app, &served, &customers).await;
    wait_waiting(&app, 200 - theirs).await;
    // …and the archive, once it holds them all and ingest took its second look, none of their
    // rows (a file read as its entry moves reads again).
    let bus = app.bus().await;
    let archive = mlops_archive::Archive::open(&bus).await.unwrap();
    let tenures = || async {
        let mut tenures = Vec::new();
        for hour in archive.hours("churn").await.ok()? {
            for entry in archive.partition("churn", &hour).await.ok()? {
                let bytes = archive.file(&entry).await.ok()?;
                let source = mlops_data::Source::Bytes(bytes);
                for batch in mlops_data::open(source, "f.parquet", &Default::default()).unwrap() {
                    let batch = batch.unwrap();
                    let column = mlops_data::view(batch.column(batch.schema().index_of("tenure_months").unwrap()));
                    tenures.extend((0..batch.num_rows()).map(|r| mlops_data::text(column.get(r)).into_owned()));
                }
            }
        }
        Some(tenures)
    };
    let archived = mlops_integration_tests::wait_until(T, || async {
        tenures().await.filter(|tenures| tenures.len() as u64 == 200 - theirs)
    })
    .await;
    let archived =
        archived.unwrap_or_else(|| panic!("the archive never held the others only:\n{}", app.log("monitor")));
    assert!(!archived.contains(&subject), "{archived:?}");
    let audit = client::erasures(&app.stack.url("ingest"), "churn").await.unwrap();
    let removed: u64 = audit[0].archive_files.iter().map(|f| f.rows_removed).sum();
    assert_eq!(removed, theirs, "the audit record lists the files of the second look: {audit:?}");
}

/// A batch of view `customer_stats`: customers 1000–1049, their spend `shift` on from their
/// number, true since `event_ms`; customer 1007's id written `id_1007`; and customer `01007`,
/// another one.
fn view_batch(event_ms: i64, shift: usize, id_1007: &str) -> String {
    let at = mlops_features::time::format_ms(event_ms);
    let mut csv = format!("customer_id,event_ts,spend_30d\n01007,{at},99\n");
    for i in 1000..1050 {
        let id = if i == 1007 { id_1007.to_owned() } else { i.to_string() };
        csv.push_str(&format!("{id},{at},{}\n", i - 1000 + shift));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_by_a_feature_views_key_removes_the_entity_offline_and_online() {
    let app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY)]).await;
    app.apply(
        "kind: feature_view\nname: customer_stats\nentities: [customer_id]\nevent_time: event_ts\nttl: 30d\n\
         features:\n  - {name: spend_30d, type: numeric, min: 0}\n",
    )
    .await;
    let now = mlops_shared::now_unix_ms();
    let mut batches = Vec::new();
    for (hours, shift, id) in [(2, 0, "1007"), (1, 5, "1007.0")] {
        let ds = app.upload("customer_stats", &view_batch(now - hours * 3_600_000, shift, id)).await;
        app.wait_event(
            "features.materialised",
            T,
            |s| matches!(&s.payload, Decoded::Materialised(m) if m.dataset_id == ds.dataset_id),
        )
        .await;
        batches.push(ds.dataset_id);
    }
    let store = mlops_features::FeatureStore::open(&app.bus().await).await.unwrap();
    let view = store.known_view("customer_stats").await.unwrap();
    let files = store.files("customer_stats").await.unwrap();
    let online = |keys: &[&str]| {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let (store, view) = (&store, &view);
        async move { store.online(view, &keys, mlops_shared::now_unix_ms(), None).await.unwrap() }
    };
    assert!(online(&["1007"]).await[0].is_some());

    // Erased by its key as a person writes it: a number matches the keys `1007` and `1007.0` (two
    // entities to the store, which compares key text as written in a CSV file).
    let (ok, out, err) = app.mlops(&[
        "data",
        "erase",
        "--pipeline",
        "customer_stats",
        "--key",
        "customer_id=1007.0",
        "--reason",
        "DSR-9",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("online store: 2 entity entr(ies) deleted"), "{out}");
    let seen = app.wait_event("data.erased", T, |s| s.pipeline == "customer_stats").await;
    let Decoded::Erased(erased) = seen.payload else { unreachable!() };
    let erased_ids: Vec<&str> = erased.versions.iter().map(|v| v.dataset_id.as_str()).collect();
    assert_eq!(erased_ids, batches.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(erased.online_entries_deleted, 2);
    let rewritten: Vec<(&str, u64, u64)> =
        erased.feature_files.iter().map(|f| (f.name.as_str(), f.rows_removed, f.rows_kept)).collect();
    assert_eq!(rewritten, files.iter().map(|f| (f.as_str(), 1, 50)).collect::<Vec<_>>());

    // Offline, every file keeps its name (its place in write order) and loses the subject's rows
    // only; online, the entity is gone and the others are as they were.
    assert_eq!(store.files("customer_stats").await.unwrap(), files);
    let log = store.log(&view).await.unwrap();
    assert_eq!(log.len(), 100);
    assert!(!log.keys.iter().any(|k| k.starts_with("1007")), "{:?}", log.keys);
    let [gone, gone_too, kept, another] = online(&["1007", "1007.0", "1008", "01007"]).await.try_into().unwrap();
    assert!(gone.is_none() && gone_too.is_none(), "{gone:?} {gone_too:?}");
    assert!(another.is_some(), "`01007` is another customer");
    assert_eq!(kept.map(|e| e.feature_values()), Some(vec![mlops_shared::table::Value::Num(13.0)]));

    // The successors are validated and not stored again (the files were written in place), and
    // every service took the erasure without an error.
    for v in &erased.versions {
        let successor = v.successor_id.clone();
        app.wait_event(
            "data.validated",
            T,
            |s| matches!(&s.payload, Decoded::Validated(d) if d.dataset_id == successor),
        )
        .await;
    }
    let materialised = |s: &mlops_cli::events::Seen| matches!(&s.payload, Decoded::Materialised(_));
    assert_eq!(app.seen().iter().filter(|s| materialised(s)).count(), 2);
    assert_eq!(store.log(&view).await.unwrap().len(), 100);
    let consumers = app.wait_settled("MLOPS_EVENTS", T).await;
    let retried: Vec<_> = consumers.iter().filter(|c| c.name.contains("-erase") && c.redelivered > 0).collect();
    assert!(retried.is_empty(), "{retried:?}");
    assert!(app.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty());
}
