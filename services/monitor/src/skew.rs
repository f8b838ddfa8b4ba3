//! Training/serving skew of looked-up features: at each closed window, the values the deployer
//! served (from the online store, as the prediction log kept them) are compared with the values
//! the offline log held for the same time — each entity's value visible when the window closed,
//! what a training set made then would use. They come from the same batches, so they differ only
//! when something is wrong between the two stores (a materialisation that stopped, a view whose
//! online values are stale, requests that bring their own values). Each looked-up feature gets a
//! Jensen–Shannon distance (binned as drift is); beyond `monitoring.max_skew` (0.1) it is skewed,
//! and a window with a skewed feature raises `monitor.skew_detected`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mlops_features::join::gather;
use mlops_features::{FeatureStore, ViewRows};
use mlops_proto as pb;
use mlops_shared::model::{SAMPLE_VALUES, order_statistics, population_std};
use mlops_shared::spec::{DriftMethod, FeatureViewSpec, LookupSpec};
use mlops_shared::table::Column;

use crate::drift::{Reference, References, Window, judge};
use crate::error::MonitorError;

/// The default largest Jensen–Shannon distance between served and offline values.
pub(crate) const DEFAULT_MAX_SKEW: f64 = 0.1;

/// A view and its whole offline log.
type Log = Arc<(FeatureViewSpec, ViewRows)>;

/// Views' offline logs, read again only when a file is added (or an erasure rewrote them).
#[derive(Default)]
pub(crate) struct OfflineLogs {
    /// By view: how many files the log was read from, and the log.
    logs: Mutex<HashMap<String, (usize, Log)>>,
}

impl OfflineLogs {
    async fn get(&self, store: &FeatureStore, name: &str) -> Result<Log, MonitorError> {
        let files = store.files(name).await.map_err(MonitorError::features)?.len();
        if let Some((n, log)) = self.logs.lock().expect("not poisoned").get(name)
            && *n == files
        {
            return Ok(log.clone());
        }
        let view = store.known_view(name).await.map_err(MonitorError::features)?;
        let rows = store.log(&view).await.map_err(MonitorError::features)?;
        let log = Arc::new((view, rows));
        self.logs.lock().expect("not poisoned").insert(name.to_owned(), (files, log.clone()));
        Ok(log)
    }

    /// Drops what is held of view `name`'s log: an erasure wrote its files again in place.
    pub(crate) fn forget(&self, name: &str) {
        self.logs.lock().expect("not poisoned").remove(name);
    }

    /// Each looked-up feature's skew in `window` (closed at `at_ms`), in `lookup.from` order.
    pub(crate) async fn measure(
        &self,
        store: &FeatureStore,
        lookup: &LookupSpec,
        references: &References,
        window: &Window,
        at_ms: i64,
        threshold: f64,
    ) -> Result<Vec<pb::FeatureDrift>, MonitorError> {
        // Each view's log, and which of its records each entity had visible then: once per view,
        // however many of its features are looked up.
        let mut logs = HashMap::new();
        for name in lookup.views() {
            let log = self.get(store, name).await?;
            let visible = visible_at(&log.0, &log.1, at_ms);
            logs.insert(name, (log, visible));
        }
        let mut out = Vec::new();
        for r in lookup.refs() {
            let (log, visible) = &logs[r.view];
            let Some(j) = references.features.iter().position(|(name, _)| name == r.feature) else { continue };
            let offline = offline_reference(&log.0, &log.1, visible, r.feature, &references.features[j].1);
            out.push(judge(r.feature, DriftMethod::JensenShannonDistance, threshold, &offline, &window.features[j]));
        }
        Ok(out)
    }
}

