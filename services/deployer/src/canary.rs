//! The canary and shadow decision: whether a release is worse than the model it would replace, as
//! good once it has run long enough, or not yet to be told. Pure: figures in, a verdict out; the
//! release life cycle (`release.rs`) gathers the figures and acts on the verdict.

use mlops_shared::spec::CanarySpec;

use crate::serving::Snapshot;

/// A release's judgement.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Wait(String),
    Promote(String),
    RollBack(String),
}

/// The significance at which two prediction histograms are taken to differ.
const PREDICTION_SHIFT_P: f64 = 0.001;
/// The significance at which the new model's labelled predictions are taken to be worse.
const LABEL_QUALITY_P: f64 = 0.01;
/// Requests each model needs before their p99 latencies are compared: the p99 of fewer is its one
/// or two slowest requests, which a single scheduler stall on a busy machine decides. With 1,000
/// it is the tenth slowest.
pub const LATENCY_MIN_REQUESTS: u64 = 1000;

/// The population stability index of the candidate's prediction histogram against the serving
/// model's, each bin's count smoothed by half a count (`stats::divergence::smoothed_shares`) so
/// that an empty bin in a small sample weighs what it can tell; 0 while either is empty.
pub fn prediction_psi(champion: &[u64], candidate: &[u64]) -> f64 {
    use mlops_shared::stats::divergence::{psi, smoothed_shares};
    if champion.iter().sum::<u64>() == 0 || candidate.iter().sum::<u64>() == 0 {
        return 0.0;
    }
    let bins = champion.len().max(candidate.len());
    psi(&smoothed_shares(champion, bins, 0.5), &smoothed_shares(candidate, bins, 0.5))
}

/// Judges a release from both models' figures summed over replicas: worse than the serving
/// model by one of the spec's limits once it answered `min_requests` — roll back (at once); as
/// good after `duration_secs` — promote; otherwise wait.
pub fn judge(
    spec: &CanarySpec,
    elapsed_secs: f64,
    champion: &Snapshot,
    candidate: &Snapshot,
    classifier: bool,
) -> Verdict {
    if candidate.requests < spec.min_requests {
        return Verdict::Wait(format!(
            "{} of {} requests after {elapsed_secs:.0} s",
            candidate.requests, spec.min_requests
        ));
    }
    let mut failures = Vec::new();
    let (ce, he) = (candidate.error_rate(), champion.error_rate());
    let mut figures = vec![format!("error rate {ce:.4} against {he:.4}")];
    if ce > he + spec.max_error_rate_increase {
        failures.push(format!(
            "error rate {ce:.4} exceeds the serving model's {he:.4} by more than {}",
            spec.max_error_rate_increase
        ));
    }
    if champion.requests > 0 {
        let (cp, hp) = (candidate.p99() * 1e3, champion.p99() * 1e3);
        let enough = candidate.requests.min(champion.requests) >= LATENCY_MIN_REQUESTS;
        let judged = if enough { "" } else { " (not judged below 1,000 requests each)" };
        figures.push(format!("p99 {cp:.3} ms against {hp:.3} ms{judged}"));
        if enough && cp > (hp * spec.max_latency_ratio).max(hp + 1.0) {
            failures.push(format!(
                "p99 latency {cp:.3} ms is over {} × the serving model's {hp:.3} ms",
                spec.max_latency_ratio
            ));
        }
        if classifier {
            // A shift must be both large (PSI) and real: on a few hundred requests PSI alone is
            // inflated by chance, so the chi-square test of the two histograms must also reject
            // "same distribution" at 0.1 %.
            let psi = prediction_psi(&champion.scores, &candidate.scores);
            let p = mlops_shared::stats::chi2_homogeneity(&champion.scores, &candidate.scores).map_or(1.0, |t| t.2);
            figures.push(format!("prediction PSI {psi:.3} (chi-square p {p:.2e})"));
            if psi > spec.max_prediction_psi && p < PREDICTION_SHIFT_P {
                failures.push(format!(
                    "predictions drifted from the serving model's: PSI {psi:.3} over {}, chi-square p {p:.2e}",
                    spec.max_prediction_psi
                ));
            }
        }
    }
    if let Some(finding) = label_quality(spec, champion, candidate, classifier, &mut figures) {
        failures.push(finding);
    }
    let figures = format!("{} requests, {}", candidate.requests, figures.join(", "));
    if !failures.is_empty() {
        Verdict::RollBack(format!("{} ({figures})", failures.join("; ")))
    } else if elapsed_secs < spec.duration_secs {
        Verdict::Wait(format!("as good so far after {elapsed_secs:.0} of {} s ({figures})", spec.duration_secs))
    } else {
        Verdict::Promote(format!("as good as the serving model after {elapsed_secs:.0} s ({figures})"))
    }
}

