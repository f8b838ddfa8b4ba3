//! Fault drills on real processes. nats-server is stopped in the middle of a cascade and started
//! again on the same store and port: every service reconnects by itself, nothing is lost, the
//! cascade completes with exactly one new model version, and serving answers from memory
//! throughout.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_cli::stack::NatsServer;
use mlops_integration_tests::{TestApp, client, rows_json, sample, wait_until};
use sample::Variant;

const T: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_cascade_loses_nothing_and_the_cascade_completes() {
    let mut app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 501, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let deployer = app.stack.url("deployer");
    let rows = sample::customers(5, 502, Variant::Normal);

    // New data is in; the cascade has started when the server goes down.
    let second = app.upload("churn", &sample::csv(2000, 503, Variant::Normal)).await;
    let before = app.seen();
    assert!(!before.iter().any(|s| s.kind == "model.promoted" && s.summary.starts_with("v2 ")), "too late");
    let nats = app.stack.nats.as_mut().expect("the test's own nats-server");
    let (store, url) = (nats.store_dir.clone(), nats.url.clone());
    nats.kill().await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    // Serving needs no NATS: the model is in memory (prediction logs wait or are dropped, counted).
    for _ in 0..20 {
        let body = client::predict(&deployer, "churn", &rows_json(&rows)).await.expect("served while NATS is down");
        assert_eq!(body["model_version"], "1");
        // The requests' pace, not synchronisation: serving is measured across two seconds of outage.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same store and port, as a restarted server.
    let restarted = NatsServer::start(store.parent().unwrap(), Some(port)).await.expect("nats-server restarts");
    assert_eq!(restarted.url, url);
    app.stack.nats = Some(restarted);

    // Exactly one new version, trained on the new dataset, and every step of its cascade stored.
    app.assert_promoted_once("churn", 2, &second.dataset_id, T).await;
    app.assert_cascades_stored("churn", 2).await;
    // Nothing waits undelivered, unacknowledged or dead-lettered; serving moved to v2.
    assert!(app.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty());
    let consumers = app.wait_settled("MLOPS_EVENTS", T).await;
    app.wait_settled("MLOPS_JOBS", T).await;
    eprintln!("consumers after the NATS restart: {consumers:?}");
    app.wait_serving("churn", 2, &rows_json(&rows), T).await;
}

/// Each of validator, evaluator, deployer and monitor is SIGKILLed right after new data arrives
/// and started again (on its own data directory): every cascade completes with exactly one new
/// version, nothing is dead-lettered, and a restarted deployer serves production from NATS alone
/// within a second of starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_killed_mid_cascade_comes_back_and_the_cascade_completes() {
    let mut app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 511, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let rows = sample::customers(5, 512, Variant::Normal);

    for (round, service) in ["validator", "evaluator", "deployer", "monitor"].into_iter().enumerate() {
        let version = round as u64 + 2;
        app.upload("churn", &sample::csv(2000, 520 + round as u64, Variant::Normal)).await;
        app.stack.kill(service).await.unwrap();
        let started = std::time::Instant::now();
        app.stack.spawn(service, service, &[]).await.unwrap();
        if service == "deployer" {
            // Ready with the production model from the routes in NATS, before any new event.
            let deployer = app.stack.url("deployer");
            let ready = wait_until(Duration::from_secs(5), || async {
                client::predict(&deployer, "churn", &rows_json(&rows)).await.ok().map(|_| started.elapsed())
            })
            .await
            .expect("the restarted deployer serves");
            eprintln!("restarted deployer served production {ready:?} after its start");
            assert!(ready < Duration::from_secs(1), "ready after {ready:?}");
        }
        app.wait_event("model.promoted", T, |s| s.summary.starts_with(&format!("v{version} "))).await;
        let versions = client::models(&app.stack.url("registry"), "churn").await.unwrap();
        assert_eq!(versions.len() as u64, version, "after killing the {service}: {versions:?}");
    }
    assert!(app.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty());
    let trained = app.stored("MLOPS_EVENTS", "mlops.events.model.trained.churn").await;
    assert_eq!(trained.len(), 5, "one model.trained per dataset");
    // Every consumer has taken and acknowledged everything; what a killed service held unacked
    // was redelivered to its successor.
    let consumers = app.wait_settled("MLOPS_EVENTS", T).await;
    app.wait_settled("MLOPS_JOBS", T).await;
    eprintln!("consumers after the kills: {consumers:?}");
    let deployer = app.stack.url("deployer");
    let body = client::predict(&deployer, "churn", &rows_json(&rows)).await.unwrap();
    assert_eq!(body["model_version"], "5");
}

