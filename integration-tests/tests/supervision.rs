//! `mlops up` supervises its services. The real `mlops up` runs as a child process with a temporary
//! data directory, free ports (`--free-ports`) and a nats-server this test starts; the test kills
//! the deployer as a crash would and reads the `supervisor:` lines `up` prints (their format is
//! documented in `mlops_cli::supervisor`): a killed service is reported and answers again on its
//! port under a new pid, and one that crashes in a loop is given up while the others run on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlops_cli::stack::{NatsServer, SERVICES, StackOptions, check_fresh};
use mlops_integration_tests::{client, wait_until};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

const T: Duration = Duration::from_secs(60);

/// `mlops up` running as a child process, with every line it printed so far.
struct Up {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Each service's URL and process id, from the table `up` prints once everything is healthy.
    services: BTreeMap<String, (String, u32)>,
    _nats: NatsServer,
    _dir: tempfile::TempDir,
}

/// A `supervisor:` line: the service, the event and its `key=value` fields.
#[derive(Debug)]
struct Said {
    service: String,
    event: String,
    fields: BTreeMap<String, String>,
}

impl Said {
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.strip_prefix("supervisor: ")?.split_whitespace();
        let (service, event) = (words.next()?.to_owned(), words.next()?.to_owned());
        let fields = words.map_while(|w| w.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Some(Self { service, event, fields })
    }

    fn field(&self, key: &str) -> &str {
        self.fields.get(key).unwrap_or_else(|| panic!("no {key} in {self:?}"))
    }
}

impl Up {
    /// Starts `mlops up --free-ports` with `args` on a nats-server of its own and waits for the
    /// table of services it prints once all are healthy.
    async fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin_dir = StackOptions::beside_current_exe(dir.path().into()).expect("locating binaries").bin_dir;
        check_fresh(&bin_dir).unwrap_or_else(|e| panic!("{e:#}"));
        let nats = NatsServer::start(&dir.path().join("nats"), None).await.expect("starting nats-server");
        let mut child = Command::new(bin_dir.join("mlops"))
            .args(["--nats-url", &nats.url, "up", "--free-ports", "--data-dir"])
            .arg(dir.path().join("platform"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running mlops up");
        let lines = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("piped"), lines.clone(), "");
        collect(child.stderr.take().expect("piped"), lines.clone(), "stderr: ");
        let mut up = Self { child, lines, services: BTreeMap::new(), _nats: nats, _dir: dir };
        let table = wait_until(T, || async { up.table() }).await;
        up.services = table.unwrap_or_else(|| panic!("no table of services within {T:?}:\n{}", up.printed()));
        up
    }

    /// The table's rows (`  NAME URL pid PID`), once its last line has been printed.
    fn table(&self) -> Option<BTreeMap<String, (String, u32)>> {
        let lines = self.lines.lock().unwrap().clone();
        if !lines.iter().any(|l| l.starts_with("  dashboard ")) {
            return None;
        }
        let rows = lines.iter().filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [name, url, "pid", pid] if SERVICES.contains(&name) => {
                Some((name.to_owned(), (url.to_owned(), pid.parse().ok()?)))
            }
            _ => None,
        });
        Some(rows.collect())
    }

    fn printed(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Every `supervisor:` line printed so far.
    fn said(&self) -> Vec<Said> {
        self.lines.lock().unwrap().iter().filter_map(|l| Said::parse(l)).collect()
    }

    /// Waits for the `n`th (from 1) `event` line about `service`.
    async fn wait_said(&self, service: &str, event: &str, n: usize) -> Said {
        let nth = || self.said().into_iter().filter(|s| s.service == service && s.event == event).nth(n - 1);
        let found = wait_until(T, || async { nth() }).await;
        found.unwrap_or_else(|| panic!("no {service} {event} #{n} within {T:?}:\n{}", self.printed()))
    }

    /// Asks `up` to stop (SIGTERM) and returns whether it stopped everything and exited cleanly.
    async fn stop(mut self) -> bool {
        signal(self.child.id().expect("still running"), "TERM");
        let status = tokio::time::timeout(T, self.child.wait()).await.expect("up stops within the grace period");
        status.expect("its exit status").success()
    }
}

