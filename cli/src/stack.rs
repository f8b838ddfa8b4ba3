//! Runs the platform as processes: a private nats-server (when none is given) and the seven
//! service binaries, each with its own listen port and data directory. `mlops up` and `mlops demo`
//! use it, and so do the end-to-end tests, which is why ports can be chosen by the OS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::client::Remote;
use crate::supervisor::{Decision, Event, Exit, RestartPolicy, Restarts};

/// The seven services, in start order (the registry first: others ask it at start-up).
pub const SERVICES: [&str; 7] = ["registry", "ingest", "validator", "trainer", "evaluator", "deployer", "monitor"];

/// A nats-server child process with JetStream on a private store directory.
pub struct NatsServer {
    child: Child,
    pub url: String,
    pub store_dir: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -js` storing in `dir`; `port` None lets the server pick one (`-p -1`)
    /// and reads it back from its ports file.
    pub async fn start(dir: &Path, port: Option<u16>) -> anyhow::Result<Self> {
        Self::start_with(dir, port, None, &[]).await
    }

    /// [`NatsServer::start`] with a configuration file (e.g. `deploy/nats/authorization.conf`),
    /// whose `$VARIABLES` come from `env`.
    pub async fn start_with(
        dir: &Path,
        port: Option<u16>,
        config: Option<&Path>,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        Self::start_binary(&nats_server_binary(), dir, port, config, env).await
    }

    /// [`NatsServer::start_with`] running the nats-server at `binary`.
    pub async fn start_binary(
        binary: &Path,
        dir: &Path,
        port: Option<u16>,
        config: Option<&Path>,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let store_dir = dir.join("jetstream");
        let ports_dir = dir.join("ports");
        std::fs::create_dir_all(&store_dir)?;
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)?;
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let mut cmd = Command::new(binary);
        if let Some(config) = config {
            cmd.arg("-c").arg(config);
        }
        // The server's own log goes beside its store, so that a start that fails can say why.
        let log_path = dir.join("nats-server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut child = cmd
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(&store_dir)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting nats-server: is it installed? (`just deps` installs Debian's nats-server package)")?;
        // A node restarted after a crash recovers its streams before it listens, which takes
        // seconds on a loaded machine.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(url) = read_ports_file(&ports_dir)? {
                return Ok(Self { child, url, store_dir });
            }
            if let Some(status) = child.try_wait()? {
                bail!("nats-server exited ({status}) before listening; its log ends:\n{}", log_tail(&log_path));
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not report its ports within {START_TIMEOUT:?}; its log ends:\n{}",
                    log_tail(&log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (as a crash would).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Asks the server to shut down (SIGTERM: it closes its clients and syncs its store) and
    /// waits up to `grace` before killing it.
    pub async fn terminate(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            sigterm(pid);
        }
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        self.kill().await;
    }
}

/// Asks process `pid` to stop (SIGTERM); whether it does is for the caller to wait for.
fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

/// The nats-server to run: `MLOPS_NATS_SERVER_BIN` when set (to try another release), else the
/// one on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    std::env::var_os("MLOPS_NATS_SERVER_BIN").map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

/// How long a nats-server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The last lines of the log at `path`, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn read_ports_file(dir: &Path) -> anyhow::Result<Option<String>> {
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = v["nats"][0].as_str()
        {
            return Ok(Some(url.to_owned()));
        }
    }
    Ok(None)
}

/// Refuses to run the platform's binaries in `bin_dir` (the seven services, and `mlops` when it is
/// there) when one is older than a source it was built from: a test or a demo would otherwise run
/// yesterday's code and report on it. The sources are those cargo lists in the dep-info file it
/// writes beside each binary it builds (`mlops-monitor.d`: every `.rs` of the workspace crates
/// compiled into it, and the `.proto` files its build script watches), so installed binaries,
/// which have none, are not checked.
pub fn check_fresh(bin_dir: &Path) -> anyhow::Result<()> {
    let binaries = SERVICES.iter().map(|s| format!("mlops-{s}")).chain(["mlops".to_owned(), "mlops-step".to_owned()]);
    for binary in binaries.map(|b| bin_dir.join(b)) {
        if let Some(source) = newer_source(&binary) {
            bail!(
                "{} is older than its source {}: rebuild the binaries with `cargo build --workspace --bins` \
                 (`just test` does)",
                binary.display(),
                source.display()
            );
        }
    }
    Ok(())
}

/// The newest source of `binary` when it changed after the binary was built; `None` when the
/// binary is current, missing, or has no dep-info file, or when none of its sources are found.
fn newer_source(binary: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let dep_info = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let (source, changed) = dep_info_sources(&dep_info)
        .into_iter()
        .filter_map(|p| Some((p.clone(), std::fs::metadata(&p).and_then(|m| m.modified()).ok()?)))
        .max_by_key(|(_, changed)| *changed)?;
    (changed > built).then_some(source)
}

/// The prerequisites of the first rule of a Makefile-style dep-info file (`target: a.rs b.rs`,
/// spaces in names escaped as `\ `).
fn dep_info_sources(dep_info: &str) -> Vec<PathBuf> {
    let Some((_, deps)) = dep_info.lines().next().and_then(|rule| rule.split_once(": ")) else { return vec![] };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => paths.extend((!current.is_empty()).then(|| PathBuf::from(std::mem::take(&mut current)))),
            c => current.push(c),
        }
    }
    paths.extend((!current.is_empty()).then(|| PathBuf::from(current)));
    paths
}

/// How to run the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the service binaries are (normally next to the `mlops` binary).
    pub bin_dir: PathBuf,
    /// Root of every service's data directory and of the private nats-server's store.
    pub data_dir: PathBuf,
    /// An existing NATS server; `None` starts a private one.
    pub nats_url: Option<String>,
    /// Fixed ports (`mlops up`) or OS-chosen ones (tests).
    pub fixed_ports: bool,
    /// Where each service's log goes; `None` inherits this process's stderr.
    pub log_dir: Option<PathBuf>,
    /// Extra environment for every service (RUST_LOG, OTEL_*, …).
    pub env: Vec<(String, String)>,
    /// Extra environment for one service only, by service name (e.g. its NATS user).
    pub service_env: BTreeMap<String, Vec<(String, String)>>,
    /// A configuration file for the private nats-server, and the environment it reads.
    pub nats_config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl StackOptions {
    /// Options for binaries next to the running executable.
    pub fn beside_current_exe(data_dir: PathBuf) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut bin_dir = exe.parent().context("executable has no directory")?.to_path_buf();
        // Test executables live in target/<profile>/deps; the binaries one level up.
        if bin_dir.ends_with("deps") {
            bin_dir.pop();
        }
        Ok(Self {
            bin_dir,
            data_dir,
            nats_url: None,
            fixed_ports: false,
            log_dir: None,
            env: vec![],
            service_env: BTreeMap::new(),
            nats_config: None,
        })
    }

    /// Has the services, and the stack's own calls to them, trust the PEM CA certificates in
    /// `ca` for `https://` URLs: it becomes every service's `MLOPS_TLS_CA`.
    pub fn set_tls_ca(&mut self, ca: &Path) -> anyhow::Result<()> {
        let ca = ca.to_str().with_context(|| format!("the TLS CA path {} is not UTF-8", ca.display()))?;
        self.env.push(("MLOPS_TLS_CA".into(), ca.to_owned()));
        Ok(())
    }
}