/// Ingest SIGKILLed while a client streams an upload: the client gets an error, nothing half-
/// received is catalogued or trained on, and the same file uploaded again once ingest is back is
/// one dataset version and one model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_during_an_upload_catalogues_nothing_half_received() {
    let mut app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 531, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    // About 16 MB, streamed by hand in 1 MB chunks through a channel that holds one: once eight
    // chunks are handed over, the client has taken seven, more than HTTP/2 flow control lets it
    // send before ingest reads, and the upload is still open (the rest is never sent) when ingest
    // dies.
    use mlops_proto::upload_request::Part;
    let big = sample::csv(250_000, 532, Variant::Normal).into_bytes();
    let (parts, rx) = tokio::sync::mpsc::channel(1);
    let channel = app.stack.remote("ingest").channel().await.unwrap();
    let upload = tokio::spawn(async move {
        let mut ingest = mlops_proto::ingest_client::IngestClient::new(channel);
        ingest.upload(tokio_stream::wrappers::ReceiverStream::new(rx)).await
    });
    let header = mlops_proto::UploadHeader {
        pipeline: "churn".into(),
        source: "big.csv".into(),
        size_bytes: big.len() as u64,
        ..Default::default()
    };
    parts.send(mlops_proto::UploadRequest { part: Some(Part::Header(header)) }).await.unwrap();
    for chunk in big.chunks(1 << 20).take(8) {
        parts.send(mlops_proto::UploadRequest { part: Some(Part::Chunk(chunk.to_vec())) }).await.unwrap();
    }
    app.stack.kill("ingest").await.unwrap();
    let cut = upload.await.unwrap();
    assert!(cut.is_err(), "the upload survived the kill: {cut:?}");
    drop(parts);
    app.stack.spawn("ingest", "ingest", &[]).await.unwrap();
    let ingest = app.stack.url("ingest");
    let listed = client::datasets(&ingest, "churn", "").await.unwrap();
    assert_eq!(listed.len(), 1, "a half-received upload was catalogued: {listed:?}");

    let again = client::upload(&ingest, "churn", "big.csv", big.clone()).await.unwrap();
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;
    // The same bytes once more are the same version: no second validation, no second model.
    let third = client::upload(&ingest, "churn", "big.csv", big).await.unwrap();
    assert_eq!(third.dataset_id, again.dataset_id);
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    assert_eq!(client::datasets(&ingest, "churn", "").await.unwrap().len(), 2);
    assert_eq!(client::models(&app.stack.url("registry"), "churn").await.unwrap().len(), 2);
    app.assert_cascades_stored("churn", 2).await;
    assert!(app.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty());
}

/// The platform's services, each a NATS user of `deploy/nats/authorization.conf`.
const USERS: [&str; 7] = ["registry", "ingest", "validator", "trainer", "evaluator", "deployer", "monitor"];

/// The password of NATS user `user` in these drills.
fn password(user: &str) -> String {
    format!("pw-{user}-7f3a")
}

/// The platform on a nats-server with a user per service (`deploy/nats/authorization.conf`), each
/// service logged in as itself; the test's own connection is `admin`.
async fn start_as_nats_users() -> TestApp {
    let server_env: Vec<(String, String)> = USERS
        .iter()
        .chain(&["admin", "producer"])
        .map(|u| (format!("MLOPS_NATS_PASSWORD_{}", u.to_uppercase()), password(u)))
        .collect();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/authorization.conf");
    TestApp::start_custom(
        &[],
        |opts| {
            opts.nats_config = Some((config.clone(), server_env.clone()));
            for s in USERS {
                opts.service_env.insert(
                    s.to_owned(),
                    vec![("MLOPS_NATS_USER".into(), s.into()), ("MLOPS_NATS_PASSWORD".into(), password(s))],
                );
            }
        },
        async_nats::ConnectOptions::with_user_and_password("admin".into(), password("admin")),
    )
    .await
}

