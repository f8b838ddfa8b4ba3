//! The deployer as a third-party Open Inference Protocol client sees it: NVIDIA's `tritonclient`
//! (HTTP and gRPC), the client KServe and Triton users already have, runs
//! `integration-tests/oip/tritonclient_check.py` against a served model. The client is installed
//! from PyPI into a virtual environment under `target/` once (about 10 s), pinned.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mlops_integration_tests::{TestApp, sample};

const T: Duration = Duration::from_secs(90);
const TRITONCLIENT: &str = "tritonclient[http,grpc]==2.73.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvidias_tritonclient_speaks_to_the_deployer_over_http_and_grpc() {
    let app = TestApp::start().await;
    let python = tokio::task::spawn_blocking(|| {
        mlops_integration_tests::python_venv("tritonclient-venv", &[TRITONCLIENT], |venv| {
            Command::new(venv.join("bin/python"))
                .args(["-c", "import tritonclient.grpc, tritonclient.http"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .join("bin/python")
    })
    .await
    .unwrap();
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 61, sample::Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    let host_port = app.stack.url("deployer").trim_start_matches("http://").to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oip").join("tritonclient_check.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([&host_port, "churn", "1"])
        .output()
        .await
        .expect("running the tritonclient check");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && printed.contains("all checks passed"), "{printed}");
    // Both transports really ran every check.
    for kind in ["http", "grpc"] {
        let passed = printed.lines().filter(|l| l.starts_with(&format!("ok   {kind} "))).count();
        assert_eq!(passed, 17, "{kind}:\n{printed}");
    }
}