impl Drop for Up {
    /// A failed test leaves no platform behind: `up` stops its services on SIGTERM.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        signal(pid, "TERM");
        // Waits for `up` to have stopped its services (at most T), then makes sure it is gone.
        let child = &mut self.child;
        let _ = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(tokio::time::timeout(T, child.wait()))
        });
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("----- mlops up printed -----\n{}", self.printed());
        }
    }
}

/// Appends each line of `from` to `lines`, prefixed with `prefix`.
fn collect(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    prefix: &'static str,
) {
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(from).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            lines.lock().unwrap().push(format!("{prefix}{line}"));
        }
    });
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name} {pid}");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn healthy(url: &str) -> bool {
    let http = client::http_client().expect("an HTTP client");
    http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_is_reported_and_answers_again_on_its_port_under_a_new_pid() {
    let up = Up::start(&[]).await;
    let (url, pid) = up.services["deployer"].clone();
    signal(pid, "KILL");

    let exited = up.wait_said("deployer", "exited", 1).await;
    assert_eq!(exited.field("pid"), pid.to_string());
    assert_eq!(exited.field("signal"), "9");
    let restarting = up.wait_said("deployer", "restarting", 1).await;
    assert_eq!((restarting.field("in"), restarting.field("restart")), ("1s", "1"), "the first delay");
    let started = up.wait_said("deployer", "started", 1).await;
    let new_pid: u32 = started.field("pid").parse().expect("a pid");
    assert_eq!(started.field("restart"), "1");
    assert_ne!(new_pid, pid);
    assert!(!alive(pid), "the killed process is gone (reaped)");
    // The same URL answers again, and only the new process can be answering it.
    assert!(wait_until(T, || async { healthy(&url).await.then_some(()) }).await.is_some(), "{url} does not answer");
    assert!(alive(new_pid));

    let others: Vec<Said> = up.said().into_iter().filter(|s| s.service != "deployer").collect();
    assert!(others.is_empty(), "only the deployer exited: {others:?}");
    assert!(up.stop().await, "up exits cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_crashing_in_a_loop_is_given_up_and_the_others_keep_running() {
    let up = Up::start(&["--max-restarts", "2"]).await;
    let (url, pid) = up.services["deployer"].clone();
    let addr = url.strip_prefix("http://").expect("plain HTTP").to_owned();
    signal(pid, "KILL");
    // Its port taken while it waits a second to restart: every restart fails to bind and exits.
    let squatter = wait_until(Duration::from_secs(5), || async { std::net::TcpListener::bind(&addr).ok() }).await;
    let _squatter = squatter.expect("the deployer's port is free once it is dead");

    let gave_up = up.wait_said("deployer", "gave_up", 1).await;
    assert_eq!(gave_up.field("exits"), "3", "more than --max-restarts 2");
    let exits: Vec<Said> = up.said().into_iter().filter(|s| s.service == "deployer" && s.event == "exited").collect();
    assert_eq!(exits.len(), 3, "{exits:?}");
    assert_eq!(exits[0].field("signal"), "9");
    for restarted in &exits[1..] {
        assert!(restarted.field("code") != "0", "a restart that cannot bind fails: {restarted:?}");
    }
    let started: Vec<u32> = up
        .said()
        .iter()
        .filter(|s| s.service == "deployer" && s.event == "started")
        .map(|s| s.field("pid").parse().expect("a pid"))
        .collect();
    assert_eq!(started.len(), 2, "two restarts");
    assert!(started.iter().all(|pid| !alive(*pid)), "no deployer is left running");

    // The others were never touched: same processes, still answering.
    for (name, (url, pid)) in up.services.iter().filter(|(name, _)| *name != "deployer") {
        assert!(alive(*pid), "{name} (pid {pid}) is running");
        assert!(healthy(url).await, "{name} answers at {url}");
    }
    let others: Vec<Said> = up.said().into_iter().filter(|s| s.service != "deployer").collect();
    assert!(others.is_empty(), "only the deployer exited: {others:?}");
    assert!(up.stop().await, "up exits cleanly on SIGTERM with a service given up");
}
