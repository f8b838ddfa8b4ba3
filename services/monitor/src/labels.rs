//! Delayed ground truth. Outside systems publish `labels.arrived` keyed by the prediction ids the
//! deployer answered with; the monitor joins each label to the prediction it kept for it (once,
//! however often the event is delivered), measures the serving version's quality on its newest
//! `monitoring.performance.window` labelled predictions, and publishes
//! `monitor.performance_degraded` when it falls under the spec's floor (or over its ceiling) —
//! once per cooldown, which the trainer takes as a retraining trigger.
//!
//! Only pipelines with `monitoring.performance` keep their predictions for labels; labels of
//! the others are counted (`mlops_labels_ignored_total`) and acknowledged. A label may overtake
//! its prediction (the prediction log is consumed separately, and after a crash the predictions
//! the dead monitor held come back only after their ack wait, 30 s), so an event naming ids not
//! yet seen is delivered again, at doubling intervals, for `MLOPS_LABEL_WAIT_SECS` in all; after
//! that, labels that still match nothing are counted in `mlops_labels_unmatched_total` (a sampled
//! log keeps only some predictions), and an event none of whose labels matched is dead-lettered
//! with the reason.

use std::time::Duration;

use mlops_proto as pb;
use mlops_shared::decision::{self, DEFAULT_THRESHOLD};
use mlops_shared::events::Envelope;
use mlops_shared::spec::{BUSINESS_VALUE, BusinessSpec, PipelineSpec, Task};
use tracing::{info, warn};

use crate::Monitor;
use crate::error::MonitorError;
use crate::store::{AlertKind, AlertRecord, FeedbackJoin, Labelled, PerformanceRecord};

/// Deliveries of a `labels.arrived` before unmatched labels are given up. (A durable consumer
/// keeps the `max_deliver` it was created with, so this stays what it has always been.)
pub const LABEL_ATTEMPTS: i64 = 5;

/// How long an event with unmatched labels waits before delivery `delivered + 1`: the doubling
/// share of `wait` (the whole time labels wait for their predictions) that ends with the last
/// attempt.
pub fn label_retry(wait: Duration, delivered: u64) -> Duration {
    let shares = (1u32 << (LABEL_ATTEMPTS - 1)) - 1; // 1 + 2 + 4 + 8
    wait / shares * (1u32 << delivered.clamp(1, LABEL_ATTEMPTS as u64 - 1).saturating_sub(1))
}
/// The mean value of the decisions served, by their labels: a decision kept before decisions
/// were is taken as the 0.5 rule that made it. Priced by amount (`business.amount`), each
/// decision's value is times its prediction's amount, and predictions kept without one (logged
/// before the spec named it) are left out.
fn realised_value(business: &BusinessSpec, kept: &Labelled) -> f64 {
    let decided: Vec<bool> =
        kept.positive.iter().zip(&kept.scores).map(|(d, s)| d.unwrap_or(*s >= DEFAULT_THRESHOLD)).collect();
    if business.amount.is_none() {
        return decision::mean_of(&business.value, decided.into_iter(), &kept.labels, None);
    }
    let priced: Vec<usize> =
        (0..kept.labels.len()).filter(|&i| kept.amounts.get(i).is_some_and(Option::is_some)).collect();
    let labels: Vec<f64> = priced.iter().map(|&i| kept.labels[i]).collect();
    let amounts: Vec<f64> = priced.iter().filter_map(|&i| kept.amounts[i]).collect();
    decision::mean_of(&business.value, priced.iter().map(|&i| decided[i]), &labels, Some(&amounts))
}

/// Unmatched ids named in a dead-letter reason.
const IDS_SHOWN: usize = 5;

