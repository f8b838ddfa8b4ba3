//! Serving: the models each pipeline serves and how a request is answered — its inputs laid out,
//! scored, counted in a running release, kept for its labels and offered to the prediction log.
//! Its parts are private modules; what they offer is re-exported here, one path for each item.

mod inputs;
mod models;
mod pending_labels;
mod prediction_log;
mod scoring;
mod stats;

pub(crate) use inputs::oip_datatype;
pub use inputs::{Column, Inputs, matrix_columns, rows};
pub use models::{Models, Picked, Release, ReleaseMode, Route, Served};
pub use pending_labels::{Answer, PendingLabels};
pub use prediction_log::PredictionLog;
pub(crate) use prediction_log::publish_logs;
pub use scoring::{Scored, infer, infer_picked, outputs, score};
#[cfg(test)]
pub(crate) use stats::snap;
pub use stats::{LiveStats, SCORE_BINS, Snapshot, latency_bound};

/// A uniform random number in [0, 1), for the traffic split and log sampling.
fn rand_unit() -> f64 {
    // A v4 uuid is 122 random bits; bytes 6 and 8 hold the version and variant, so leave them out.
    let b = *uuid::Uuid::new_v4().as_bytes();
    let bits = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[7], b[9]]);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn rand_unit_covers_the_unit_interval_evenly() {
        let mut bins = [0u32; 10];
        for _ in 0..20_000 {
            let u = super::rand_unit();
            assert!((0.0..1.0).contains(&u));
            bins[(u * 10.0) as usize] += 1;
        }
        // 2,000 expected per bin; a fair generator stays well within ±300.
        assert!(bins.iter().all(|&c| (1_700..2_300).contains(&c)), "{bins:?}");
    }
}
