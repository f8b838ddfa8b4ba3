//! The bus's failure path against a real nats-server: a handler whose failure never clears is
//! retried until `max_deliver`, then its message is dead-lettered with the reason, and the
//! messages behind it are handled as usual.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlops_cli::stack::NatsServer;
use mlops_integration_tests::{bus_at, wait_until};
use mlops_proto as pb;
use mlops_shared::bus::{ConsumerSpec, HandlerError};
use mlops_shared::events::EventContext;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_that_never_clear_are_dead_lettered_after_max_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path(), None).await.unwrap();
    let shutdown = CancellationToken::new();
    let bus = bus_at(&server.url).await;
    bus.provision(1).await.unwrap();

    // The dataset "down" always fails as if a dependency were unreachable; the others succeed.
    let attempts: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let spec = ConsumerSpec { max_deliver: 3, ..ConsumerSpec::events::<pb::DataValidated>("flaky") };
    let consumer = {
        let (bus, attempts, token) = (bus.clone(), attempts.clone(), shutdown.child_token());
        tokio::spawn(async move {
            bus.consume(spec, token, |e: mlops_shared::events::Envelope<pb::DataValidated>| {
                let attempts = attempts.clone();
                async move {
                    *attempts.lock().unwrap().entry(e.payload.dataset_id.clone()).or_default() += 1;
                    match e.payload.dataset_id.as_str() {
                        "down" => Err(HandlerError::Transient(anyhow::anyhow!("registry unreachable"))),
                        _ => Ok(()),
                    }
                }
            })
            .await
        })
    };
    for id in ["down", "fine"] {
        let event = pb::DataValidated { pipeline: "p".into(), dataset_id: id.into(), ..Default::default() };
        bus.publish(&format!("validated-{id}"), &EventContext::new_run(id), &event).await.unwrap();
    }

    let js = async_nats::jetstream::new(async_nats::connect(&server.url).await.unwrap());
    let dead = wait_until(T, || async {
        let stream = js.get_stream("MLOPS_DLQ").await.ok()?;
        let msg = stream.get_last_raw_message_by_subject("mlops.dlq.mlops.events.data.validated.p").await.ok()?;
        Some(msg)
    })
    .await
    .expect("the failing message reaches the dead-letter stream");
    let header = |name: &str| dead.headers.get(name).map(|v| v.to_string()).unwrap_or_default();
    assert_eq!(header("mlops-dlq-reason"), "gave up after 3 attempts: registry unreachable");
    assert_eq!(header("mlops-dlq-service"), "test");
    let payload: pb::DataValidated = prost::Message::decode(dead.payload.as_ref()).unwrap();
    assert_eq!(payload.dataset_id, "down");
    // Exactly max_deliver attempts, and the message behind it was handled once.
    let seen = attempts.lock().unwrap().clone();
    assert_eq!((seen.get("down"), seen.get("fine")), (Some(&3), Some(&1)), "{seen:?}");
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
}
