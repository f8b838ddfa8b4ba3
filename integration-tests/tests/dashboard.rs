//! The web dashboard as a person sees it: headless Chromium (Debian's `chromium`) loads the
//! monitor's `/ui` after a real cascade and a drift episode, runs its script against the JSON API,
//! and the rendered page shows the pipeline, its versions, the drift charts, the alert and the
//! cascade timeline; a screenshot is kept in `target/dashboard.png`. The API's errors are JSON.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mlops_integration_tests::{TestApp, client, rows_json, sample};
use sample::Variant;

const T: Duration = Duration::from_secs(90);

/// Runs headless Chromium on `url` with `what` (`--dump-dom`, or `--screenshot=PATH`).
fn chromium(profile: &Path, url: &str, what: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1900",
            // Let the page's fetches and rendering finish before the DOM or the picture is taken.
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .output()
        .expect("chromium is installed (`just deps` installs Debian's chromium package)");
    assert!(out.status.success(), "chromium {what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The platform after a cascade (v1 of `churn` serving) and a drift episode: a window of ordinary
/// traffic and one of drifted traffic, closed, with its alert.
async fn after_a_drift_episode() -> TestApp {
    let app = TestApp::start().await;
    app.apply(&mlops_integration_tests::spec_with_window(100)).await;
    app.upload("churn", &sample::csv(2000, 401, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let deployer = app.stack.url("deployer");
    for rows in [sample::customers(100, 402, Variant::Normal), sample::customers(100, 403, Variant::Drifted)] {
        for chunk in rows.chunks(50) {
            client::predict(&deployer, "churn", &rows_json(chunk)).await.unwrap();
        }
    }
    app.wait_event("monitor.drift_detected", T, |_| true).await;
    let monitor = app.stack.url("monitor");
    mlops_integration_tests::wait_until(T, || async {
        let r = client::monitor_report(&monitor, "churn").await.ok()?;
        (r.windows.len() >= 2).then_some(())
    })
    .await
    .expect("two closed windows");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_serves_the_pipeline_its_windows_alerts_and_timeline_and_json_errors() {
    let app = after_a_drift_episode().await;
    let monitor = app.stack.url("monitor");
    // The JSON the page draws from, and its errors.
    let http = client::http_client().unwrap();
    let overview: serde_json::Value =
        http.get(format!("{monitor}/api/overview")).send().await.unwrap().json().await.unwrap();
    assert_eq!(overview["pipelines"][0]["name"], "churn", "{overview}");
    assert_eq!(overview["pipelines"][0]["production"]["version"], 1, "{overview}");
    let kinds: Vec<&str> = overview["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in [
        "data.ingested",
        "data.validated",
        "model.trained",
        "model.evaluated",
        "model.promoted",
        "monitor.drift_detected",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in the timeline: {kinds:?}");
    }
    let churn: serde_json::Value =
        http.get(format!("{monitor}/api/pipelines/churn")).send().await.unwrap().json().await.unwrap();
    assert_eq!(churn["windows"].as_array().unwrap().len(), 2, "{churn}");
    assert_eq!(churn["alerts"][0]["kind"], "drift", "{churn}");
    let missing = http.get(format!("{monitor}/api/pipelines/nosuch")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("there is no pipeline `nosuch`"), "{body}");
    let bad = http.get(format!("{monitor}/api/pipelines/Bad%20Name")).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // `mlops ui` names the page.
    let out =
        Command::new(app.stack.opts.bin_dir.join("mlops")).args(["--monitor-url", &monitor, "ui"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(url, format!("{monitor}/ui"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_pipelines_versions_drift_alerts_and_the_cascade_in_chromium() {
    let app = after_a_drift_episode().await;
    let url = format!("{}/ui", app.stack.url("monitor"));
    // The page as Chromium renders it.
    let profile = tempfile::tempdir().unwrap();
    let dom = tokio::task::spawn_blocking({
        let (p, u) = (profile.path().to_owned(), url.clone());
        move || chromium(&p, &u, "--dump-dom")
    })
    .await
    .unwrap();
    for needle in [
        "data-loaded=\"true\"",
        "class=\"card selected\" data-name=\"churn\"",
        "serving <b>v1</b>",
        "<span class=\"badge production\">production</span>",
        "class=\"chart\" data-feature=\"tenure_months\"",
        "class=\"chart\" data-feature=\"payment_method\"",
        "fill=\"#d64545\"",
        "<span class=\"badge drift\">drift</span>",
        "monitor.drift_detected",
        "model.promoted",
    ] {
        assert!(dom.contains(needle), "the rendered page lacks {needle:?}:\n{dom}");
    }
    assert!(!dom.contains("id=\"error\">·"), "the page reported an error:\n{dom}");

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let (p, u, s) = (profile.path().to_owned(), url.clone(), shot.clone());
        move || chromium(&p, &u, &format!("--screenshot={}", s.display()))
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
}
