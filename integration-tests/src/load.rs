//! Load for the benchmarks: a fixed number of requests in flight for a while, and the figures
//! (throughput, latency percentiles, errors) every target is measured by alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Figures of one run.
pub struct Figures {
    pub requests: usize,
    pub errors: usize,
    pub secs: f64,
    pub concurrency: usize,
    pub latencies_ms: Vec<f64>,
}

impl Figures {
    /// The `q` quantile of the latencies, in ms.
    pub fn quantile(&mut self, q: f64) -> f64 {
        self.latencies_ms.sort_unstable_by(f64::total_cmp);
        let n = self.latencies_ms.len();
        if n == 0 { f64::NAN } else { self.latencies_ms[((n as f64 * q).ceil() as usize).clamp(1, n) - 1] }
    }

    /// One line: `target`, requests per second, p50 and p99, and what they came from.
    pub fn line(&mut self, target: &str) -> String {
        let (p50, p99) = (self.quantile(0.5), self.quantile(0.99));
        format!(
            "{target:<14} {:>9.0} req/s  p50 {p50:>7.3} ms  p99 {p99:>7.3} ms  ({} requests, {} errors, {} in flight, {:.0} s)",
            self.requests as f64 / self.secs,
            self.requests,
            self.errors,
            self.concurrency,
            self.secs
        )
    }
}

/// Runs `send` from `concurrency` tasks for a warm-up second, then for `secs`; `send(i)` is the
/// i-th request of its task (tasks start at different `i`).
pub async fn load<F, Fut>(concurrency: usize, secs: u64, send: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let send = Arc::new(send);
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let send = send.clone();
            tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::with_capacity(1 << 16), 0, t * 31);
                loop {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    let ok = send(i).await;
                    i += 1;
                    if started >= warm_until {
                        lat.push(started.elapsed().as_secs_f64() * 1e3);
                        errors += usize::from(!ok);
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut figures = Figures { requests: 0, errors: 0, secs: secs as f64, concurrency, latencies_ms: Vec::new() };
    for t in tasks {
        let (lat, errors) = t.await.expect("load task");
        figures.requests += lat.len();
        figures.errors += errors;
        figures.latencies_ms.extend(lat);
    }
    figures
}

/// An HTTP client keeping `concurrency` connections.
pub fn http(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().expect("client")
}

/// POSTs `body`; whether it was answered 2xx in full.
pub async fn post(client: &reqwest::Client, url: &str, content_type: &str, body: String) -> bool {
    match client.post(url).header("content-type", content_type).body(body).send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// A process's resident memory, in MB.
pub fn rss_mb(pid: u32) -> f64 {
    status_kb(pid, "VmRSS:") / 1024.0
}

/// A process's peak resident memory, in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    status_kb(pid, "VmHWM:") / 1024.0
}

fn status_kb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