/// What the supervisor knows of one service.
struct Watch {
    restarts: Restarts,
    /// When its current process was started.
    started: Instant,
    phase: Phase,
}

/// Where a supervised service is.
#[derive(Clone, Copy)]
enum Phase {
    Running,
    /// Exited; to be started again at this time.
    RestartAt(Instant),
    /// Crashed in a loop: left stopped.
    GaveUp,
}

/// A running service process.
pub struct Service {
    pub name: String,
    pub addr: SocketAddr,
    scheme: &'static str,
    child: Child,
    /// Which binary it runs (`trainer` for a replica named `trainer-2`).
    service: String,
    /// The environment it was given beyond the stack's, so a restart gets it too.
    env: Vec<(String, String)>,
}

impl Service {
    /// `http://addr`, or `https://addr` when the services serve TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The platform as running processes.
pub struct Stack {
    pub opts: StackOptions,
    pub nats: Option<NatsServer>,
    pub nats_url: String,
    pub services: Vec<Service>,
    ports: BTreeMap<String, u16>,
}

fn default_port(service: &str) -> u16 {
    match service {
        "registry" => 50051,
        "ingest" => 50052,
        "deployer" => 8080,
        "validator" => 9101,
        "trainer" => 9102,
        "evaluator" => 9103,
        _ => 9104,
    }
}

impl Stack {
    /// Starts NATS (unless given) and the seven services, and waits until each answers `/healthz`.
    /// Binaries built in a checkout that are older than their sources are refused
    /// ([`check_fresh`]).
    pub async fn start(opts: StackOptions) -> anyhow::Result<Self> {
        check_fresh(&opts.bin_dir)?;
        std::fs::create_dir_all(&opts.data_dir)?;
        let nats = match &opts.nats_url {
            Some(_) => None,
            None => {
                let port = opts.fixed_ports.then_some(4222);
                let (config, env) = match &opts.nats_config {
                    Some((path, env)) => (Some(path.as_path()), env.as_slice()),
                    None => (None, &[][..]),
                };
                Some(NatsServer::start_with(&opts.data_dir.join("nats"), port, config, env).await?)
            }
        };
        let nats_url = opts.nats_url.clone().unwrap_or_else(|| nats.as_ref().expect("started above").url.clone());
        let mut stack = Self { opts, nats, nats_url, services: vec![], ports: BTreeMap::new() };
        for s in SERVICES {
            stack.spawn(s, s, &[]).await?;
        }
        stack.wait_healthy(Duration::from_secs(60)).await?;
        Ok(stack)
    }

