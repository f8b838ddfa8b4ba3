//! The shape every service shares: the binary's config → telemetry → signals → bind → `run` →
//! flush ([`main`]), and inside `run` the start-up, readiness and shutdown ([`Service`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec, HandlerError};
use crate::events::{Envelope, Event};

/// A service's configuration: it knows where to listen.
pub trait ServiceConfig: clap::Parser + Send + 'static {
    /// The address of the service's HTTP (and gRPC) listener.
    fn listen(&self) -> SocketAddr;
}

/// Runs a service binary: parses `C` from flags and env (invalid config fails before anything
/// binds), installs telemetry, binds the listener, and runs `run` until SIGINT or SIGTERM. A
/// failure is one line on stderr, `SERVICE: error: ` and its causes, and exit status 1 — no
/// backtrace, whatever RUST_BACKTRACE says (a panic keeps its own).
pub fn main<C, F, Fut>(service: &'static str, run: F) -> std::process::ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = C::parse();
    match serve(service, config, run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// [`main`]'s work, its error for `main` to report.
fn serve<C, F, Fut>(service: &'static str, config: C, run: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let _telemetry = crate::telemetry::init(service)?;
        let shutdown = crate::shutdown::on_signals();
        let addr = config.listen();
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        // With port 0 the OS picks the port; a supervisor (tests, `mlops demo`) learns it here.
        if let Some(path) = std::env::var_os("MLOPS_ADDR_FILE") {
            let bound = listener.local_addr()?.to_string();
            let tmp = std::path::PathBuf::from(&path).with_extension("tmp");
            std::fs::write(&tmp, bound)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .context("writing MLOPS_ADDR_FILE")?;
        }
        tracing::info!(service, addr = %listener.local_addr()?, version = crate::CODE_VERSION, "starting");
        let result = run(config, listener, shutdown).await;
        if let Err(e) = &result {
            tracing::error!(error = format!("{e:#}"), "service failed");
        }
        result
    })
}

/// How long a stopping service waits for its consumers and tasks to finish what they hold. A
/// message still unfinished then is left unacknowledged, and so redelivered: nothing is lost.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// One service's life, the same for all seven: TLS settings checked, NATS connected and the
/// streams provisioned ([`Service::start`]); consumers and background tasks added; then
/// [`Service::serve`] answers HTTP and gRPC, is ready once every consumer is pulling, and on
/// shutdown drains within [`SHUTDOWN_GRACE`]. A consumer or task that fails stops the service
/// with its error.
pub struct Service {
    /// The service's connection to NATS.
    pub bus: Bus,
    name: &'static str,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    consumers: usize,
    started: (tokio::sync::mpsc::Sender<String>, tokio::sync::mpsc::Receiver<String>),
}

impl Service {
    /// Reads the TLS settings (a bad certificate fails the start before NATS is touched), then
    /// connects to NATS as `name`, provisions the streams and buckets, and settles where blobs live
    /// with the other processes ([`crate::objects::agreement`]).
    pub async fn start(
        name: &'static str,
        nats: &crate::config::NatsArgs,
        tls: &crate::tls::TlsArgs,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let tls = tls.server_config()?;
        // Checked against the record once, after provisioning, rather than also on connecting.
        let mut bus = Bus::connect_unchecked(nats, name, shutdown).await?;
        bus.provision(nats.replicas).await?;
        bus.agree_on_object_store(true).await?;
        Ok(Self {
            bus,
            name,
            tls,
            shutdown: shutdown.clone(),
            tasks: tokio::task::JoinSet::new(),
            consumers: 0,
            started: tokio::sync::mpsc::channel(64),
        })
    }

    /// A token that fires when the service stops, for tasks of its own.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// Consumes `spec`'s events, handing each with `state` to `handler` ([`Bus::consume`]); the
    /// service is not ready until this consumer pulls.
    pub fn consume<S, E, H, Fut>(&mut self, mut spec: ConsumerSpec, state: Arc<S>, handler: H)
    where
        S: Send + Sync + 'static,
        E: Event,
        H: Fn(Arc<S>, Envelope<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        spec.started = Some(self.started.0.clone());
        self.consumers += 1;
        let (bus, token) = (self.bus.clone(), self.shutdown.child_token());
        self.tasks.spawn(async move { bus.consume(spec, token, |e| handler(state.clone(), e)).await });
    }

    /// Consumes `spec`'s events in batches, handing each batch with `state` to `handler`
    /// ([`Bus::consume_batches`]); the service is not ready until this consumer pulls.
    pub fn consume_batches<S, E, H, Fut>(&mut self, mut spec: ConsumerSpec, state: Arc<S>, handler: H)
    where
        S: Send + Sync + 'static,
        E: Event,
        H: Fn(Arc<S>, Vec<Envelope<E>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<(usize, String)>, HandlerError>> + Send,
    {
        spec.started = Some(self.started.0.clone());
        self.consumers += 1;
        let (bus, token) = (self.bus.clone(), self.shutdown.child_token());
        self.tasks.spawn(async move { bus.consume_batches(spec, token, |batch| handler(state.clone(), batch)).await });
    }

    /// Runs a background task (a schedule, a watcher) until the service stops; it should end
    /// when [`Service::shutdown`]'s token fires.
    pub fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Serves `routes` (the service's gRPC and HTTP APIs, if any) beside `/healthz` and
    /// `/metrics` on `listener` until shutdown. `/healthz` answers 200 once every consumer pulls.
    /// Then waits, at most [`SHUTDOWN_GRACE`], for the consumers and tasks to finish.
    pub async fn serve(mut self, listener: TcpListener, routes: Option<axum::Router>) -> anyhow::Result<()> {
        let readiness = crate::http::Readiness::default();
        let app = crate::http::ops_router(readiness.clone()).merge(routes.unwrap_or_default());
        let mut http = tokio::spawn(crate::http::serve(listener, app, self.tls.take(), self.shutdown.clone()));
        let mut waiting = self.consumers;
        if waiting == 0 {
            readiness.set_ready();
        }
        loop {
            tokio::select! {
                served = &mut http => {
                    served??;
                    break;
                }
                Some(durable) = self.started.1.recv(), if waiting > 0 => {
                    tracing::debug!(durable, "consumer pulling");
                    waiting -= 1;
                    if waiting == 0 {
                        readiness.set_ready();
                        tracing::info!(service = self.name, "ready");
                    }
                }
                Some(ended) = self.tasks.join_next() => {
                    // A task ends early only when it fails (or the service is stopping).
                    if let Err(e) = ended.map_err(anyhow::Error::from).and_then(|r| r) {
                        self.shutdown.cancel();
                        return Err(e.context(format!("{} stopped", self.name)));
                    }
                }
            }
        }
        self.drain().await
    }

    /// Waits for the consumers and tasks, at most [`SHUTDOWN_GRACE`]; a failure among them is the
    /// service's.
    async fn drain(mut self) -> anyhow::Result<()> {
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(ended) = self.tasks.join_next().await {
                ended??;
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(service = self.name, grace = ?SHUTDOWN_GRACE, "work still running at the end of the grace period is left to redelivery");
                Ok(())
            }
        }
    }
}
