//! Logs fit for collectors. Every service of the platform writes its log to a file, as `mlops up`
//! has them: the registry with `MLOPS_LOG_FORMAT=json`, the others in the default text format. A
//! pipeline applied with a W3C `traceparent` is logged by the registry inside that trace, so its
//! JSON line carries the caller's trace id; no file holds a terminal escape byte.

use std::time::Duration;

use mlops_integration_tests::{TestApp, client, wait_until};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_with_the_trace_id_and_no_log_file_has_colour() {
    let json = vec![("MLOPS_LOG_FORMAT".to_owned(), "json".to_owned())];
    let customize = |opts: &mut mlops_cli::stack::StackOptions| {
        opts.service_env.insert("registry".into(), json);
    };
    let app = TestApp::start_custom(&[], customize, async_nats::ConnectOptions::new()).await;

    // A caller's trace, as another service or a traced client sends it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(mlops_proto::ApplyPipelineRequest {
        spec_yaml: mlops_cli::EXAMPLE_SPEC.to_owned(),
        ..Default::default()
    });
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("valid metadata");
    request.metadata_mut().insert("traceparent", traceparent);
    let mut registry = client::registry(app.stack.remote("registry")).await.expect("the registry");
    registry.apply_pipeline(request).await.expect("the pipeline is applied");

    let applied =
        wait_until(T, || async { json_lines(&app.log("registry")).into_iter().find(|l| l["trace_id"] == trace_id) })
            .await;
    let applied = applied.unwrap_or_else(|| panic!("no line with trace {trace_id}:\n{}", app.log("registry")));
    assert_eq!(applied["message"], "pipeline applied", "{applied}");
    assert_eq!(applied["fields"]["pipeline"], "churn", "{applied}");
    assert_eq!(applied["span"]["name"], "request", "{applied}");
    assert_eq!(applied["level"], "INFO", "{applied}");

    let registry_log = app.log("registry");
    for line in json_lines(&registry_log) {
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(line.get(key).is_some(), "no {key}: {line}");
        }
    }
    for service in mlops_cli::stack::SERVICES {
        let log = app.log(service);
        assert!(!log.is_empty(), "{service} logged nothing");
        assert!(!log.contains('\x1b'), "{service}'s log has terminal escapes:\n{log}");
        if service != "registry" {
            assert!(!log.starts_with('{'), "{service} logs text by default:\n{log}");
        }
    }
}

/// Every complete line of `log` parsed as a JSON object; panics on one that is not.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .map(|line| match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) if value.is_object() => value,
            _ => panic!("not a JSON object: {line:?}"),
        })
        .collect()
}

/// A service that cannot start says why in one line on stderr and exits 1: no backtrace, even
/// with RUST_BACKTRACE=1 (here an unknown log format, refused before anything binds).
#[test]
fn a_service_that_cannot_start_says_why_in_one_line() {
    let bin = mlops_cli::stack::StackOptions::beside_current_exe(std::env::temp_dir()).expect("binaries").bin_dir;
    let out = std::process::Command::new(bin.join("mlops-validator"))
        .env("MLOPS_LOG_FORMAT", "xml")
        .env("MLOPS_LISTEN", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("running mlops-validator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("validator: error: ") && stderr.contains("MLOPS_LOG_FORMAT"), "{stderr}");
}
