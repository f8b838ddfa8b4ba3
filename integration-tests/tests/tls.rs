//! TLS on every service's port: the whole cascade runs with each service serving only TLS (and
//! calling the registry over it), predictions are answered over HTTPS and gRPC with TLS, the CLI
//! trusts the platform's CA by `--tls-ca`, and a client that does not trust it, or speaks plain
//! HTTP, gets nothing. Every client here is handed the CA it trusts; nothing is set for the whole
//! process, so this file could hold more tests, each with a CA of its own.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mlops_integration_tests::{TestApp, client, rows_json, sample};

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_tls_and_the_cascade_and_predictions_run_over_it() {
    let certs = tempfile::tempdir().unwrap();
    let c = mlops_integration_tests::Certificates::make(certs.path());
    let (ca, cert, key) = (c.ca, c.server_cert, c.server_key);
    let app = TestApp::start_with(&[("MLOPS_TLS_CERT", &cert), ("MLOPS_TLS_KEY", &key), ("MLOPS_TLS_CA", &ca)]).await;
    let deployer = app.stack.remote("deployer");
    assert!(deployer.url.starts_with("https://127.0.0.1:"), "{deployer:?}");
    assert_eq!(deployer.ca.as_deref(), Some(Path::new(&ca)), "the stack hands out the CA its services trust");

    // The cascade: the CLI's clients (apply, upload) speak TLS, and so do the deployer and the
    // evaluator when they ask the registry.
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 31, sample::Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    let rows = sample::customers(3, 32, sample::Variant::Normal);
    let body = client::predict(&deployer, "churn", &rows_json(&rows)).await.expect("prediction over HTTPS");
    assert_eq!(body["model_version"], "1", "{body}");
    // The URL alone carries no CA, so the same call is refused.
    let refused = client::predict(&deployer.url, "churn", &rows_json(&rows)).await;
    assert!(refused.is_err(), "{refused:?}");

    use mlops_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    let channel = mlops_shared::tls::endpoint(&deployer.url, Some(Path::new(&ca)))
        .unwrap()
        .connect()
        .await
        .expect("gRPC over TLS");
    let mut grpc = GrpcInferenceServiceClient::new(channel);
    let ready = grpc
        .model_ready(mlops_proto::inference::ModelReadyRequest { name: "churn".into(), version: String::new() })
        .await
        .expect("gRPC call over TLS");
    assert!(ready.into_inner().ready);

    // The CLI, trusting the CA by flag.
    let out = Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--tls-ca", &ca, "--registry-url", &app.stack.url("registry"), "--deployer-url", &deployer.url])
        .args(["deployments"])
        .env_remove("MLOPS_TLS_CA")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("churn") && said.contains("no release in progress"), "{said}");

    // Without the CA the certificate is not trusted, and plain HTTP gets no answer.
    let untrusting = client::http_client_builder(None).unwrap().timeout(Duration::from_secs(5)).build().unwrap();
    let refused = untrusting.get(format!("{}/v2/health/ready", deployer.url)).send().await;
    assert!(refused.is_err(), "{refused:?}");
    let plain = deployer.url.replace("https://", "http://");
    let refused = untrusting.get(format!("{plain}/v2/health/ready")).send().await;
    assert!(refused.is_err() || !refused.unwrap().status().is_success());
    // The port still serves trusting clients after those attempts.
    let trusting = client::http_client_builder(Some(Path::new(&ca))).unwrap().build().unwrap();
    let ok = trusting.get(format!("{}/v2/health/ready", deployer.url)).send().await.unwrap();
    assert!(ok.status().is_success());
}
