//! An outside subscriber: prints every promotion and rollback the platform announces, as the
//! CloudEvents they are (NATS binding: `ce-*` headers, protobuf payload).
//!
//!     cargo run -p mlops-cli --example promotions -- nats://127.0.0.1:4222
//!
//! A core NATS subscription keeps no state on the server; use a durable JetStream consumer on the
//! `MLOPS_EVENTS` stream instead to get the events published while the subscriber was down.

#![allow(clippy::print_stdout)] // it reports on stdout

use futures::StreamExt as _;
use mlops_proto as pb;
use prost::Message as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    // Stop after this many events (for scripts and tests); never by default.
    let max: usize = args.next().map_or(Ok(usize::MAX), |n| n.parse())?;
    let client = async_nats::connect(&url).await?;
    let promoted = client.subscribe("mlops.events.model.promoted.>").await?;
    let rolled_back = client.subscribe("mlops.events.model.rolled_back.>").await?;
    client.flush().await?;
    println!("listening on {url}");
    let mut events = futures::stream::select(promoted, rolled_back).take(max);
    while let Some(msg) = events.next().await {
        let header =
            |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string()).unwrap_or_default();
        let what = match header("ce-type").as_str() {
            "io.mlops.model.promoted.v1" => {
                let e = pb::ModelPromoted::decode(msg.payload.clone())?;
                format!("{} now serves v{} (was v{}): {}", e.pipeline, e.version, e.previous_version, e.reason)
            }
            "io.mlops.model.rolled_back.v1" => {
                let e = pb::ModelRolledBack::decode(msg.payload.clone())?;
                format!("{} rolled back from v{} to v{}: {}", e.pipeline, e.from_version, e.to_version, e.reason)
            }
            other => format!("{other} ({} bytes)", msg.payload.len()),
        };
        println!("{} {} {}: {what}", header("ce-time"), header("ce-type"), header("ce-id"));
    }
    Ok(())
}
