//! The shape every service binary shares: config → telemetry → signals → bind → `run` → flush.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A service's configuration: it knows where to listen.
pub trait ServiceConfig: clap::Parser + Send + 'static {
    /// The address of the service's HTTP (and gRPC) listener.
    fn listen(&self) -> SocketAddr;
}

/// Runs a service binary: parses `C` from flags and env (invalid config fails before anything
/// binds), installs telemetry, binds the listener, and runs `run` until SIGINT or SIGTERM.
pub fn main<C, F, Fut>(service: &'static str, run: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = C::parse();
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
