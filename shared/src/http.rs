//! The HTTP side every service shares: `/healthz` (200 once ready) and `/metrics` (Prometheus),
//! merged with a service's own routes (gRPC included) and served on one already-bound listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Whether the service is ready to take work; `/healthz` answers 503 until it is.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the service ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `/healthz` and `/metrics`.
pub fn ops_router(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let ready = readiness.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    let handle = crate::telemetry::prometheus();
    handle.run_upkeep();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}

/// Runs a request that carries a W3C `traceparent` (gRPC metadata or an HTTP header) inside a
/// `request` span continuing that trace, so a call between services joins the caller's trace.
/// Requests without one get no span: the serving hot path pays nothing.
async fn continue_trace(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument as _;
    let Some(parent) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let span = tracing::info_span!("request", path = %req.uri().path());
    crate::telemetry::set_parent(&span, &parent);
    next.run(req).instrument(span).await
}

/// Serves `router` (HTTP/1.1 and h2c, so gRPC shares the port; over TLS when `tls` is given, h2 or
/// HTTP/1.1 by ALPN) until `shutdown` fires, then lets in-flight requests finish. A request that
/// carries a trace context continues that trace.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;
    let router = router.layer(axum::middleware::from_fn(continue_trace));
    let stop = async move { shutdown.cancelled().await };
    match tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config)?;
            axum::serve(listener, router).with_graceful_shutdown(stop).await?;
        }
        None => {
            // Without TCP_NODELAY, small gRPC responses wait out the peer's delayed ACK (about 40 ms).
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router).with_graceful_shutdown(stop).await?;
        }
    }
    Ok(())
}
