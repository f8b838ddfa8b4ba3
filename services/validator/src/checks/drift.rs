//! Drift against the pipeline's previous accepted version: a numeric feature's Jensen–Shannon
//! divergence between the two versions' counts in the previous histogram's bins
//! (`max_js_divergence`), a categorical feature's largest change of a category's share
//! (`max_share_shift`).

use mlops_proto as pb;
use mlops_shared::spec::{FeatureKind, FeatureSpec, Severity};
use mlops_shared::stats::divergence::{LogBase, js_divergence, shares};

use super::anomalies::{AnomalyKind, Findings};

/// This version's counts of one numeric feature in the previous version's histogram bins.
pub(super) struct Histogram<'p> {
    edges: &'p [f64],
    counts: Vec<u64>,
}

impl<'p> Histogram<'p> {
    /// Empty bins for `f`, when it has a `max_js_divergence` and the previous version a histogram
    /// of it.
    pub(super) fn for_feature(f: &FeatureSpec, previous: Option<&'p pb::DatasetProfile>) -> Option<Self> {
        let prev = previous_column(previous, &f.name)?;
        (f.max_js_divergence.is_some() && prev.histogram_edges.len() >= 2)
            .then(|| Self { edges: &prev.histogram_edges, counts: vec![0; prev.histogram_edges.len() - 1] })
    }

    /// Counts numbers into the bins.
    pub(super) fn count(&mut self, values: &[f64]) {
        let inner = &self.edges[1..self.edges.len() - 1];
        for v in values {
            self.counts[inner.partition_point(|e| e <= v)] += 1;
        }
    }
}

/// Reports each feature that moved further from the previous version than its spec allows.
/// `features` holds each declared column with its histogram, `now` this version's profiles.
pub(super) fn check(
    found: &mut Findings,
    features: Vec<(&FeatureSpec, Option<Histogram<'_>>)>,
    previous: Option<&pb::DatasetProfile>,
    now: &[pb::ColumnProfile],
) {
    for (f, histogram) in features {
        let Some(prev) = previous_column(previous, &f.name) else { continue };
        let (key, max, statistic, score) = match (histogram, now.iter().find(|c| c.name == f.name)) {
            (Some(histogram), _) => {
                let Some(max) = f.max_js_divergence else { continue };
                let bits = js_divergence(&shares(&prev.histogram_counts), &shares(&histogram.counts), LogBase::Two);
                ("max_js_divergence", max, "Jensen–Shannon divergence (base 2)", bits)
            }
            (None, Some(now)) if f.kind == FeatureKind::Categorical => {
                let Some(max) = f.max_share_shift else { continue };
                ("max_share_shift", max, "largest change of a category's share", share_shift(prev, now))
            }
            _ => continue,
        };
        if score > max {
            found.add(&f.name, AnomalyKind::Drift, None, f.severity == Severity::Block, || {
                format!("{statistic} {score:.4} from the previous accepted version, over {key} {max}")
            });
        }
    }
}

/// The previous version's profile of the column `name`.
fn previous_column<'p>(previous: Option<&'p pb::DatasetProfile>, name: &str) -> Option<&'p pb::ColumnProfile> {
    previous?.columns.iter().find(|c| c.name == name)
}

/// The largest change of any one category's share between two categorical profiles (the L∞
/// distance between their share vectors).
fn share_shift(prev: &pb::ColumnProfile, now: &pb::ColumnProfile) -> f64 {
    let share = |c: &pb::ColumnProfile, v: &str| {
        c.top_categories.iter().find(|t| t.value == v).map_or(0.0, |t| t.count as f64 / c.count.max(1) as f64)
    };
    prev.top_categories
        .iter()
        .chain(&now.top_categories)
        .map(|t| (share(prev, &t.value) - share(now, &t.value)).abs())
        .fold(0.0, f64::max)
}
