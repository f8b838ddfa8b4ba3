//! The prediction log, `mlops.predictions.<pipeline>`, which the monitor reads: requests offer
//! their sampled predictions to a bounded queue that never blocks them (what does not fit is
//! dropped and counted), and one task publishes the queue, retrying what the stream did not take.

use std::collections::HashMap;
use std::time::Duration;

use mlops_proto as pb;
use mlops_shared::bus::Bus;
use mlops_shared::events::EventContext;
use mlops_shared::table::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::models::Served;

/// The sending side of the prediction log queue.
#[derive(Clone)]
pub struct PredictionLog {
    tx: mpsc::Sender<pb::PredictionLogged>,
}

impl PredictionLog {
    /// A queue holding at most `capacity` logs.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<pb::PredictionLogged>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Queues the log of one prediction, or counts it as dropped when the queue is full.
    pub(crate) fn offer(&self, model: &Served, row: &[Value], score: f64, label: &str, id: &str) {
        let mut numeric = HashMap::new();
        let mut categorical = HashMap::new();
        for (f, v) in model.artifact.manifest().features.iter().zip(row) {
            match v {
                Value::Num(x) => {
                    numeric.insert(f.name.clone(), *x);
                }
                Value::Cat(c) => {
                    categorical.insert(f.name.clone(), c.clone());
                }
                Value::Missing => {}
            }
        }
        let log = pb::PredictionLogged {
            pipeline: model.pipeline.clone(),
            prediction_id: id.to_owned(),
            version: model.version,
            artifact_sha256: model.sha.to_string(),
            numeric,
            categorical,
            score,
            label: label.to_owned(),
            time_unix_ms: mlops_shared::now_unix_ms(),
        };
        if self.tx.try_send(log).is_err() {
            metrics::counter!("mlops_prediction_log_dropped_total").increment(1);
        }
    }
}

/// Publishes queued prediction logs until shutdown, then drains what is left. Up to `IN_FLIGHT`
/// logs are on their way at once, so the rate is not one round trip per log. A log the stream did
/// not take (no stream leader during a cluster election, a connection lost mid-ack) is sent again
/// with the same `Nats-Msg-Id`, so the stream keeps one copy, up to `ATTEMPTS` times over about
/// 16 s; only then is it counted as dropped.
pub(crate) async fn publish_logs(
    bus: Bus,
    mut rx: mpsc::Receiver<pb::PredictionLogged>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use std::future::Future;
    use std::pin::Pin;
    const IN_FLIGHT: usize = 1024;
    const ATTEMPTS: u32 = 8;
    type Sending<'a> = Pin<Box<dyn Future<Output = (pb::PredictionLogged, u32, Option<String>)> + Send + 'a>>;
    let ctx = EventContext::default();
    let (bus, ctx) = (&bus, &ctx);
    let send = |log: pb::PredictionLogged, attempt: u32| -> Sending<'_> {
        Box::pin(async move {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1).min(4))).await;
            }
            let error = match bus.publish_pipelined(&log.prediction_id, ctx, &log).await {
                Ok(ack) => ack.into_future().await.err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            (log, attempt, error)
        })
    };
    let mut sending = futures::stream::FuturesUnordered::new();
    let (mut open, mut closing) = (true, false);
    while open || !sending.is_empty() {
        tokio::select! {
            log = rx.recv(), if open && sending.len() < IN_FLIGHT => match log {
                Some(log) => sending.push(send(log, 0)),
                None => open = false,
            },
            Some((log, attempt, error)) = sending.next(), if !sending.is_empty() => {
                let Some(error) = error else { continue };
                if attempt + 1 < ATTEMPTS && !closing {
                    metrics::counter!("mlops_prediction_log_retried_total").increment(1);
                    sending.push(send(log, attempt + 1));
                } else {
                    metrics::counter!("mlops_prediction_log_dropped_total").increment(1);
                    warn!(%error, attempts = attempt + 1, "prediction log lost");
                }
            }
            // What is queued still goes out; nothing is retried any more.
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                rx.close();
            }
        }
    }
    Ok(())
}
