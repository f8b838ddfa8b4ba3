//! `mlops up` and `mlops demo`: the whole platform on this machine, either kept running until
//! Ctrl-C or driven once through the bundled example. Both use the supervisor in `mlops_cli::stack`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use mlops_cli::demo;
use mlops_cli::stack::{Stack, StackOptions};
use mlops_cli::supervisor::RestartPolicy;

/// The arguments of `mlops up`.
#[derive(Args)]
pub(crate) struct UpArgs {
    /// Where services keep their data.
    #[arg(long, default_value = ".mlops")]
    data_dir: PathBuf,
    /// Let the OS choose free ports for the services (and for a nats-server started here) rather
    /// than the defaults, e.g. to run a second platform beside one; the addresses are printed.
    #[arg(long)]
    free_ports: bool,
    /// Restarts of one service allowed within --restart-window; one exit more is a crash loop and
    /// the service is left stopped (0: never restart).
    #[arg(long, default_value_t = RestartPolicy::default().max_restarts)]
    max_restarts: u32,
    /// The window, in seconds, over which --max-restarts counts a service's exits.
    #[arg(long, default_value_t = RestartPolicy::default().window.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    restart_window: u64,
}

/// The arguments of `mlops demo`.
#[derive(Args)]
pub(crate) struct DemoArgs {
    /// A CSV to use instead of the generated churn sample.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Leave the platform running afterwards (until Ctrl-C).
    #[arg(long)]
    keep_running: bool,
}

/// Starts nats-server (unless one answers at `nats_url`) and the services, restarts a service
/// that exits (printing `supervisor:` lines, see [`mlops_cli::supervisor`]), and stops them all on
/// Ctrl-C or SIGTERM. `tls_ca` is the CA the services' certificates are checked against, should
/// they serve TLS.
pub(crate) async fn up(args: UpArgs, nats_url: &str, tls_ca: Option<&Path>) -> anyhow::Result<()> {
    let UpArgs { data_dir, free_ports, max_restarts, restart_window } = args;
    let policy = RestartPolicy { max_restarts, window: Duration::from_secs(restart_window), ..Default::default() };
    let mut opts = StackOptions::beside_current_exe(data_dir.clone())?;
    opts.fixed_ports = !free_ports;
    opts.log_dir = Some(data_dir.join("logs"));
    if let Some(ca) = tls_ca {
        opts.set_tls_ca(ca)?;
    }
    if nats_answers(nats_url).await {
        println!("using the NATS server at {nats_url}");
        opts.nats_url = Some(nats_url.to_owned());
    } else {
        println!(
            "no NATS server at {nats_url}: starting nats-server with JetStream in {}",
            data_dir.join("nats").display()
        );
    }
    let mut stack = Stack::start(opts).await?;
    println!("platform up (logs in {}):", data_dir.join("logs").display());
    for s in &stack.services {
        println!("  {:<10} {:<24} pid {}", s.name, s.url(), s.pid().unwrap_or_default());
    }
    println!("  nats       {}", stack.nats_url);
    println!("  dashboard  {}/ui\nCtrl-C (or SIGTERM) stops everything.", stack.url("monitor"));
    let supervised = tokio::select! {
        () = mlops_shared::shutdown::wait_for_signal() => Ok(()),
        failed = stack.supervise(policy, |event| println!("{event}")) => failed,
    };
    println!("stopping…");
    stack.stop(Duration::from_secs(15)).await;
    supervised
}

/// Whether a NATS server accepts a connection at `url` within 2 s.
async fn nats_answers(url: &str) -> bool {
    let Ok(addrs) = mlops_shared::bus::server_addrs(url) else { return false };
    tokio::time::timeout(Duration::from_secs(2), async_nats::connect(addrs)).await.is_ok_and(|r| r.is_ok())
}

/// Runs the narrated demo in a fresh data directory, removed afterwards unless the platform is
/// kept running or the demo failed (so its logs can be read).
pub(crate) async fn demo(args: DemoArgs, tls_ca: Option<&Path>) -> anyhow::Result<()> {
    let DemoArgs { data, keep_running } = args;
    let dir = if keep_running {
        PathBuf::from(".mlops/demo")
    } else {
        std::env::temp_dir().join(format!("mlops-demo-{}", std::process::id()))
    };
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = demo::run(data, dir.clone(), keep_running, tls_ca).await;
    if !keep_running && outcome.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let outcome = outcome?;
    println!(
        "✔ demo finished: model v{} served {} ms after its data arrived",
        outcome.version,
        outcome.arrival_to_serving.as_millis()
    );
    Ok(())
}