    /// The base URL of `service` (its first instance).
    pub fn url(&self, service: &str) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.ports[service])
    }

    /// Where `service` (its first instance) answers, with the CA its certificate is checked
    /// against ([`Stack::tls_ca`]).
    pub fn remote(&self, service: &str) -> Remote {
        Remote::new(self.url(service), self.tls_ca())
    }

    /// `https` when the services are given a certificate (`MLOPS_TLS_CERT` in the stack's or this
    /// process's environment), else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.setting("MLOPS_TLS_CERT").is_some() { "https" } else { "http" }
    }

    /// The CA file the services' certificates are checked against when they serve TLS: the
    /// `MLOPS_TLS_CA` they are given (from the stack's or this process's environment, as they read
    /// it). `None` when they serve plain HTTP or no CA is set.
    pub fn tls_ca(&self) -> Option<PathBuf> {
        if self.scheme() != "https" {
            return None;
        }
        self.setting("MLOPS_TLS_CA").map(PathBuf::from)
    }

    /// The value of `key` in every service's environment: the stack's own setting when it has
    /// one (the last wins), else this process's; an empty value counts as unset.
    fn setting(&self, key: &str) -> Option<String> {
        let value = match self.opts.env.iter().rev().find(|(k, _)| k == key) {
            Some((_, v)) => Some(v.clone()),
            None => std::env::var(key).ok(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The process id of the process named `name`.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.services.iter().find(|s| s.name == name).and_then(Service::pid)
    }

    /// The URL of the process named `name` (e.g. a second replica).
    pub fn url_of(&self, name: &str) -> Option<String> {
        self.services.iter().find(|s| s.name == name).map(Service::url)
    }

    /// Starts one more process of `service` named `name` (e.g. a second trainer), with `env` added.
    pub async fn spawn(&mut self, service: &str, name: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
        // Fixed ports for the first instance under `mlops up`; otherwise the service binds port 0
        // and writes the address it got, so parallel stacks never race for a port.
        let first = !self.services.iter().any(|s| s.name == service);
        let port = if self.opts.fixed_ports && first && name == service { default_port(service) } else { 0 };
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let addr_file = self.opts.data_dir.join(name).join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut command = self.command(service, name, ([127, 0, 0, 1], port).into(), &env)?;
        let mut child = command.spawn().with_context(|| format!("starting {name}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(a) = text.trim().parse()
            {
                break a;
            }
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited during start-up ({status}){}", self.log_hint_for(name));
            }
            if Instant::now() > deadline {
                bail!("{name} did not bind its listener within 30 s{}", self.log_hint_for(name));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if first {
            self.ports.insert(service.to_owned(), addr.port());
        }
        let scheme = self.scheme();
        self.services.push(Service { name: name.to_owned(), addr, scheme, child, service: service.to_owned(), env });
        Ok(())
    }

    /// Starts the process of `self.services[i]` again on the address it had, without waiting for
    /// it to answer; returns its process id.
    fn respawn(&mut self, i: usize) -> anyhow::Result<u32> {
        let s = &self.services[i];
        let mut command = self.command(&s.service, &s.name, s.addr, &s.env)?;
        let child = command.spawn().with_context(|| format!("starting {}", s.name))?;
        let pid = child.id().context("a process just spawned has an id")?;
        self.services[i].child = child;
        Ok(pid)
    }

    /// The command that runs `service` as `name` listening on `addr`, with the stack's
    /// environment and `env`, its output appended to its log (when the stack keeps logs).
    fn command(
        &self,
        service: &str,
        name: &str,
        addr: SocketAddr,
        env: &[(String, String)],
    ) -> anyhow::Result<Command> {
        let bin = self.opts.bin_dir.join(format!("mlops-{service}"));
        if !bin.exists() {
            bail!("{} is missing: build the services first (`cargo build --workspace --bins`)", bin.display());
        }
        let data = self.opts.data_dir.join(name);
        std::fs::create_dir_all(&data)?;
        let registry_url = if service == "registry" { String::new() } else { self.url("registry") };
        let mut cmd = Command::new(&bin);
        cmd.env("MLOPS_NATS_URL", &self.nats_url)
            .env("MLOPS_LISTEN", addr.to_string())
            .env("MLOPS_ADDR_FILE", data.join("addr"))
            .env("MLOPS_DATA_DIR", &data)
            .env("MLOPS_REGISTRY_URL", registry_url)
            .env("MLOPS_TRAINER_ID", name)
            .envs(self.opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(self.opts.service_env.get(service).into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.opts.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let log =
                    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{name}.log")))?;
                cmd.stdout(log.try_clone()?).stderr(log);
            }
            None => {
                cmd.stdout(Stdio::null());
            }
        }
        Ok(cmd)
    }

    /// Waits until every service answers `/healthz` with 200.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let ca = self.tls_ca();
        let client = crate::client::http_client_builder(ca.as_deref())?.timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + timeout;
        for i in 0..self.services.len() {
            loop {
                if let Some(status) = self.services[i].child.try_wait()? {
                    bail!("{} exited during start-up ({status}){}", self.services[i].name, self.log_hint(i));
                }
                let url = format!("{}/healthz", self.services[i].url());
                let ok = client.get(url).send().await.is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{} did not become healthy within {timeout:?}{}", self.services[i].name, self.log_hint(i));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn log_hint(&self, i: usize) -> String {
        self.log_hint_for(&self.services[i].name)
    }

    fn log_hint_for(&self, name: &str) -> String {
        match &self.opts.log_dir {
            Some(dir) => format!("; see {}", dir.join(format!("{name}.log")).display()),
            None => String::new(),
        }
    }

    /// Asks the process named `name` to stop (SIGTERM), waits up to `grace` before killing it,
    /// and forgets it. Returns whether it exited cleanly in time.
    pub async fn terminate(&mut self, name: &str, grace: Duration) -> anyhow::Result<bool> {
        let i =
            self.services.iter().position(|s| s.name == name).with_context(|| format!("no service named {name}"))?;
        let mut s = self.services.remove(i);
        if let Some(pid) = s.child.id() {
            sigterm(pid);
        }
        match tokio::time::timeout(grace, s.child.wait()).await {
            Ok(Ok(status)) => Ok(status.success()),
            _ => {
                s.child.kill().await?;
                Ok(false)
            }
        }
    }

    /// Kills the process named `name` with SIGKILL, as a crash would, and forgets it.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i =
            self.services.iter().position(|s| s.name == name).with_context(|| format!("no service named {name}"))?;
        let mut s = self.services.remove(i);
        s.child.kill().await?;
        Ok(())
    }

    /// Watches every service and restarts one that exits, as `policy` says, on the address it
    /// had; reports each exit, restart and crash loop given up to `report`. Runs until dropped
    /// (e.g. on a shutdown signal) and returns only on an error reading a process's state.
    pub async fn supervise(&mut self, policy: RestartPolicy, mut report: impl FnMut(Event)) -> anyhow::Result<()> {
        let now = Instant::now();
        let mut watches: Vec<Watch> = self
            .services
            .iter()
            .map(|_| Watch { restarts: Restarts::new(policy), started: now, phase: Phase::Running })
            .collect();
        loop {
            for (i, watch) in watches.iter_mut().enumerate() {
                self.watch(i, watch, policy.window, &mut report)?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One look at service `i`: an exit is reported and decided on, a restart that is due done.
    fn watch(
        &mut self,
        i: usize,
        w: &mut Watch,
        window: Duration,
        report: &mut impl FnMut(Event),
    ) -> anyhow::Result<()> {
        let now = Instant::now();
        let name = self.services[i].name.clone();
        match w.phase {
            Phase::Running => {
                let pid = self.services[i].child.id();
                let Some(status) = self.services[i].child.try_wait()? else { return Ok(()) };
                let uptime = now.saturating_duration_since(w.started);
                report(Event::Exited { service: name.clone(), pid, exit: Exit::of(status), uptime });
            }
            Phase::RestartAt(at) if at <= now => {
                let restart = w.restarts.total();
                match self.respawn(i) {
                    Ok(pid) => {
                        report(Event::Started { service: name, pid, restart });
                        (w.started, w.phase) = (now, Phase::Running);
                        return Ok(());
                    }
                    Err(e) => {
                        report(Event::SpawnFailed { service: name.clone(), restart, error: format!("{e:#}") });
                        // It never ran: no uptime to reset the delay with.
                        w.started = now;
                    }
                }
            }
            Phase::RestartAt(_) | Phase::GaveUp => return Ok(()),
        }
        w.phase = match w.restarts.on_exit(w.started, now) {
            Decision::Restart { after, restart } => {
                report(Event::Restarting { service: name, after, restart });
                Phase::RestartAt(now + after)
            }
            Decision::GiveUp { exits } => {
                let log = self.opts.log_dir.as_ref().map(|dir| dir.join(format!("{name}.log")));
                report(Event::GaveUp { service: name, exits, window, log });
                Phase::GaveUp
            }
        };
        Ok(())
    }

    /// Asks every service to stop (SIGTERM) and waits up to `grace` before killing what is left.
    /// Returns each service's name and whether it exited cleanly (status 0) within the grace period.
    pub async fn stop(&mut self, grace: Duration) -> Vec<(String, bool)> {
        for s in &self.services {
            if let Some(pid) = s.child.id() {
                sigterm(pid);
            }
        }
        let deadline = Instant::now() + grace;
        let mut clean = Vec::with_capacity(self.services.len());
        for s in &mut self.services {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.child.wait()).await {
                Ok(Ok(status)) => clean.push((s.name.clone(), status.success())),
                _ => {
                    let _ = s.child.kill().await;
                    clean.push((s.name.clone(), false));
                }
            }
        }
        self.services.clear();
        if let Some(n) = &mut self.nats {
            n.terminate(Duration::from_secs(5)).await;
        }
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack that was never started, with `env` for its services and the registry on 50051.
    fn stack(env: &[(&str, &str)]) -> Stack {
        let mut opts = StackOptions::beside_current_exe(PathBuf::from("/nonexistent")).expect("the test's own path");
        opts.env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let ports = BTreeMap::from([("registry".to_owned(), 50051)]);
        Stack { opts, nats: None, nats_url: String::new(), services: vec![], ports }
    }

    #[test]
    fn a_tls_stack_hands_out_its_ca_with_each_remote() {
        let tls = stack(&[("MLOPS_TLS_CERT", "cert.pem"), ("MLOPS_TLS_CA", "ca.pem")]);
        assert_eq!(tls.remote("registry"), Remote::new("https://127.0.0.1:50051", Some("ca.pem".into())));
        // The stack's own empty setting wins over whatever this process inherited.
        let plain = stack(&[("MLOPS_TLS_CERT", ""), ("MLOPS_TLS_CA", "ca.pem")]);
        assert_eq!(plain.remote("registry"), Remote::new("http://127.0.0.1:50051", None));
        let mut opts = tls.opts.clone();
        opts.set_tls_ca(Path::new("other.pem")).expect("a UTF-8 path");
        let later = Stack { opts, ..stack(&[]) };
        assert_eq!(later.tls_ca(), Some(PathBuf::from("other.pem")), "the last setting wins");
    }

    #[test]
    fn a_binary_older_than_a_source_it_was_built_from_is_refused() {
        use std::time::SystemTime;
        // No temp-dir crate here: a directory of our own, removed when the test ends.
        struct Dir(PathBuf);
        impl Dir {
            fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = Dir(std::env::temp_dir().join(format!("mlops-stale-check-{}", std::process::id())));
        let touch = |path: &Path, at: SystemTime| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::File::create(path).unwrap().set_modified(at).unwrap();
        };
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
        let (lib, spaced) = (dir.path().join("shared/src/lib.rs"), dir.path().join("my proto/a.proto"));
        let bin_dir = dir.path().join("target/debug");
        let trainer = bin_dir.join("mlops-trainer");
        touch(&lib, at(0));
        touch(&spaced, at(0));
        touch(&trainer, at(10));
        // A binary with no dep-info (installed, or built elsewhere) is not checked.
        assert_eq!(newer_source(&trainer), None);
        assert!(check_fresh(&bin_dir).is_ok());

        let escaped = spaced.display().to_string().replace(' ', "\\ ");
        let dep_info = format!("{}: {} {escaped}\n\n{}:\n", trainer.display(), lib.display(), lib.display());
        std::fs::write(trainer.with_extension("d"), dep_info).unwrap();
        assert_eq!(
            dep_info_sources(&std::fs::read_to_string(trainer.with_extension("d")).unwrap()),
            [lib.clone(), spaced.clone()]
        );
        assert_eq!(newer_source(&trainer), None, "built after its sources");

        // A source changed after the build: the newest one is named, with the command that helps.
        touch(&lib, at(20));
        touch(&spaced, at(30));
        assert_eq!(newer_source(&trainer), Some(spaced.clone()));
        let refused = check_fresh(&bin_dir).unwrap_err().to_string();
        assert!(refused.contains(&trainer.display().to_string()), "{refused}");
        assert!(refused.contains(&spaced.display().to_string()), "{refused}");
        assert!(refused.contains("cargo build --workspace --bins"), "{refused}");

        // Rebuilt: current again. Sources that are gone (a checkout moved away) count for nothing.
        touch(&trainer, at(40));
        assert!(check_fresh(&bin_dir).is_ok());
        std::fs::remove_dir_all(dir.path().join("shared")).unwrap();
        std::fs::remove_dir_all(dir.path().join("my proto")).unwrap();
        touch(&trainer, at(0));
        assert_eq!(newer_source(&trainer), None);
    }
}
