//! Production monitoring, served by the monitor: `mlops monitor report` (drift windows, quality on
//! delayed labels, alerts) and `mlops ui`, the address of its web dashboard.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mlops_cli::client::{self, Remote};
use mlops_cli::tables;

/// The arguments of `mlops ui`.
#[derive(Args)]
pub(crate) struct UiArgs {
    /// Open it in the desktop's browser (`xdg-open`).
    #[arg(long)]
    open: bool,
}

/// The subcommands of `mlops monitor`.
#[derive(Subcommand)]
pub(crate) enum MonitorCommand {
    /// The newest drift windows (each feature's test, score and verdict), the quality on delayed
    /// labels, and the alert history of PIPELINE.
    Report {
        pipeline: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// Prints the dashboard's address once it answers there, and opens it with `--open`.
pub(crate) async fn ui(args: UiArgs, monitor: &Remote) -> anyhow::Result<()> {
    let url = format!("{}/ui", monitor.url.trim_end_matches('/'));
    // Check it answers, so a wrong address is said now rather than in the browser.
    let answer = monitor.http_client()?.get(&url).send().await;
    match answer {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => anyhow::bail!("{url} answered {}: is --monitor-url the monitor?", r.status()),
        Err(e) => {
            anyhow::bail!("the dashboard at {url} does not answer ({e}); is the platform up (`mlops up`)?")
        }
    }
    println!("{url}");
    if args.open {
        std::process::Command::new("xdg-open")
            .arg(&url)
            .status()
            .context("opening a browser with xdg-open; open the address above by hand")?;
    }
    Ok(())
}

/// Runs one `mlops monitor` subcommand against the monitor.
pub(crate) async fn run(command: MonitorCommand, monitor: &Remote) -> anyhow::Result<()> {
    let MonitorCommand::Report { pipeline, json } = command;
    let report = client::monitor_report(monitor, &pipeline).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tables::monitor_report_json(&report))?);
    } else {
        print!("{}", tables::monitor_report(&report));
    }
    Ok(())
}
