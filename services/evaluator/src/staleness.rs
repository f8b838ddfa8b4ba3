//! How quality falls with a model's age: the last production versions of a pipeline, scored on
//! the newest validated data, and the retraining cadence that keeps the loss within tolerance.
//! `mlops staleness` asks for it over gRPC (`mlops.v1.Evaluator/Staleness`); the evaluator also
//! runs it on the spec's schedule, publishing `model.staleness_reported`.

use mlops_proto as pb;
use mlops_shared::bus::off_runtime;

use crate::error::EvaluatorError;
use mlops_shared::events::EventContext;
use mlops_shared::model::{Model, holdout_split};
use mlops_shared::runs::kv_key;
use mlops_shared::spec::PipelineSpec;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Evaluator;

/// One version's point: (version, age in seconds, metric value).
pub type Point = (u64, f64, f64);

/// The rows of the report, youngest first, and the recommended cadence: the largest age such
/// that every version at most that old loses no more than `tolerance` against the youngest.
/// The cadence is a lower bound when no version lost more.
pub fn table(higher_is_better: bool, tolerance: f64, mut points: Vec<Point>) -> (Vec<pb::StalenessRow>, f64, bool) {
    points.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    let Some(&(_, _, reference)) = points.first() else { return (Vec::new(), 0.0, false) };
    let mut cadence = 0.0;
    let mut all_within = true;
    let rows = points
        .into_iter()
        .map(|(version, age_secs, value)| {
            let worse = if higher_is_better { reference - value } else { value - reference };
            let loss = if reference == 0.0 { worse.max(0.0) } else { worse / reference.abs() };
            let within = loss <= tolerance;
            if within && all_within {
                cadence = age_secs;
            }
            all_within &= within;
            pb::StalenessRow { version, age_secs, value, loss, within_tolerance: within }
        })
        .collect();
    (rows, cadence, all_within)
}

/// One version compared: its number, when it was registered, its artifact, and, when its window
/// holds the newest dataset, that dataset's place in the window and the window's bytes.
type Compared = (u64, i64, std::sync::Arc<dyn Model>, Option<(usize, Vec<(String, Vec<u8>)>)>);

/// Scores each compared version on the rows of the newest dataset (`newest`, accepted at
/// `newest_ms`) that none of them trained on: how many rows, and each version's point.
fn score_by_age(
    spec: &PipelineSpec,
    metric: &str,
    newest: &[(String, Vec<u8>)],
    newest_ms: i64,
    history: &[mlops_shared::spec::Accepted],
    compared: Vec<Compared>,
) -> Result<(u64, Vec<Point>), EvaluatorError> {
    let unreadable = |e: mlops_data::DatasetError| EvaluatorError::BadData(e.to_string());
    let frame = mlops_data::read_datasets(spec, newest).map_err(unreadable)?;
    // Only rows no compared version trained on: a version that trained on this dataset saw all
    // of it but its holdout.
    let mut unseen = vec![true; frame.rows];
    for (_, _, artifact, window) in &compared {
        let Some((k, blobs)) = window else { continue };
        // Counted under the version's own features: an older window may lack a column added since.
        let own = PipelineSpec { features: artifact.manifest().features.clone(), ..spec.clone() };
        let (_, counts) = mlops_data::read_datasets_counted(&own, blobs).map_err(unreadable)?;
        let (_, holdout) =
            holdout_split(counts.iter().sum(), artifact.manifest().holdout_share, artifact.manifest().seed);
        let mut in_holdout = vec![false; frame.rows];
        for r in crate::measure::dataset_rows_in_holdout(&holdout, &counts, *k) {
            in_holdout[r] = true;
        }
        for (u, h) in unseen.iter_mut().zip(in_holdout) {
            *u &= h;
        }
    }
    let rows: Vec<usize> = (0..frame.rows).filter(|&r| unseen[r]).collect();
    if rows.is_empty() {
        let (id, n) = (newest.first().map_or("", |(id, _)| id.as_str()), compared.len());
        return Err(unanswerable(format!("no row of the newest dataset {id} is unseen by all {n} versions compared")));
    }
    let eval = frame.take(&rows);
    let labels = eval.target.clone().unwrap_or_default();
    let accepted = |id: &String| history.iter().find(|a| a.id == *id).map(|a| a.arrived_ms);
    let points = compared
        .iter()
        .map(|(version, created_unix_ms, artifact, _)| {
            let at = crate::judge::Rows { spec, datasets: newest, frame: &frame, at: &rows, taken: &eval };
            let scores = at.scores(artifact)?;
            let value = mlops_shared::scoring::for_task(spec.target.task, &labels, &scores)
                .get(metric)
                .copied()
                .unwrap_or(f64::NAN);
            // Its age: from the newest data it trained on to the newest data there is.
            let trained = artifact.manifest().dataset_ids.iter().filter_map(accepted).max().unwrap_or(*created_unix_ms);
            Ok((*version, (newest_ms - trained).max(0) as f64 / 1000.0, value))
        })
        .collect::<Result<_, EvaluatorError>>()?;
    Ok((rows.len() as u64, points))
}