impl Monitor {
    /// Joins one `labels.arrived` and re-measures the quality of the versions it labelled.
    pub(crate) async fn on_labels(&self, e: Envelope<pb::LabelsArrived>) -> Result<(), MonitorError> {
        let pipeline = e.payload.pipeline.clone();
        let Some(spec) = self.specs.get(&pipeline).await? else {
            return Err(MonitorError::BadLabels(format!("there is no pipeline `{pipeline}`")));
        };
        if spec.monitoring.performance.is_none() && spec.monitoring.feedback.is_none() {
            // Its predictions are not kept for labels; the labels may still serve a canary (the
            // deployer reads them too), so they are not bad input.
            metrics::counter!("mlops_labels_ignored_total", "pipeline" => pipeline.clone())
                .increment(e.payload.labels.len() as u64);
            info!(
                pipeline,
                "labels ignored: the pipeline has neither `monitoring.performance` nor `monitoring.feedback`"
            );
            return Ok(());
        }
        let feedback = spec
            .monitoring
            .feedback
            .as_ref()
            .map(|f| FeedbackJoin { max_age_ms: f.max_age_ms(), now_ms: mlops_shared::now_unix_ms() });
        let (labels, target, p) = (e.payload.labels.clone(), spec.target.clone(), pipeline.clone());
        let joined = self
            .commit(move |store| {
                let pairs = labels.iter().map(|l| (l.prediction_id.as_str(), l.label.as_str()));
                store.join_labels(&p, pairs, |label| target.read_label(label), feedback)
            })
            .await?;
        if joined.late > 0 {
            metrics::counter!("mlops_feedback_late_total", "pipeline" => pipeline.clone()).increment(joined.late);
            info!(
                pipeline,
                late = joined.late,
                "labels of predictions older than `monitoring.feedback.max_age_hours`: not used as feedback"
            );
        }
        // The rows are kept: a version not written now is written by the age check.
        if joined.feedback > 0
            && let Err(err) = self.write_feedback_if_due(&pipeline).await
        {
            warn!(pipeline, error = %err, "feedback version not written yet");
        }
        let matched: u64 = joined.versions.iter().map(|(_, n)| n).sum();
        metrics::counter!("mlops_labels_joined_total", "pipeline" => pipeline.clone()).increment(matched);
        for &(version, _) in &joined.versions {
            self.measure(&pipeline, version, &spec, &e).await?;
        }
        if !joined.unreadable.is_empty() {
            metrics::counter!("mlops_labels_unreadable_total", "pipeline" => pipeline.clone())
                .increment(joined.unreadable.len() as u64);
        }
        if joined.unknown.is_empty() && joined.unreadable.is_empty() {
            return Ok(());
        }
        if !joined.unknown.is_empty() && (e.delivered as i64) < LABEL_ATTEMPTS {
            // The predictions may not have been read from their stream yet; the labels matched
            // so far are kept and will not count twice.
            return Err(MonitorError::NotYet(label_retry(self.label_wait, e.delivered)));
        }
        metrics::counter!("mlops_labels_unmatched_total", "pipeline" => pipeline.clone())
            .increment(joined.unknown.len() as u64);
        if matched == 0 && joined.already == 0 {
            let mut why = Vec::new();
            if !joined.unknown.is_empty() {
                let shown: Vec<&str> = joined.unknown.iter().take(IDS_SHOWN).map(String::as_str).collect();
                why.push(format!(
                    "{} prediction id(s) match no logged prediction of `{pipeline}` (never logged, not sampled, or \
                     older than the retention): {}",
                    joined.unknown.len(),
                    shown.join(", ")
                ));
            }
            if let Some((id, label)) = joined.unreadable.first() {
                let expected = match spec.target.task {
                    Task::BinaryClassification => format!("`{}` or `{}`", spec.target.positive, spec.target.negative),
                    Task::Regression => "a number".to_owned(),
                };
                why.push(format!("{} label(s) are not {expected}, e.g. {label:?} for {id}", joined.unreadable.len()));
            }
            return Err(MonitorError::BadLabels(why.join("; ")));
        }
        warn!(
            pipeline,
            unknown = joined.unknown.len(),
            unreadable = joined.unreadable.len(),
            "some labels matched no logged prediction"
        );
        Ok(())
    }

