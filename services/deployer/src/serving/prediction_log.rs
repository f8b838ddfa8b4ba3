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

/// Publishes queued prediction logs until shutdown, then drains what is left. Each message takes
/// what the queue holds when it is sent (up to `max_batch`, one message per pipeline): under
/// load the queue fills while earlier messages are on their way, so messages grow with the load,
/// and at rest a log goes out alone at once. Up to `IN_FLIGHT` messages are on their way at once.
/// A message the stream did not take (no stream leader during a cluster election, a connection
/// lost mid-ack) is sent again with the same `Nats-Msg-Id`, so the stream keeps one copy, up to
/// `ATTEMPTS` times over about 16 s; only then are its logs counted as dropped.
pub(crate) async fn publish_logs(
    bus: Bus,
    mut rx: mpsc::Receiver<pb::PredictionLogged>,
    max_batch: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use std::future::Future;
    use std::pin::Pin;
    const IN_FLIGHT: usize = 64;
    const ATTEMPTS: u32 = 8;
    type Sending<'a> = Pin<Box<dyn Future<Output = (pb::PredictionLogBatch, u32, Option<String>)> + Send + 'a>>;
    let ctx = EventContext::default();
    let (bus, ctx) = (&bus, &ctx);
    let send = |batch: pb::PredictionLogBatch, attempt: u32| -> Sending<'_> {
        Box::pin(async move {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1).min(4))).await;
            }
            let error = match bus.publish_pipelined(&batch_id(&batch), ctx, &batch).await {
                Ok(ack) => ack.into_future().await.err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            (batch, attempt, error)
        })
    };
    let mut sending = futures::stream::FuturesUnordered::new();
    let (mut open, mut closing) = (true, false);
    let max_batch = max_batch.max(1);
    let mut queued = Vec::with_capacity(max_batch);
    while open || !sending.is_empty() {
        tokio::select! {
            n = rx.recv_many(&mut queued, max_batch), if open && sending.len() < IN_FLIGHT => {
                if n == 0 {
                    open = false;
                }
                for batch in by_pipeline(queued.drain(..)) {
                    sending.push(send(batch, 0));
                }
            }
            Some((batch, attempt, error)) = sending.next(), if !sending.is_empty() => {
                let Some(error) = error else { continue };
                if attempt + 1 < ATTEMPTS && !closing {
                    metrics::counter!("mlops_prediction_log_retried_total").increment(batch.predictions.len() as u64);
                    sending.push(send(batch, attempt + 1));
                } else {
                    metrics::counter!("mlops_prediction_log_dropped_total").increment(batch.predictions.len() as u64);
                    warn!(%error, attempts = attempt + 1, logs = batch.predictions.len(), "prediction logs lost");
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

/// `logs` as one batch per pipeline, each in the order the logs came.
fn by_pipeline(logs: impl Iterator<Item = pb::PredictionLogged>) -> Vec<pb::PredictionLogBatch> {
    let mut batches: Vec<pb::PredictionLogBatch> = Vec::new();
    for log in logs {
        match batches.iter_mut().find(|b| b.pipeline == log.pipeline) {
            Some(b) => b.predictions.push(log),
            None => batches.push(pb::PredictionLogBatch { pipeline: log.pipeline.clone(), predictions: vec![log] }),
        }
    }
    batches
}

/// A batch's message id: its first prediction's id (unique) and how many it holds, the same each
/// time the batch is sent.
fn batch_id(batch: &pb::PredictionLogBatch) -> String {
    let first = batch.predictions.first().map_or("", |p| p.prediction_id.as_str());
    format!("{first}+{}", batch.predictions.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(pipeline: &str, id: &str) -> pb::PredictionLogged {
        pb::PredictionLogged { pipeline: pipeline.into(), prediction_id: id.into(), ..Default::default() }
    }

    #[test]
    fn logs_are_batched_per_pipeline_in_order_with_a_stable_id() {
        let batches = by_pipeline([log("a", "1"), log("b", "2"), log("a", "3")].into_iter());
        let ids: Vec<Vec<&str>> =
            batches.iter().map(|b| b.predictions.iter().map(|p| p.prediction_id.as_str()).collect()).collect();
        assert_eq!(ids, [vec!["1", "3"], vec!["2"]]);
        assert_eq!((batches[0].pipeline.as_str(), batch_id(&batches[0])), ("a", "1+2".to_owned()));
        assert_eq!(batch_id(&batches[1]), "2+1");
    }
}
