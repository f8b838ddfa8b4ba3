//! Golden values from scipy 1.17.1 / numpy 2.4.6 (`python3 -m venv v && v/bin/pip install scipy`), on
//! the samples below: `stats.ks_2samp`, `stats.wasserstein_distance`, `np.std`,
//! `spatial.distance.jensenshannon` and Evidently's PSI over `np.histogram_bin_edges(ref + cur,
//! bins=30)`, and `stats.chisquare` with expected counts scaled from the reference.

use super::*;
use mlops_shared::spec::DriftOverride;

fn reference_sample() -> Vec<f64> {
    (0..80).map(|i| ((i * 37) % 101) as f64 / 10.0).collect()
}

fn current_sample(shift: f64) -> Vec<f64> {
    (0..50).map(|i| ((i * 53) % 97) as f64 / 10.0 + shift).collect()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// PSI with Evidently's smoothing, as `score` computes it.
fn evidently_psi(reference: &[f64], current: &[f64]) -> f64 {
    psi(&floored_shares(reference, EVIDENTLY_FLOOR), &floored_shares(current, EVIDENTLY_FLOOR))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn kolmogorov_smirnov_matches_scipy() {
    let (r, c) = (sorted(reference_sample()), sorted(current_sample(1.5)));
    let d = ks::statistic(&r, &c);
    assert!(close(d, 0.15, 1e-12), "{d}");
    // scipy's exact p-value.
    let p = ks::p_value(d, 80, 50);
    assert!(close(p, 0.447_992_943_066_031_3, 1e-9), "{p}");
    let far = sorted(current_sample(4.5));
    let d = ks::statistic(&r, &far);
    assert!(close(d, 0.4375, 1e-12), "{d}");
    let p = ks::p_value(d, 80, 50);
    assert!((p / 8.142_631_131_667_045e-6 - 1.0).abs() < 1e-6, "{p}");
    // Ties move both CDFs together.
    let a = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0];
    let b = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 6.0, 6.0];
    assert!(close(ks::statistic(&a, &b), 0.227_272_727_272_727_27, 1e-12));
    assert!(close(ks::p_value(ks::statistic(&a, &b), 10, 11), 0.886_324_975_334_263_1, 1e-9));
    assert_eq!(ks::statistic(&r, &r), 0.0);
    assert_eq!(ks::p_value(0.0, 80, 80), 1.0);
}

#[test]
fn wasserstein_matches_scipy() {
    let (r, c) = (sorted(reference_sample()), sorted(current_sample(1.5)));
    let w = wasserstein::distance(&r, &c);
    assert!(close(w, 1.023_499_999_999_999_9, 1e-12), "{w}");
    let std = population_std(&r);
    assert!(close(std, 2.942_956_634_067_175_3, 1e-12), "{std}");
    assert!(close(wasserstein::normalised(&r, &c, std), 0.347_779_504_513_296_1, 1e-12));
    let a = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0];
    let b = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 6.0, 6.0];
    assert!(close(wasserstein::distance(&a, &b), 0.6, 1e-12));
    assert_eq!(wasserstein::distance(&r, &r), 0.0);
}

#[test]
fn binned_tests_match_scipy_and_evidently() {
    let (r, c) = (reference_sample(), current_sample(1.5));
    let (rc, cc) = binned::equal_width_counts(&r, &c, 30);
    // numpy.histogram's counts over the same 30 edges.
    assert_eq!(rc, [4, 2, 3, 3, 2, 4, 2, 3, 3, 2, 4, 2, 3, 3, 3, 3, 3, 2, 3, 2, 3, 3, 3, 3, 3, 2, 4, 2, 1, 0]);
    assert_eq!(cc, [0, 0, 0, 0, 3, 2, 1, 4, 0, 3, 2, 1, 3, 0, 3, 1, 1, 3, 0, 4, 1, 2, 3, 0, 4, 1, 2, 2, 0, 4]);
    let (rs, cs) = (shares(&rc), shares(&cc));
    assert!(close(js_distance(&rs, &cs), 0.415_618_719_990_425_93, 1e-12));
    assert!(close(evidently_psi(&rs, &cs), 2.673_847_945_327_205, 1e-9));
    let (rc, cc) = binned::equal_width_counts(&r, &c, 10);
    let (rs, cs) = (shares(&rc), shares(&cc));
    assert!(close(js_distance(&rs, &cs), 0.228_001_729_516_506_52, 1e-12));
    assert!(close(evidently_psi(&rs, &cs), 0.898_719_447_336_691_5, 1e-9));
    // Categories: chisquare([30, 30, 40], [50, 30, 20] scaled) -> statistic 28, p 8.315e-7.
    let p = binned::chi_square_p(&[0.5, 0.3, 0.2], &[30, 30, 40]);
    assert!((p / 8.315_287_191_035_68e-7 - 1.0).abs() < 1e-6, "{p}");
    let p = binned::chi_square_p(&[0.5, 0.3, 0.2], &[52, 28, 20]);
    assert!(close(p, 0.898_825_231_471_608_9, 1e-9), "{p}");
    assert!(close(js_distance(&[0.5, 0.3, 0.2], &[0.3, 0.3, 0.4]), 0.172_114_731_038_121_78, 1e-12));
    // A category the reference never had is drift beyond doubt.
    assert_eq!(binned::chi_square_p(&[0.5, 0.5, 0.0], &[10, 10, 1]), 0.0);
}

