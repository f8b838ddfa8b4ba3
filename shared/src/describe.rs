//! One-line descriptions of the platform's events, decoded by their subject: what `mlops events
//! tail`, the demo, the tests and the monitor's dashboard show of the cascade.

use mlops_proto as pb;

/// One decoded event.
#[derive(Debug, Clone)]
pub struct Seen {
    pub subject: String,
    /// `domain.fact`, e.g. `model.promoted`.
    pub kind: String,
    pub pipeline: String,
    /// A one-line description of the payload.
    pub summary: String,
    pub payload: Decoded,
}

/// The payloads the CLI looks into.
#[derive(Debug, Clone)]
pub enum Decoded {
    Ingested(pb::DataIngested),
    Validated(pb::DataValidated),
    Rejected(pb::DataRejected),
    Erased(pb::DataErased),
    Trained(pb::ModelTrained),
    TrainingFailed(pb::TrainingFailed),
    Registered(pb::ModelRegistered),
    Evaluated(pb::ModelEvaluated),
    Promoted(pb::ModelPromoted),
    RolledBack(pb::ModelRolledBack),
    Drift(pb::DriftDetected),
    Degraded(pb::PerformanceDegraded),
    Blocked(pb::ModelBlocked),
    Staleness(pb::StalenessReported),
    Canary(pb::CanaryStarted),
    Applied(pb::PipelineApplied),
    Materialised(pb::FeaturesMaterialised),
    Skew(pb::SkewDetected),
    BatchCompleted(pb::BatchCompleted),
    Other,
}

use crate::ids::short;

/// Decodes a message from `mlops.events.<domain>.<fact>.<pipeline>`.
pub fn decode(subject: &str, payload: &[u8]) -> Seen {
    let parts: Vec<&str> = subject.split('.').collect();
    let kind = parts.get(2..4).map(|p| p.join(".")).unwrap_or_default();
    let pipeline = parts.get(4).copied().unwrap_or_default().to_owned();
    let (summary, payload) = match kind.as_str() {
        "data.ingested" => described(payload, Decoded::Ingested, |e: &pb::DataIngested| {
            format!("dataset {} ({} bytes, {})", short(&e.dataset_id), e.size_bytes, e.source)
        }),
        "data.validated" => described(payload, Decoded::Validated, |e: &pb::DataValidated| {
            format!("dataset {} accepted, {} rows", short(&e.dataset_id), e.rows)
        }),
        "data.rejected" => described(payload, Decoded::Rejected, |e: &pb::DataRejected| {
            format!("dataset {} rejected: {}", short(&e.dataset_id), e.reason)
        }),
        "data.erased" => described(payload, Decoded::Erased, |e: &pb::DataErased| {
            let rows: u64 = e.versions.iter().map(|v| v.rows_removed).sum();
            format!(
                "{}: {rows} row(s) of subject {} in `{}` removed from {} version(s) ({})",
                e.erasure_id,
                short(&e.subject_hash),
                e.column,
                e.versions.len(),
                e.reason
            )
        }),
        "features.materialised" => described(payload, Decoded::Materialised, |e: &pb::FeaturesMaterialised| {
            format!(
                "dataset {}: {} rows offline, {} entities online ({} kept newer), lag {} ms",
                short(&e.dataset_id),
                e.rows,
                e.entities_written,
                e.entities_kept,
                e.lag_ms
            )
        }),
        "model.trained" => described(payload, Decoded::Trained, trained),
        "model.training_failed" => described(payload, Decoded::TrainingFailed, |e: &pb::TrainingFailed| {
            format!("job {} failed: {}", e.job_id, e.error)
        }),
        "model.registered" => described(payload, Decoded::Registered, |e: &pb::ModelRegistered| {
            format!("v{} is artifact {}", e.version, short(&e.artifact_sha256))
        }),
        "model.evaluated" => described(payload, Decoded::Evaluated, evaluated),
        "model.promoted" => described(payload, Decoded::Promoted, |e: &pb::ModelPromoted| {
            format!("v{} now serving (previous v{})", e.version, e.previous_version)
        }),
        "model.rolled_back" => described(payload, Decoded::RolledBack, |e: &pb::ModelRolledBack| {
            format!("v{} -> v{}: {}", e.from_version, e.to_version, e.reason)
        }),
        "model.blocked" => described(payload, Decoded::Blocked, |e: &pb::ModelBlocked| {
            let d = e.decision.clone().unwrap_or_default();
            format!("v{} blocked by {}: {}", e.version, d.by, d.reason)
        }),
        "deployment.canary_started" => described(payload, Decoded::Canary, |e: &pb::CanaryStarted| {
            format!("{} of v{} at {} % against v{}", e.mode, e.version, e.percent, e.champion_version)
        }),
        "model.staleness_reported" => described(payload, Decoded::Staleness, staleness),
        "batch.requested" => described(
            payload,
            |_| Decoded::Other,
            |e: &pb::BatchRequested| {
                format!("batch {}: dataset {} by v{}", e.batch_id, short(&e.dataset_id), e.version)
            },
        ),
        "batch.completed" => described(payload, Decoded::BatchCompleted, |e: &pb::BatchCompleted| {
            format!(
                "batch {}: {} rows of dataset {} scored by v{} in {:.1} s, output {}",
                e.batch_id,
                e.rows,
                short(&e.dataset_id),
                e.version,
                e.seconds,
                short(&e.output_sha256)
            )
        }),
        "pipeline.applied" => described(payload, Decoded::Applied, |e: &pb::PipelineApplied| {
            let commit = if e.commit.is_empty() { String::new() } else { format!(" from commit {}", short(&e.commit)) };
            let change = if e.model_changed { "the model changes" } else { "the model does not change" };
            format!("revision {}, spec {}{commit}: {change}", e.revision, short(&e.spec_hash))
        }),
        "monitor.drift_detected" => described(payload, Decoded::Drift, drift),
        "monitor.skew_detected" => described(payload, Decoded::Skew, |e: &pb::SkewDetected| {
            let skewed: Vec<String> =
                e.features.iter().filter(|f| f.drifted).map(|f| format!("{} {:.3}", f.feature, f.score)).collect();
            format!("v{} served values unlike the offline store's: {}", e.version, skewed.join(", "))
        }),
        "monitor.performance_degraded" => described(payload, Decoded::Degraded, |e: &pb::PerformanceDegraded| {
            format!(
                "v{} {} {:.3} on delayed labels, limit {} (alert {})",
                e.version, e.metric, e.value, e.floor, e.alert_id
            )
        }),
        _ => (format!("{} bytes", payload.len()), Decoded::Other),
    };
    Seen { subject: subject.to_owned(), kind, pipeline, summary, payload }
}