/// Quality on labelled predictions (`labels.arrived`), once both models have `min_labels`: worse
/// by more than the spec tolerates — accuracy lower by `max_accuracy_drop`, or mean absolute error
/// higher by `max_mae_increase` of the serving model's — *and* worse beyond chance (a one-sided
/// test of the mean losses at 1 %), so a few unlucky labels do not roll a good model back.
fn label_quality(
    spec: &CanarySpec,
    champion: &Snapshot,
    candidate: &Snapshot,
    classifier: bool,
    figures: &mut Vec<String>,
) -> Option<String> {
    if candidate.labelled < spec.min_labels || champion.labelled < spec.min_labels {
        if candidate.labelled > 0 || champion.labelled > 0 {
            figures.push(format!("{} and {} of {} labels", candidate.labelled, champion.labelled, spec.min_labels));
        }
        return None;
    }
    let moments = |s: &Snapshot| (s.labelled, s.loss_sum, s.loss_squares);
    let (_, p) = mlops_shared::stats::mean_exceeds(moments(candidate), moments(champion))?;
    let (lc, lh) = (candidate.mean_loss(), champion.mean_loss());
    let n = candidate.labelled;
    if classifier {
        let (ac, ah) = (1.0 - lc, 1.0 - lh);
        figures.push(format!("accuracy on {n} labels {ac:.4} against {ah:.4} (p {p:.2e})"));
        (ah - ac > spec.max_accuracy_drop && p < LABEL_QUALITY_P).then(|| {
            format!(
                "accuracy on {n} labelled predictions {ac:.4} is below the serving model's {ah:.4} by more than {} (p {p:.2e})",
                spec.max_accuracy_drop
            )
        })
    } else {
        figures.push(format!("MAE on {n} labels {lc:.4} against {lh:.4} (p {p:.2e})"));
        (lc > lh * (1.0 + spec.max_mae_increase) && p < LABEL_QUALITY_P).then(|| {
            format!(
                "mean absolute error on {n} labelled predictions {lc:.4} exceeds the serving model's {lh:.4} by more than {} of it (p {p:.2e})",
                spec.max_mae_increase
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::snap;

    /// `s` with `labelled` labels of which `wrong` were mispredicted (0/1 losses).
    fn labelled(mut s: Snapshot, labelled: u64, wrong: u64) -> Snapshot {
        (s.labelled, s.loss_sum, s.loss_squares) = (labelled, wrong as f64, wrong as f64);
        s
    }

    #[test]
    fn labels_roll_back_a_model_that_is_really_worse_and_only_then() {
        let spec = CanarySpec { duration_secs: 60.0, min_requests: 100, min_labels: 50, ..Default::default() };
        let spread = [10; 10];
        let champion = labelled(snap(900, 0, 30, &spread), 400, 80); // accuracy 0.80
        // 0.60 on 100 labels: 0.2 worse, far beyond chance.
        let Verdict::RollBack(why) = judge(&spec, 5.0, &champion, &labelled(snap(100, 0, 30, &spread), 100, 40), true)
        else {
            panic!()
        };
        assert!(
            why.contains("accuracy on 100 labelled predictions 0.6000 is below the serving model's 0.8000"),
            "{why}"
        );
        // Too few labels to judge: wait, and say how many there are.
        let Verdict::Wait(why) = judge(&spec, 5.0, &champion, &labelled(snap(100, 0, 30, &spread), 20, 20), true)
        else {
            panic!()
        };
        assert!(why.contains("20 and 400 of 50 labels"), "{why}");
        // 0.74 on 50 labels: more than 0.05 lower, but within chance (p about 0.17).
        let Verdict::Promote(why) = judge(&spec, 61.0, &champion, &labelled(snap(100, 0, 30, &spread), 50, 13), true)
        else {
            panic!()
        };
        assert!(why.contains("accuracy on 50 labels 0.7400 against 0.8000"), "{why}");
        // Regression: mean absolute error 2 against 1, the same spread, 60 labels each.
        let regression = |n: u64, mean: f64| {
            let mut s = snap(100, 0, 30, &[]);
            (s.labelled, s.loss_sum, s.loss_squares) = (n, mean * n as f64, (mean * mean + 0.25) * n as f64);
            s
        };
        let Verdict::RollBack(why) = judge(&spec, 5.0, &regression(60, 1.0), &regression(60, 2.0), false) else {
            panic!()
        };
        assert!(why.contains("mean absolute error on 60 labelled predictions 2.0000 exceeds"), "{why}");
        assert!(matches!(judge(&spec, 61.0, &regression(60, 1.0), &regression(60, 1.05), false), Verdict::Promote(_)));
    }

    #[test]
    fn a_release_waits_for_requests_and_time_then_promotes_or_rolls_back_with_reasons() {
        let spec = CanarySpec { duration_secs: 60.0, min_requests: 100, ..Default::default() };
        let spread = [10, 10, 10, 10, 10, 10, 10, 10, 10, 10];
        let champion = snap(900, 0, 30, &spread);
        let like = snap(100, 0, 30, &spread);
        assert!(
            matches!(judge(&spec, 120.0, &champion, &snap(50, 0, 30, &spread), true), Verdict::Wait(w) if w.contains("50 of 100"))
        );
        assert!(matches!(judge(&spec, 30.0, &champion, &like, true), Verdict::Wait(w) if w.contains("as good so far")));
        let Verdict::Promote(why) = judge(&spec, 61.0, &champion, &like, true) else { panic!() };
        assert!(why.contains("100 requests") && why.contains("prediction PSI 0.000 (chi-square p 1.00e0)"), "{why}");
        // Worse: at once, whatever the time.
        let Verdict::RollBack(why) = judge(&spec, 5.0, &champion, &snap(100, 5, 30, &spread), true) else { panic!() };
        assert!(why.contains("error rate 0.0500 exceeds the serving model's 0.0000"), "{why}");
        // Slower: once both have enough requests for their p99 to be more than one stall.
        let (busy, slow) = (snap(2000, 0, 30, &spread), snap(1000, 0, 60, &spread));
        let Verdict::RollBack(why) = judge(&spec, 5.0, &busy, &slow, true) else { panic!() };
        assert!(why.contains("p99 latency"), "{why}");
        let Verdict::Wait(why) = judge(&spec, 5.0, &champion, &snap(100, 0, 60, &spread), true) else { panic!() };
        assert!(why.contains("not judged below 1,000 requests"), "{why}");
        let Verdict::RollBack(why) =
            judge(&spec, 5.0, &champion, &snap(100, 0, 30, &[0, 0, 0, 0, 100, 0, 0, 0, 0, 0]), true)
        else {
            panic!()
        };
        assert!(why.contains("predictions drifted"), "{why}");
        // A large PSI on too few requests to tell is not a shift: 3 of 10 bins differ by chance.
        let small = CanarySpec { min_requests: 10, ..spec.clone() };
        let noisy = snap(10, 0, 30, &[2, 0, 1, 1, 0, 2, 1, 1, 0, 2]);
        let Verdict::Wait(why) = judge(&small, 5.0, &champion, &noisy, true) else { panic!() };
        assert!(why.contains("prediction PSI") && !why.contains("drifted"), "{why}");
        // Regression: no probability histogram to compare.
        assert!(matches!(judge(&spec, 61.0, &champion, &snap(100, 0, 30, &[]), false), Verdict::Promote(_)));
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_the_shift() {
        assert!(prediction_psi(&[100, 200, 300], &[100, 200, 300]).abs() < 1e-15);
        let small = prediction_psi(&[50, 50], &[55, 45]);
        let large = prediction_psi(&[50, 50], &[90, 10]);
        assert!(small > 0.0 && small < 0.05 && large > 0.5, "{small} {large}");
        // A single stray count in a bin the other side never filled weighs next to nothing.
        assert!(prediction_psi(&[1000, 0], &[999, 1]) < 0.01);
        assert_eq!(prediction_psi(&[], &[1]), 0.0);
    }
}
