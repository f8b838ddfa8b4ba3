//! `mlops events`: the bus as an outside subscriber sees it, each event decoded into one line
//! (a core NATS subscription, so no consumer state is left behind).

use anyhow::Context as _;
use clap::Subcommand;
use futures::StreamExt;
use mlops_cli::events;

/// The subcommands of `mlops events`.
#[derive(Subcommand)]
pub(crate) enum EventsCommand {
    /// Print events as they happen.
    Tail {
        /// Subject filter.
        #[arg(default_value = "mlops.events.>")]
        subject: String,
    },
}

/// Runs one `mlops events` subcommand; `tail` prints until Ctrl-C.
pub(crate) async fn run(command: EventsCommand, nats: &mlops_shared::config::NatsArgs) -> anyhow::Result<()> {
    let EventsCommand::Tail { subject } = command;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus = mlops_shared::bus::Bus::connect(nats, "mlops-cli", &shutdown)
        .await
        .with_context(|| format!("connecting to {}", nats.url))?;
    let mut sub = bus.client.subscribe(subject.clone()).await?;
    eprintln!("listening on {subject} (Ctrl-C to stop)");
    while let Some(msg) = sub.next().await {
        let seen = events::decode(&msg.subject, &msg.payload);
        let time = msg.headers.as_ref().and_then(|h| h.get("ce-time")).map(|v| v.to_string()).unwrap_or_default();
        // Not `println!`: a reader that stops (`| head`) ends the tail quietly, not in a panic.
        mlops_cli::output::write(&format!("{time} {:<24} {:<10} {}\n", seen.kind, seen.pipeline, seen.summary))?;
    }
    Ok(())
}