    /// The quality of `version` on its newest labelled predictions; an alert when it breaks the
    /// spec's limit and `version` is the one serving.
    async fn measure(
        &self,
        pipeline: &str,
        version: u64,
        spec: &PipelineSpec,
        cause: &Envelope<pb::LabelsArrived>,
    ) -> Result<(), MonitorError> {
        let Some(perf) = &spec.monitoring.performance else { return Ok(()) };
        let kept = self.store.labelled(pipeline, version, perf.window as usize)?;
        let (ys, labelled) = (&kept.labels, kept.total);
        if ys.len() < perf.window as usize {
            return Ok(());
        }
        let mut metrics_now = mlops_shared::scoring::for_task(spec.target.task, ys, &kept.scores);
        if let Some(business) = &spec.business {
            let realised = realised_value(business, &kept);
            metrics::gauge!("mlops_business_value_realised", "pipeline" => pipeline.to_owned()).set(realised);
            metrics_now.insert(BUSINESS_VALUE.to_owned(), realised);
        }
        let Some(&value) = metrics_now.get(&perf.metric) else { return Ok(()) };
        let higher = perf.metric == BUSINESS_VALUE || spec.target.task.higher_is_better(&perf.metric).unwrap_or(true);
        let threshold = if higher { perf.min } else { perf.max }.unwrap_or(f64::NAN);
        let now = mlops_shared::now_unix_ms();
        metrics::gauge!("mlops_label_quality", "pipeline" => pipeline.to_owned(), "metric" => perf.metric.clone())
            .set(value);
        let record = PerformanceRecord {
            version,
            metric: perf.metric.clone(),
            value,
            labelled,
            threshold,
            higher_is_better: higher,
            at_unix_ms: now,
        };
        let (p, kept) = (pipeline.to_owned(), record.clone());
        self.commit(move |store| store.set_performance(&p, &kept)).await?;
        let degraded = if higher { value < threshold } else { value > threshold };
        // Labels of a version no longer serving say nothing about what to do now.
        let serving = self.pipelines.serving(pipeline).is_none_or(|v| v == version);
        if !degraded || !serving {
            return Ok(());
        }
        let cooling = self
            .store
            .last_alert(pipeline, AlertKind::Performance)?
            .is_some_and(|t| now - t < (spec.monitoring.cooldown_secs as i64) * 1000);
        if cooling {
            info!(pipeline, version, value, "quality still under the floor, inside the cooldown");
            return Ok(());
        }
        let seq = self.store.next_alert_seq(pipeline)?;
        let alert_id = format!("{pipeline}-v{version}-a{seq}");
        let event = pb::PerformanceDegraded {
            pipeline: pipeline.to_owned(),
            version,
            alert_id: alert_id.clone(),
            metric: perf.metric.clone(),
            value,
            floor: threshold,
        };
        // The id is derived from the alert's number, so a retry after a crash is dropped by the
        // server as a duplicate.
        self.bus.publish(&format!("degraded-{alert_id}"), &cause.follow(), &event).await?;
        let detail = format!(
            "{} {value:.4} on the newest {} labelled predictions, {} {threshold}",
            perf.metric,
            ys.len(),
            if higher { "under the floor" } else { "over the ceiling" }
        );
        warn!(pipeline, version, alert = %alert_id, %detail, "performance degraded");
        metrics::counter!("mlops_performance_alerts_total", "pipeline" => pipeline.to_owned()).increment(1);
        let alert = AlertRecord { alert_id, kind: AlertKind::Performance, version, time_unix_ms: now, detail };
        let p = pipeline.to_owned();
        self.commit(move |store| store.record_alert(&p, &alert)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realised_value_prices_the_decisions_served_not_the_scores() {
        let value = mlops_shared::spec::ValueMatrix { tp: 100.0, fp: -20.0, fn_: -100.0, tn: 0.0 };
        let business = BusinessSpec { value, amount: None };
        // A positive decision under 0.5 (a low threshold), a negative one over it, and a
        // prediction kept before decisions were, taken by the 0.5 rule.
        let kept = Labelled {
            labels: vec![1.0, 0.0, 1.0, 0.0],
            scores: vec![0.3, 0.6, 0.7, 0.2],
            positive: vec![Some(true), Some(false), None, Some(true)],
            amounts: vec![Some(2.0), Some(3.0), None, Some(0.5)],
            total: 4,
        };
        assert_eq!(realised_value(&business, &kept), (100.0 + 0.0 + 100.0 - 20.0) / 4.0);
        // Priced by amount: each decision times its amount, the one kept without an amount left out.
        let by_amount = BusinessSpec { value, amount: Some("charges".into()) };
        assert_eq!(realised_value(&by_amount, &kept), (200.0 + 0.0 - 10.0) / 3.0);
    }

    #[test]
    fn labels_wait_for_their_predictions_at_doubling_intervals_for_the_whole_wait() {
        let wait = Duration::from_secs(60);
        let delays: Vec<u64> = (1..LABEL_ATTEMPTS as u64).map(|d| label_retry(wait, d).as_secs()).collect();
        assert_eq!(delays, [4, 8, 16, 32]);
        assert_eq!(delays.iter().sum::<u64>(), 60);
    }
}