impl crate::Monitor {
    /// Measures the skew of `lookup`'s features in a closed window, sets the gauges and raises
    /// `monitor.skew_detected` when one is skewed. A store that does not answer skips the check
    /// (logged): the window's drift is recorded all the same.
    pub(crate) async fn check_skew(
        &self,
        pipeline: &str,
        version: u64,
        lookup: &LookupSpec,
        (references, window): (&References, &Window),
        spec: &mlops_shared::spec::MonitoringSpec,
        ctx: &mlops_shared::events::EventContext,
    ) {
        let at_ms = mlops_shared::now_unix_ms();
        let threshold = spec.max_skew.unwrap_or(DEFAULT_MAX_SKEW);
        let measured = self.offline.measure(&self.features, lookup, references, window, at_ms, threshold).await;
        let features = match measured {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(pipeline, error = %e, "skew not measured");
                return;
            }
        };
        for f in &features {
            let labels = [("pipeline", pipeline.to_owned()), ("feature", f.feature.clone())];
            metrics::gauge!("mlops_feature_skew", &labels).set(f.score);
        }
        if !features.iter().any(|f| f.drifted) {
            return;
        }
        let event = pb::SkewDetected {
            pipeline: pipeline.to_owned(),
            version,
            window_rows: window.rows,
            features,
            at_unix_ms: at_ms,
        };
        let id = format!("skew-{pipeline}-v{version}-{}", window.opened_ms);
        match self.bus.publish(&id, ctx, &event).await {
            Ok(_) => {
                tracing::warn!(pipeline, version, "training/serving skew detected");
                metrics::counter!("mlops_skew_alerts_total", "pipeline" => pipeline.to_owned()).increment(1);
            }
            Err(e) => tracing::warn!(pipeline, error = %e, "monitor.skew_detected not published"),
        }
    }
}

/// For every entity of `log`, the record visible at `at_ms` (if any).
pub(crate) fn visible_at(view: &FeatureViewSpec, log: &ViewRows, at_ms: i64) -> Vec<Option<u32>> {
    mlops_features::join::visible_at(log, view.ttl_ms(), at_ms)
}

/// The distribution of `feature` over the records `visible` ([`visible_at`]) of `log`, binned
/// like `like` (the training reference: its categories for a categorical feature).
pub(crate) fn offline_reference(
    view: &FeatureViewSpec,
    log: &ViewRows,
    visible: &[Option<u32>],
    feature: &str,
    like: &Reference,
) -> Reference {
    let index = view.features.iter().position(|f| f.name == feature).unwrap_or(0);
    match (gather(log, visible, index), like) {
        (Column::Categorical(values), Reference::Categorical { categories, .. }) => {
            let mut counts = vec![0u64; categories.len() + 1];
            for v in values.iter().flatten() {
                counts[categories.iter().position(|c| c == v).unwrap_or(categories.len())] += 1;
            }
            let rows: u64 = counts.iter().sum();
            Reference::Categorical {
                categories: categories.clone(),
                shares: mlops_shared::stats::divergence::shares(&counts),
                rows,
            }
        }
        (column, _) => {
            let mut values: Vec<f64> = match column {
                Column::Numeric(v) => v.into_iter().flatten().filter(|x| x.is_finite()).collect(),
                Column::Categorical(_) => Vec::new(),
            };
            mlops_shared::stats::sort_floats(&mut values);
            Reference::Numeric {
                sample: order_statistics(&values, SAMPLE_VALUES),
                values: values.len() as u64,
                std: population_std(&values),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::Current;

    fn view() -> FeatureViewSpec {
        FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: stats\nentities: [k]\nevent_time: t\nttl: 100s\n\
             features: [{name: spend, type: numeric}]\n",
        )
        .unwrap()
    }

    #[test]
    fn served_values_are_judged_against_what_the_offline_log_held_then() {
        // Keys 0..200 with spend = key % 50, then key 0..100 corrected to 1000 later.
        let mut log = ViewRows::empty(&view());
        for k in 0..200 {
            log.keys.push(format!("k{k}"));
            log.event_ms.push(1_000);
            log.written_ms.push(1_000);
            if let Column::Numeric(v) = &mut log.columns[0] {
                v.push(Some(f64::from(k % 50)));
            }
        }
        let like = Reference::Numeric { sample: vec![0.0, 49.0], values: 2, std: 1.0 };
        let before = offline_reference(&view(), &log, &visible_at(&view(), &log, 50_000), "spend", &like);
        let Reference::Numeric { values, .. } = &before else { panic!() };
        assert_eq!(*values, 200);
        let same: Vec<f64> = (0..200).map(|k| f64::from(k % 50)).collect();
        let ok = judge("spend", DriftMethod::JensenShannonDistance, 0.1, &before, &Current::Numeric(same));
        assert!(!ok.drifted, "{ok:?}");
        let stale = judge("spend", DriftMethod::JensenShannonDistance, 0.1, &before, &Current::Numeric(vec![0.0; 200]));
        assert!(stale.drifted, "{stale:?}");
        // Past the TTL, nothing is visible offline: no evidence either way.
        let late = offline_reference(&view(), &log, &visible_at(&view(), &log, 1_000 + 100_001), "spend", &like);
        let Reference::Numeric { values, .. } = late else { panic!() };
        assert_eq!(values, 0);
    }
}
