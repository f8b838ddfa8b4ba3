//! Delayed ground truth during a release: every replica listens to `labels.arrived` and scores the
//! predictions it made in the release that the labels name, for both models (and for both answers
//! of a mirrored row), so the live comparison judges quality as soon as labels come.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use mlops_proto as pb;
use mlops_shared::events::{Event as _, headers};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Deployer;

/// Scores labels as they arrive, until `shutdown`. Best effort by design: a label for a prediction
/// another replica made, or made before the release, is not this replica's to count, and labels
/// published while a replica is disconnected are missed here. The monitor's durable consumer
/// keeps the record of every label.
pub async fn follow_labels(d: Arc<Deployer>, shutdown: CancellationToken) {
    let subject = format!("{}.>", pb::LabelsArrived::SUBJECT_PREFIX);
    loop {
        let mut sub = match d.bus.client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot subscribe to labels yet");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                () = shutdown.cancelled() => return,
            };
            let Some(msg) = msg else { break };
            let json = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::CONTENT_TYPE))
                .is_some_and(|ct| ct.as_str().starts_with(headers::JSON));
            match mlops_shared::bus::decode::<pb::LabelsArrived>(&msg.payload, json) {
                Ok(labels) => {
                    d.score_labels(&labels);
                }
                // The monitor dead-letters it with the reason; nothing to add here.
                Err(reason) => debug!(reason, "unreadable labels.arrived ignored"),
            }
        }
        warn!("labels subscription ended; subscribing again");
    }
}

impl Deployer {
    /// Counts the labels that name predictions this replica made in `labels.pipeline`'s running
    /// release; returns how many answers were scored.
    pub fn score_labels(&self, labels: &pb::LabelsArrived) -> usize {
        let Some(route) = self.models.route(&labels.pipeline) else { return 0 };
        let Some(release) = &route.release else { return 0 };
        let mut scored = 0;
        for label in &labels.labels {
            let Some(answers) = release.pending.take(&label.prediction_id) else { continue };
            for answer in answers {
                match answer.loss(&label.label) {
                    Some(loss) => {
                        answer.stats.record_label(loss);
                        scored += 1;
                    }
                    None => {
                        metrics::counter!("mlops_labels_unreadable_total", "pipeline" => labels.pipeline.clone())
                            .increment(1);
                        debug!(pipeline = %labels.pipeline, label = %label.label, "label is not one of the model's");
                    }
                }
            }
        }
        if scored > 0 {
            metrics::counter!("mlops_release_labels_total", "pipeline" => labels.pipeline.clone())
                .increment(scored as u64);
        }
        scored
    }
}