fn numeric(values: &[f64]) -> Reference {
    let s = sorted(values.to_vec());
    Reference::Numeric { values: s.len() as u64, std: population_std(&s), sample: s }
}

#[test]
fn the_test_is_chosen_by_type_cardinality_and_the_smaller_sample() {
    let few: Vec<f64> = (0..500).map(|i| f64::from(i % 3)).collect();
    let many: Vec<f64> = (0..500).map(f64::from).collect();
    assert_eq!(numeric(&many).default_method(5000), DriftMethod::Ks);
    assert_eq!(numeric(&few).default_method(5000), DriftMethod::ChiSquare);
    let large = Reference::Numeric { sample: many.clone(), values: 50_000, std: 1.0 };
    assert_eq!(large.default_method(5000), DriftMethod::Wasserstein);
    // A small window gets a test even against a large reference: a distance would be noise.
    assert_eq!(large.default_method(1000), DriftMethod::Ks);
    let cats = |rows| Reference::Categorical { categories: vec!["a".into()], shares: vec![1.0, 0.0], rows };
    assert_eq!(cats(1000).default_method(5000), DriftMethod::ChiSquare);
    assert_eq!(cats(1001).default_method(5000), DriftMethod::JensenShannonDistance);
    assert_eq!(cats(1001).default_method(200), DriftMethod::ChiSquare);
}

fn log(x: f64, c: &str, score: f64) -> pb::PredictionLogged {
    pb::PredictionLogged {
        numeric: [("x".to_string(), x)].into(),
        categorical: [("c".to_string(), c.to_string())].into(),
        score,
        ..Default::default()
    }
}

fn references(rows: u64) -> References {
    let sample: Vec<f64> = (0..200).map(|i| f64::from(i) / 20.0).collect();
    let std = population_std(&sample);
    References {
        features: vec![
            ("x".into(), Reference::Numeric { sample, values: rows, std }),
            (
                "c".into(),
                Reference::Categorical { categories: vec!["a".into(), "b".into()], shares: vec![0.5, 0.5, 0.0], rows },
            ),
        ],
        prediction: Some(numeric(&(0..100).map(|i| f64::from(i) / 100.0).collect::<Vec<_>>())),
    }
}

#[test]
fn shifted_inputs_drift_and_unshifted_do_not_with_every_method() {
    for (rows, n) in [(200u64, 400u32), (100_000, 4000)] {
        let refs = references(rows);
        let spec = MonitoringSpec { drift_share: 0.5, ..MonitoringSpec::default() };
        let mut same = Window::new(&refs);
        for i in 0..n {
            same.add(
                &refs,
                &log(f64::from(i % 200) / 20.0, if i % 2 == 0 { "a" } else { "b" }, f64::from(i % 100) / 100.0),
            );
        }
        let (f, share, prediction) = same.drift(&refs, &spec);
        assert!(f.iter().all(|f| !f.drifted), "{rows}: {f:?}");
        assert_eq!(share, 0.0);
        assert!(!prediction.unwrap().drifted);
        let expected = if rows.min(u64::from(n)) <= 1000 {
            ["ks", "chi_square"]
        } else {
            ["wasserstein", "jensen_shannon_distance"]
        };
        assert_eq!(f.iter().map(|f| f.method.as_str()).collect::<Vec<_>>(), expected);

        let mut shifted = Window::new(&refs);
        for i in 0..n {
            shifted.add(&refs, &log(7.0 + f64::from(i % 10), "a", 0.95));
        }
        let (f, share, prediction) = shifted.drift(&refs, &spec);
        assert!(f.iter().all(|f| f.drifted), "{rows}: {f:?}");
        assert_eq!(share, 1.0);
        assert!(prediction.unwrap().drifted);
        // Every method the spec can name sees the numeric shift.
        for method in [
            DriftMethod::Ks,
            DriftMethod::ChiSquare,
            DriftMethod::Psi,
            DriftMethod::Wasserstein,
            DriftMethod::JensenShannonDistance,
        ] {
            let spec = MonitoringSpec {
                features: [("x".to_owned(), DriftOverride { method: Some(method), threshold: None })].into(),
                ..spec.clone()
            };
            let (f, ..) = shifted.drift(&refs, &spec);
            assert!(f[0].drifted && f[0].method == method.as_str(), "{method:?}: {:?}", f[0]);
            let (f, ..) = same.drift(&refs, &spec);
            assert!(!f[0].drifted, "{method:?}: {:?}", f[0]);
        }
    }
}

#[test]
fn a_rolling_reference_is_the_window_before() {
    let refs = references(200);
    let mut w = Window::new(&refs);
    for i in 0..100 {
        w.add(&refs, &log(50.0 + f64::from(i), "b", 0.5));
    }
    let next = refs.from_window(&w);
    let Reference::Numeric { sample, values, .. } = &next.features[0].1 else { panic!() };
    assert_eq!((sample[0], *values), (50.0, 100));
    let Reference::Categorical { shares, rows, .. } = &next.features[1].1 else { panic!() };
    assert_eq!((shares.as_slice(), *rows), (&[0.0, 1.0, 0.0][..], 100));
    // The same traffic again has not drifted from it, though it has from the training data.
    let spec = MonitoringSpec::default();
    assert!(w.drift(&next, &spec).0.iter().all(|f| !f.drifted));
    assert!(w.drift(&refs, &spec).0.iter().all(|f| f.drifted));
}
