//! One trace spans the cascade: the services export their spans over OTLP/gRPC to a collector
//! this test runs (the real protocol, the real exporters), and the spans of ingest, validator,
//! trainer, evaluator, registry and deployer handling one dataset's events share one trace id,
//! across NATS headers and gRPC metadata alike.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlops_integration_tests::{TestApp, sample, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

const T: Duration = Duration::from_secs(90);

/// (trace id, service, span name) of every span received.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(String, String, String)>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((hex::encode(&span.trace_id), service.clone(), span.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_data_arrival_to_promotion_across_the_services() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let app = TestApp::start_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export every 200 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ])
    .await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(1500, 301, sample::Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;

    // Every service, and the registry's `request` span: trace context crosses gRPC too, so the
    // registry serving the evaluator's and the deployer's calls for the version they judge and
    // promote works inside the same trace.
    let wanted: BTreeSet<&str> =
        ["ingest", "validator", "trainer", "evaluator", "registry", "deployer", "registry/request"].into();
    let found = wait_until(T, || async {
        let spans = collector.0.lock().unwrap().clone();
        let mut by_trace: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (trace, service, name) in &spans {
            let seen = by_trace.entry(trace.clone()).or_default();
            seen.insert(service.clone());
            if name == "request" {
                seen.insert(format!("{service}/request"));
            }
        }
        by_trace.into_iter().find(|(_, services)| wanted.iter().all(|w| services.contains(*w)))
    })
    .await;
    let spans = collector.0.lock().unwrap().clone();
    let (trace, services) = found.unwrap_or_else(|| {
        let mut by_trace: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (trace, service, _) in &spans {
            by_trace.entry(trace).or_default().insert(service);
        }
        panic!("no trace holds spans of all of {wanted:?}; traces: {by_trace:?}")
    });
    assert_eq!(trace.len(), 32, "{trace}");
    assert!(services.len() >= wanted.len(), "{services:?}");
    // The cascade's spans are not scattered over other traces: the ingest span that began it is in it.
    let names: Vec<&String> =
        spans.iter().filter(|(t, s, _)| *t == trace && s == "ingest").map(|(_, _, n)| n).collect();
    assert!(!names.is_empty(), "{spans:?}");
}