/// `payload` decoded as `E`, described by `describe` and kept as `wrap` makes it; a payload that
/// does not decode is described as such.
fn described<E: prost::Message + Default>(
    payload: &[u8],
    wrap: fn(E) -> Decoded,
    describe: impl FnOnce(&E) -> String,
) -> (String, Decoded) {
    match E::decode(payload) {
        Ok(e) => (describe(&e), wrap(e)),
        Err(e) => (format!("undecodable: {e}"), Decoded::Other),
    }
}

fn trained(e: &pb::ModelTrained) -> String {
    let (metric, value) = e
        .holdout_metrics
        .as_ref()
        .and_then(|m| crate::scoring::headline(|k| m.values.get(k).copied()))
        .unwrap_or(("metric", f64::NAN));
    let metric = if metric == "roc_auc" { "AUC" } else { metric };
    let decides = e
        .business
        .as_ref()
        .map(|b| format!(", decides at {:.3} (holdout value {:.2} per decision)", b.threshold, b.value))
        .unwrap_or_default();
    format!(
        "artifact {} by {} in {} ms, holdout {metric} {value:.3}{decides}",
        short(&e.artifact_sha256),
        e.trainer_id,
        e.training_millis
    )
}

fn evaluated(e: &pb::ModelEvaluated) -> String {
    let checks: Vec<String> =
        e.checks.iter().map(|c| format!("{} {}", if c.passed { "✓" } else { "✗" }, c.detail)).collect();
    format!("v{} {}: {}", e.version, if e.passed { "passed" } else { "FAILED" }, checks.join("; "))
}

fn staleness(e: &pb::StalenessReported) -> String {
    format!(
        "{} version(s) on dataset {}: retrain every {}{}",
        e.rows_by_age.len(),
        short(&e.dataset_id),
        age(e.recommended_cadence_secs),
        if e.cadence_is_lower_bound { " or less often" } else { "" }
    )
}

fn drift(e: &pb::DriftDetected) -> String {
    let worst: Vec<String> =
        e.features.iter().filter(|f| f.drifted).map(|f| format!("{} {} {:.3}", f.feature, f.method, f.score)).collect();
    format!("v{} drifted ({:.0}% of features: {})", e.version, e.drifted_share * 100.0, worst.join(", "))
}

/// A duration in seconds for people: `42s`, `3m 5s`, `2h 10m`, `4d 3h`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    /// Found by `just fuzz events`: an id holding a character that straddles its 12th byte.
    #[test]
    fn any_id_is_described_without_a_panic() {
        let e = mlops_proto::DataIngested { dataset_id: "Z 2 \u{63c}Z 2 }".into(), ..Default::default() };
        let seen = super::decode("mlops.events.data.ingested.x", &e.encode_to_vec());
        assert!(seen.summary.starts_with("dataset Z 2 \u{63c}Z 2 }"), "{}", seen.summary);
    }
}
