//! `mlops object-store`: where the platform on this NATS keeps its blobs, as its services agreed
//! (`mlops_shared::objects::agreement`), and recording a new store once the blobs are moved.

use anyhow::Context as _;
use clap::Args;
use mlops_shared::bus::Bus;
use mlops_shared::objects::agreement::IN_NATS;

/// The arguments of `mlops object-store`.
#[derive(Args)]
pub(crate) struct ObjectStoreArgs {
    /// Record STORE (an MLOPS_OBJECT_STORE value, or `nats` for NATS's own object store) as where
    /// blobs live, after the blobs were moved there and before the services restart with it.
    #[arg(long, value_name = "STORE")]
    set: Option<String>,
}

/// Prints the recorded store, or records `--set`'s once it answers.
pub(crate) async fn run(args: ObjectStoreArgs, nats: &mlops_shared::config::NatsArgs) -> anyhow::Result<()> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus = Bus::connect_unchecked(nats, "mlops-cli", &shutdown)
        .await
        .with_context(|| format!("connecting to {}", nats.url))?;
    let shown = |record: &str| if record == IN_NATS { "NATS's object store".to_owned() } else { record.to_owned() };
    match args.set {
        None => match bus.recorded_object_store().await? {
            Some(record) => mlops_cli::output::write(&format!("blobs live in {}\n", shown(&record))),
            None => anyhow::bail!("no store is recorded on {}: no service has started there yet", nats.url),
        },
        Some(store) => {
            let previous = bus.record_object_store(&store).await?;
            let record = bus.recorded_object_store().await?.unwrap_or_default();
            let was = previous.map_or_else(|| "nothing recorded".to_owned(), |p| shown(&p));
            let setting = if record == IN_NATS {
                "MLOPS_OBJECT_STORE unset".to_owned()
            } else {
                format!("MLOPS_OBJECT_STORE={record}")
            };
            mlops_cli::output::write(&format!(
                "blobs live in {} (was {was}); start every service with {setting}\n",
                shown(&record)
            ))
        }
    }
}