fn unanswerable(msg: String) -> EvaluatorError {
    EvaluatorError::Unanswerable(msg)
}

/// `mlops.v1.Evaluator`: the staleness report on request, as `mlops staleness` asks for it.
pub struct Api(pub std::sync::Arc<Evaluator>);

#[tonic::async_trait]
impl pb::evaluator_server::Evaluator for Api {
    async fn staleness(
        &self,
        req: tonic::Request<pb::StalenessRequest>,
    ) -> Result<tonic::Response<pb::StalenessReported>, tonic::Status> {
        Ok(tonic::Response::new(self.0.staleness(&req.into_inner()).await?))
    }
}

impl Evaluator {
    /// Scores the last production versions of a pipeline on the rows of its newest validated
    /// dataset that none of them trained on; the spec's `evaluation.staleness` fills what the
    /// request leaves out.
    pub async fn staleness(&self, req: &pb::StalenessRequest) -> Result<pb::StalenessReported, EvaluatorError> {
        let p = req.pipeline.as_str();
        let spec = self.specs.get(p).await?.ok_or_else(|| EvaluatorError::UnknownPipeline(p.to_owned()))?;
        let st = &spec.evaluation.staleness;
        let (keep, tolerance) = (req.versions.unwrap_or(st.versions), req.tolerance.unwrap_or(st.tolerance));
        if keep < 1 || !(tolerance > 0.0 && tolerance < 1.0) {
            return Err(unanswerable("versions must be at least 1 and tolerance in (0, 1)".into()));
        }
        let task = spec.target.task;
        let metric = st.metric.clone().unwrap_or_else(|| task.default_metric().to_owned());
        let higher = task.higher_is_better(&metric).unwrap_or(true);
        let history = self.runs.history(p).await?;
        let Some(mlops_shared::spec::Accepted { id: newest_id, arrived_ms: newest_ms, .. }) = history.last().cloned()
        else {
            return Err(unanswerable(format!("pipeline `{p}` has no validated training data yet")));
        };
        let listed = self
            .registry
            .clone()
            .list_model_versions(mlops_shared::telemetry::traced(pb::ListModelVersionsRequest {
                pipeline: p.into(),
                ..Default::default()
            }))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound | tonic::Code::InvalidArgument => unanswerable(s.message().to_owned()),
                _ => EvaluatorError::Registry(s.message().to_owned()),
            })?
            .into_inner()
            .versions;
        let mut versions: Vec<pb::ModelVersion> = listed.into_iter().filter(|v| v.promoted_unix_ms > 0).collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.promoted_unix_ms));
        versions.truncate(keep as usize);
        if versions.is_empty() {
            return Err(unanswerable(format!("pipeline `{p}` has had no production version yet")));
        }

        let (spec, looked) = self.looked_up(spec).await?;
        let newest = self.datasets_joined(&looked, std::slice::from_ref(&newest_id)).await?;
        // Each version's artifact, and its window when that holds the newest dataset.
        let mut compared = Vec::with_capacity(versions.len());
        for v in &versions {
            let artifact = self.load(&v.artifact_sha256).await?;
            let ids = &artifact.manifest().dataset_ids;
            let window = match ids.iter().position(|d| *d == newest_id) {
                Some(k) => Some((k, self.datasets_joined(&looked, ids).await?)),
                None => None,
            };
            compared.push((v.version, v.created_unix_ms, artifact, window));
        }
        let (spec, scored_metric) = (spec.clone(), metric.clone());
        let (rows, points) =
            off_runtime(move || score_by_age(&spec, &scored_metric, &newest, newest_ms, &history, compared)).await?;
        let (rows_by_age, cadence, lower_bound) = table(higher, tolerance, points);
        Ok(pb::StalenessReported {
            pipeline: p.into(),
            dataset_id: newest_id,
            rows,
            metric,
            tolerance,
            rows_by_age,
            recommended_cadence_secs: cadence,
            cadence_is_lower_bound: lower_bound,
            time_unix_ms: mlops_shared::now_unix_ms(),
        })
    }

    /// Runs each pipeline's `evaluation.staleness.schedule` until `shutdown`, publishing every
    /// report as `model.staleness_reported` (once per slot, whichever evaluator sees it first).
    pub async fn run_staleness_schedules(&self, shutdown: CancellationToken) {
        let wanted = |s: &PipelineSpec| s.evaluation.staleness.schedule.is_some();
        mlops_shared::schedule::every_second(&self.specs, shutdown, wanted, |spec| async move {
            self.fire_staleness(&spec).await.map_err(|e| e.to_string())
        })
        .await;
    }

    async fn fire_staleness(&self, spec: &PipelineSpec) -> Result<(), EvaluatorError> {
        let Some(Ok(cron)) = spec.evaluation.staleness.cron() else { return Ok(()) };
        let p = spec.name.as_str();
        let key = format!("staleness.{}", kv_key(p));
        let Some(due) = self.slots.due(&key, &cron).await? else { return Ok(()) };
        match self.staleness(&pb::StalenessRequest { pipeline: p.into(), ..Default::default() }).await {
            Ok(report) => {
                let id = format!("staleness-{p}-{}", due.slot_ms);
                self.bus.publish(&id, &EventContext::new_run(id.clone()), &report).await?;
                info!(pipeline = p, cadence_secs = report.recommended_cadence_secs, "staleness reported");
            }
            // Nothing to compare yet is not worth retrying until the next slot.
            Err(e) if e.is_permanent() => info!(pipeline = p, why = %e, "staleness not reported"),
            Err(e) => return Err(e),
        }
        self.slots.fired(&key, due).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cadence_is_the_oldest_age_before_the_loss_passes_the_tolerance() {
        // AUC by age: 0 s 0.90, 60 s 0.88 (2.2 %), 120 s 0.86 (4.4 %), 300 s 0.80 (11 %), 600 s 0.87.
        let points = vec![(5, 0.0, 0.90), (4, 60.0, 0.88), (3, 120.0, 0.86), (2, 300.0, 0.80), (1, 600.0, 0.87)];
        let (rows, cadence, lower_bound) = table(true, 0.05, points);
        assert_eq!(rows.iter().map(|r| r.version).collect::<Vec<_>>(), [5, 4, 3, 2, 1]);
        assert_eq!(cadence, 120.0);
        assert!(!lower_bound);
        assert!((rows[3].loss - 0.1 / 0.9).abs() < 1e-12 && !rows[3].within_tolerance);
        // A later version back within tolerance does not stretch the cadence past a failure.
        assert!(rows[4].within_tolerance);
        // Lower is better: an error that grows.
        let (rows, cadence, lower_bound) = table(false, 0.05, vec![(2, 0.0, 1.0), (1, 50.0, 1.04)]);
        assert_eq!((cadence, lower_bound), (50.0, true));
        assert!((rows[1].loss - 0.04).abs() < 1e-12);
        assert_eq!(table(true, 0.05, vec![]).0.len(), 0);
    }
}
