//! A service stays responsive while it computes: the evaluator's `/healthz` answers quickly while
//! it judges a large candidate, even on a runtime with a single worker thread, because parsing,
//! predicting and scoring run on the blocking pool.

use std::time::{Duration, Instant};

use mlops_integration_tests::{TestApp, sample};

const T: Duration = Duration::from_secs(240);

/// A health check slower than this while a candidate is judged means the runtime was blocked.
const HEALTHZ_LIMIT: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluator_answers_health_checks_while_it_judges_a_large_candidate() {
    let app = TestApp::start_custom(
        &[],
        |opts| {
            // One runtime thread: any CPU work left on it would hold every health check.
            let one = vec![("TOKIO_WORKER_THREADS".to_owned(), "1".to_owned())];
            opts.service_env.insert("evaluator".into(), one);
        },
        async_nats::ConnectOptions::new(),
    )
    .await;
    // The example pipeline with a serving-latency gate, whose micro-benchmark runs in the judging.
    let spec = format!("{}serving_limits: {{max_p99_ms: 1000}}\n", mlops_cli::EXAMPLE_SPEC);
    app.apply(&spec).await;
    let healthz = format!("{}/healthz", app.stack.url("evaluator"));
    let http = reqwest::Client::new();
    app.upload("churn", &sample::csv(200_000, 5, sample::Variant::Normal)).await;

    app.wait_event("model.registered", T, |_| true).await;
    let (mut during, deadline) = (Vec::new(), Instant::now() + T);
    while !app.seen().iter().any(|s| s.kind == "model.evaluated") {
        assert!(Instant::now() < deadline, "no model.evaluated within {T:?}");
        let started = Instant::now();
        let status = http.get(&healthz).send().await.expect("healthz answers").status();
        during.push(started.elapsed());
        assert!(status.is_success(), "healthz: {status}");
    }
    // Enough probes fell inside the judging for the bound to mean something.
    assert!(during.len() >= 10, "only {} health checks while the candidate was judged", during.len());
    let slowest = during.iter().max().copied().unwrap_or_default();
    assert!(slowest < HEALTHZ_LIMIT, "slowest health check {slowest:?} of {} while judging", during.len());
}