/// NATS with a user per service: the whole cascade runs with each service logged in as itself and
/// allowed only its own facts, predictions are logged and windowed, an outside producer may
/// publish labels, the monitor announces a feedback version, and no service logs its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_runs_the_cascade_as_its_own_nats_user() {
    let app = start_as_nats_users().await;
    let spec = mlops_integration_tests::spec_with_window(50)
        .replace("  cooldown_secs: 3600\n", "  cooldown_secs: 3600\n  feedback: {min_rows: 20}\n");
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(2000, 541, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    // Predictions are logged and windowed by the monitor under its own user too.
    let deployer = app.stack.url("deployer");
    let mut ids = Vec::new();
    for chunk in sample::customers(100, 542, Variant::Drifted).chunks(50) {
        let body = client::predict(&deployer, "churn", &rows_json(chunk)).await.unwrap();
        let out = body["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "prediction_id").unwrap().clone();
        ids.extend(out["data"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
    }
    app.wait_event("monitor.drift_detected", T, |_| true).await;
    // An outside system logged in as `producer` may publish labels; the monitor writes the
    // labelled predictions back as a feedback version under its own user.
    let producer = async_nats::ConnectOptions::with_user_and_password("producer".into(), password("producer"))
        .connect(&app.stack.nats_url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(producer);
    let labels: Vec<serde_json::Value> =
        ids[..20].iter().map(|id| serde_json::json!({"predictionId": id, "label": "1"})).collect();
    let labels = serde_json::json!({"pipeline": "churn", "labels": labels}).to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("content-type", "application/json");
    js.publish_with_headers("mlops.events.labels.arrived.churn", headers, labels.into()).await.unwrap().await.unwrap();
    app.wait_event("data.ingested", T, |s| s.summary.contains("feedback:churn#1")).await;
    // No service logged a password.
    for s in USERS {
        assert!(!app.log(s).contains(&password(s)), "{s} logged its password");
    }
}

/// NATS with a user per service: a service publishing another's fact is refused by the server,
/// and a wrong password is refused with a message that says so, to a client and to a service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_outside_a_users_permissions_and_a_wrong_password_are_refused() {
    let app = start_as_nats_users().await;
    // The validator's user may not announce a promotion: the server refuses the publish.
    let validator = async_nats::ConnectOptions::with_user_and_password("validator".into(), password("validator"))
        .connect(&app.stack.nats_url)
        .await
        .unwrap();
    let mut js = async_nats::jetstream::new(validator);
    js.set_timeout(Duration::from_secs(2));
    let forged = js.publish("mlops.events.model.promoted.churn", "forged".into()).await;
    let refused = match forged {
        Err(e) => Some(e.to_string()),
        Ok(ack) => ack.await.err().map(|e| e.to_string()),
    };
    assert!(refused.is_some(), "the forged promotion was accepted");
    let stored = app.stored("MLOPS_EVENTS", "mlops.events.model.promoted.churn").await;
    assert!(stored.is_empty(), "the forged promotion was stored");
    // A wrong password is refused, and says so.
    let wrong = async_nats::ConnectOptions::with_user_and_password("deployer".into(), "guess".into())
        .connect(&app.stack.nats_url)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(wrong.to_lowercase().contains("authoriz"), "{wrong}");
    // A service given a wrong password fails its start and says why.
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops-validator"))
        .env("MLOPS_NATS_URL", &app.stack.nats_url)
        .env("MLOPS_NATS_USER", "validator")
        .env("MLOPS_NATS_PASSWORD", "guess")
        .env("MLOPS_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.to_lowercase().contains("authoriz"), "{said}");
    assert!(!said.contains("guess"), "the password was logged: {said}");
}

/// The file paths a process traced by `strace -e trace=%file` reached (calls that succeeded).
fn paths_touched(trace: &str) -> Vec<String> {
    let mut paths: Vec<String> = trace
        .lines()
        .filter(|l| !l.contains("= -1 ") && !l.contains("+++") && !l.contains("---"))
        .filter_map(|l| {
            let start = l.find('"')? + 1;
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_owned())
        })
        .filter(|p| !p.is_empty())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// A trainer under `strace`, in a directory of its own.
struct TracedTrainer {
    name: &'static str,
    home: tempfile::TempDir,
    trace: std::path::PathBuf,
    child: tokio::process::Child,
}

impl TracedTrainer {
    /// Starts `bin` as trainer `name` under `strace -e trace=%file`, its working directory,
    /// `HOME` and `TMPDIR` an empty directory of its own, with nothing of the stack's but NATS.
    fn start(app: &TestApp, bin: &std::path::Path, name: &'static str) -> Self {
        let home = tempfile::tempdir().unwrap();
        let trace = app.dir.path().join(format!("{name}.strace"));
        let log = std::fs::File::create(app.dir.path().join("logs").join(format!("{name}.log"))).unwrap();
        let child = tokio::process::Command::new("strace")
            .args(["-f", "-qq", "--seccomp-bpf", "-e", "trace=%file", "-o"])
            .arg(&trace)
            .arg(bin)
            .current_dir(home.path())
            // cargo's library path for the test binary; a deployed trainer has none.
            .env_remove("LD_LIBRARY_PATH")
            .env("HOME", home.path())
            .env("TMPDIR", home.path())
            .env("MLOPS_NATS_URL", &app.stack.nats_url)
            .env("MLOPS_LISTEN", "127.0.0.1:0")
            .env("MLOPS_TRAINER_ID", name)
            .env("MLOPS_ADDR_FILE", home.path().join("addr"))
            .env("RUST_LOG", "info,async_nats=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("strace is installed (`just deps-test`)");
        Self { name, home, trace, child }
    }

    /// Where its HTTP port answers, once it has bound it.
    fn url(&self) -> Option<String> {
        std::fs::read_to_string(self.home.path().join("addr")).ok().map(|addr| format!("http://{}", addr.trim()))
    }

    /// Ready, as a supervisor sees it: `/healthz` answers 200 once the trainer's consumers pull.
    async fn ready(&self, http: &reqwest::Client) -> bool {
        let Some(url) = self.url() else { return false };
        http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
    }

    /// Stops the trainer (SIGTERM), and with it strace; the absolute paths outside its own
    /// directory that it reached, beyond the system's libraries, configuration, `/proc` and its
    /// installation (its binaries and ONNX Runtime beside them).
    async fn stop_and_list_files_outside(mut self, bin: &std::path::Path) -> Vec<String> {
        if let Some(pid) = self.child.id() {
            // The trainer is strace's child: stop it, and strace ends with it.
            let _ = std::process::Command::new("pkill").args(["-TERM", "-P", &pid.to_string()]).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let touched = paths_touched(&std::fs::read_to_string(&self.trace).unwrap());
        let home = self.home.path().canonicalize().unwrap().display().to_string();
        let installed = bin.parent().expect("the binaries' directory");
        let onnxruntime = installed.parent().expect("beside the binaries").join("onnxruntime");
        let system = ["/proc/", "/sys/", "/dev/", "/etc/", "/usr/", "/lib/", "/lib64/"];
        let outside: Vec<String> = touched
            .iter()
            .filter(|p| p.starts_with('/'))
            .filter(|p| !system.iter().any(|s| p.starts_with(s)) && !p.starts_with(&home))
            // The installation: the binaries (the step runner beside the trainer) and ONNX
            // Runtime's library beside them, which a trainer loads to check a code step's model.
            .filter(|p| !p.starts_with(&installed.display().to_string()))
            .filter(|p| !p.starts_with(&onnxruntime.display().to_string()))
            .cloned()
            .collect();
        eprintln!("{} touched {} paths, none shared: {outside:?}", self.name, touched.len());
        outside
    }
}

/// Two trainers that share nothing but NATS: each runs in its own empty directory (working
/// directory, `HOME`, `TMPDIR`), the stock trainer stopped, and under `strace`, which records
/// every file call it makes. Eight jobs are each trained exactly once between them, and neither
/// touched a file outside its own directory beyond the system's libraries, configuration, `/proc`
/// and its installation: whatever a trainer reads or writes goes through NATS, so trainers run on
/// any machine that reaches it. Every consumer settles: nothing waits undelivered or unacknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trainers_with_no_shared_filesystem_train_each_job_once() {
    let mut app = TestApp::start().await;
    app.stack.kill("trainer").await.unwrap();
    let bin = app.stack.opts.bin_dir.join("mlops-trainer");
    let trainers: Vec<TracedTrainer> = ["far-a", "far-b"].map(|name| TracedTrainer::start(&app, &bin, name)).into();
    let http = client::http_client().unwrap();
    let ready = wait_until(T, || async {
        for t in &trainers {
            t.ready(&http).await.then_some(())?;
        }
        Some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "the traced trainers did not start: {:?}",
        trainers.iter().map(|t| app.log(t.name)).collect::<Vec<_>>()
    );

    let jobs = 8;
    for i in 0..jobs {
        let name = format!("far{i}");
        app.apply(&mlops_cli::EXAMPLE_SPEC.replace("name: churn\n", &format!("name: {name}\n"))).await;
        app.upload(&name, &sample::csv(1500, 550 + i, Variant::Normal)).await;
    }
    let all = wait_until(T, || async {
        let n = app.stored_events("mlops.events.model.promoted.>").await.len();
        (n >= jobs as usize).then_some(())
    })
    .await;
    assert!(all.is_some(), "not every job was trained and promoted");
    // Nothing waits undelivered or unacknowledged: every training these jobs will get has run.
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    eprintln!("work queue consumers: {:?}", app.consumers("MLOPS_JOBS").await);
    // One `model.trained` stored per job, and the trainers ran one training per job between them
    // (the stream would keep one however often a job were trained and announced).
    let mut trainings = 0;
    for t in &trainers {
        trainings += mlops_integration_tests::trainings_run(&t.url().expect("bound")).await;
    }
    assert_eq!(trainings, jobs, "a job trained twice");
    let by: Vec<String> = app
        .stored_events("mlops.events.model.trained.>")
        .await
        .into_iter()
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) => Some(t.trainer_id),
            _ => None,
        })
        .collect();
    assert_eq!(by.len(), jobs as usize, "{by:?}");
    assert!(by.iter().all(|t| t == "far-a" || t == "far-b"), "{by:?}");
    eprintln!(
        "jobs per trainer: far-a {}, far-b {}",
        by.iter().filter(|t| *t == "far-a").count(),
        by.iter().filter(|t| *t == "far-b").count()
    );
    for i in 0..jobs {
        assert_eq!(client::models(&app.stack.url("registry"), &format!("far{i}")).await.unwrap().len(), 1);
    }

    for trainer in trainers {
        let name = trainer.name;
        let outside = trainer.stop_and_list_files_outside(&bin).await;
        assert!(outside.is_empty(), "{name} touched files outside its own directory: {outside:?}");
    }
}

/// OPERATIONS.md's backup and restore, cold: every service is stopped (SIGTERM) and then
/// nats-server, the whole data root (the NATS store and the registry's, ingest's and the
/// monitor's redb files) is copied, and the original deleted, as a lost machine. The platform
/// started on the copy has the same versions, aliases, datasets and stored events, serves v2 at
/// once, and the next data makes v3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_backup_restores_the_whole_platform() {
    let mut app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 561, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    app.upload("churn", &sample::csv(2000, 562, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v2 ")).await;
    app.wait_settled("MLOPS_EVENTS", T).await;
    let registry = app.stack.url("registry");
    let versions = client::models(&registry, "churn").await.unwrap();
    let datasets = client::datasets(&app.stack.url("ingest"), "churn", "").await.unwrap();
    let events = app.stored("MLOPS_EVENTS", "mlops.events.>").await.len();
    assert_eq!((versions.len(), datasets.len()), (2, 2));

    let clean = app.stack.stop(Duration::from_secs(10)).await;
    assert!(clean.iter().all(|(_, ok)| *ok), "a service did not stop cleanly: {clean:?}");
    let backup = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp").arg("-a").arg(app.dir.path().join(".")).arg(backup.path()).status();
    assert!(copied.unwrap().success());
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "logs") {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(backup.path().join("logs"));

    let restored = TestApp::start_in(backup, &[], |_| {}, async_nats::ConnectOptions::new()).await;
    let registry = restored.stack.url("registry");
    let again = client::models(&registry, "churn").await.unwrap();
    let shape = |v: &[mlops_proto::ModelVersion]| {
        v.iter().map(|m| (m.version, m.artifact_sha256.clone(), m.aliases.clone())).collect::<Vec<_>>()
    };
    assert_eq!(shape(&again), shape(&versions), "the registry after restore");
    let datasets_again = client::datasets(&restored.stack.url("ingest"), "churn", "").await.unwrap();
    assert_eq!(datasets_again.len(), datasets.len());
    assert_eq!(restored.stored("MLOPS_EVENTS", "mlops.events.>").await.len(), events);
    let rows = sample::customers(3, 563, Variant::Normal);
    let deployer = restored.stack.url("deployer");
    let body = client::predict(&deployer, "churn", &rows_json(&rows)).await.expect("served after restore");
    assert_eq!(body["model_version"], "2");
    restored.upload("churn", &sample::csv(2000, 564, Variant::Normal)).await;
    restored.wait_event("model.promoted", T, |s| s.summary.starts_with("v3 ")).await;
    assert!(restored.stored("MLOPS_DLQ", "mlops.dlq.>").await.is_empty());
}
