//! `just soak`: the platform under steady load for a bounded time, as production runs it (release
//! binaries, a private nats-server). New data arrives every minute, so a model is trained, judged
//! and hot-swapped every minute; clients send single-row predictions at a fixed rate throughout;
//! every prediction is logged and windowed for drift, and labels arrive for a share of them.
//!
//! Every 15 s it samples each process's resident memory (`/proc/<pid>/status`), every durable
//! consumer's backlog (undelivered + unacknowledged), failed requests and dead letters. At the end
//! it prints and writes `target/soak-report.md`: memory after warm-up against the end, the largest
//! backlog, and the counts. It exits non-zero if any service's memory grew by 10 % or more, a
//! request failed, anything was dead-lettered, or a backlog was still growing at the end.
//!
//! Usage: cargo bench -p mlops-integration-tests --bench soak -- MINUTES [PREDICTIONS_PER_SEC]

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use mlops_cli::stack::{SERVICES, Stack, StackOptions};
use mlops_cli::{client, sample};

/// Resident memory of `pid` in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The nats-server's pid (the stack's child), from `pgrep`.
fn nats_pid(store: &std::path::Path) -> Option<u32> {
    let out = std::process::Command::new("pgrep").args(["-f", &store.display().to_string()]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
}

/// Every durable consumer's backlog: messages not yet delivered plus delivered and unacknowledged.
async fn backlogs(js: &async_nats::jetstream::Context) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for stream in ["MLOPS_EVENTS", "MLOPS_JOBS", "MLOPS_PREDICTIONS"] {
        let Ok(s) = js.get_stream(stream).await else { continue };
        let mut infos = s.consumers();
        while let Some(Ok(info)) = infos.next().await {
            if let Some(name) = info.config.durable_name.clone() {
                out.insert(format!("{stream}/{name}"), info.num_pending + info.num_ack_pending as u64);
            }
        }
    }
    out
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let minutes: f64 = args.first().context("usage: soak MINUTES [PREDICTIONS_PER_SEC]")?.parse()?;
    let rate: u64 = args.get(1).map_or(Ok(2000), |r| r.parse())?;
    let total = Duration::from_secs_f64(minutes * 60.0);
    let warmup = total / 6;
    let dir = tempfile::tempdir()?;
    let mut opts = StackOptions::beside_current_exe(dir.path().to_path_buf())?;
    opts.log_dir = Some(dir.path().join("logs"));
    opts.env.push(("RUST_LOG".into(), "warn".into()));
    let stack = Stack::start(opts).await?;
    let nats = async_nats::connect(mlops_shared::bus::server_addrs(&stack.nats_url)?).await?;
    let js = async_nats::jetstream::new(nats.clone());
    let spec = mlops_cli::EXAMPLE_SPEC
        .replace("  window: 200\n", "  window: 1000\n")
        .replace("  cooldown_secs: 3600\n", "  cooldown_secs: 60\n  performance: {metric: accuracy, min: 0.5}\n")
        .replace(
            "  log_sample: 1.0\n",
            &format!("  log_sample: {}\n", std::env::var("SOAK_LOG_SAMPLE").unwrap_or("1.0".into())),
        );
    client::apply_pipeline(&stack.url("registry"), &spec).await?;
    let (ingest, deployer, registry) = (stack.url("ingest"), stack.url("deployer"), stack.url("registry"));
    client::upload(&ingest, "churn", "soak-0.csv", sample::csv(3000, 1, sample::Variant::Normal).into_bytes()).await?;
    let first = tokio::time::Instant::now() + Duration::from_secs(120);
    while client::models(&registry, "churn").await.map(|v| v.is_empty()).unwrap_or(true) {
        anyhow::ensure!(tokio::time::Instant::now() < first, "no first model within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let probe = sample::customers(1, 3, sample::Variant::Normal);
    let probe = serde_json::json!([{
        "tenure_months": probe[0].tenure_months, "monthly_charges": probe[0].monthly_charges,
        "support_calls": probe[0].support_calls, "age": probe[0].age, "contract": probe[0].contract,
        "payment_method": probe[0].payment_method,
    }]);
    while let Err(e) = client::predict(&deployer, "churn", &probe).await {
        anyhow::ensure!(tokio::time::Instant::now() < first, "the first model does not serve: {e:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("soak: {minutes} min, {rate} predictions/s, data every 60 s; warm-up {warmup:?}; deployer {deployer}");

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let labelled = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    // OIP v2 REST bodies of one row each, sent over one pooled HTTP client (keep-alive), as a
    // serving client would.
    let rows: Vec<String> = sample::customers(500, 2, sample::Variant::Normal)
        .iter()
        .map(|c| {
            let num = |name: &str, v: Option<f64>| serde_json::json!({"name": name, "datatype": "FP64", "shape": [1], "data": [v]});
            let cat = |name: &str, v: &str| serde_json::json!({"name": name, "datatype": "BYTES", "shape": [1], "data": [v]});
            serde_json::json!({"inputs": [
                num("tenure_months", Some(c.tenure_months)), num("monthly_charges", Some(c.monthly_charges)),
                num("support_calls", Some(c.support_calls)), num("age", c.age),
                cat("contract", c.contract), cat("payment_method", c.payment_method),
            ]})
            .to_string()
        })
        .collect();
    let rows = Arc::new(rows);
    let clients = 8u64;
    let http = reqwest::Client::new();
    let infer = format!("{deployer}/v2/models/churn/infer");
    let mut load = Vec::new();
    for k in 0..clients {
        let (http, infer, stop, served, failed, errors, labelled, rows) = (
            http.clone(),
            infer.clone(),
            stop.clone(),
            served.clone(),
            failed.clone(),
            errors.clone(),
            labelled.clone(),
            rows.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(clients as f64 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = k as usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                i += clients as usize;
                let sent = http
                    .post(&infer)
                    .header("content-type", "application/json")
                    .body(rows[i % rows.len()].clone())
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status);
                let answer = match sent {
                    Ok(resp) => resp.json::<serde_json::Value>().await.map_err(anyhow::Error::from),
                    Err(e) => Err(e.into()),
                };
                match answer {
                    Ok(body) => {
                        served.fetch_add(1, Ordering::Relaxed);
                        // One in 20 predictions gets its label later.
                        let id = body["outputs"].as_array().and_then(|outs| {
                            outs.iter().find(|o| o["name"] == "prediction_id").and_then(|o| o["data"][0].as_str())
                        });
                        if i.is_multiple_of(20)
                            && let Some(id) = id
                        {
                            labelled
                                .lock()
                                .unwrap()
                                .push((id.to_owned(), if i.is_multiple_of(3) { "1" } else { "0" }.into()));
                        }
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut errs = errors.lock().unwrap();
                        if errs.len() < 10 {
                            errs.push(format!("{e:#}"));
                        }
                    }
                }
            }
        }));
    }

    let started = Instant::now();
    // (when, resident kB by process, backlog by consumer)
    type Sample = (Duration, BTreeMap<String, u64>, BTreeMap<String, u64>);
    let mut samples: Vec<Sample> = Vec::new();
    let (mut uploads, mut labels_sent) = (0u64, 0u64);
    let mut next_data = Duration::from_secs(60);
    let mut next_sample = Duration::ZERO;
    let nats_store = stack.nats.as_ref().map(|n| n.store_dir.clone());
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = started.elapsed();
        // Labels for what was predicted, as an outside system sends them.
        let batch: Vec<(String, String)> = std::mem::take(&mut *labelled.lock().unwrap());
        if !batch.is_empty() {
            let labels: Vec<serde_json::Value> =
                batch.iter().map(|(id, l)| serde_json::json!({"predictionId": id, "label": l})).collect();
            let body = serde_json::json!({"pipeline": "churn", "labels": labels});
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("content-type", "application/json");
            js.publish_with_headers("mlops.events.labels.arrived.churn", headers, body.to_string().into())
                .await?
                .await?;
            labels_sent += batch.len() as u64;
        }
        if now >= next_data {
            uploads += 1;
            let csv = sample::csv(3000, 100 + uploads, sample::Variant::Normal);
            if let Err(e) = client::upload(&ingest, "churn", &format!("soak-{uploads}.csv"), csv.into_bytes()).await {
                errors.lock().unwrap().push(format!("upload {uploads}: {e:#}"));
                failed.fetch_add(1, Ordering::Relaxed);
            }
            next_data += Duration::from_secs(60);
        }
        if now >= next_sample {
            let mut rss = BTreeMap::new();
            for s in SERVICES {
                if let Some(kb) = stack.pid_of(s).and_then(rss_kb) {
                    rss.insert(s.to_owned(), kb);
                }
            }
            if let Some(kb) = nats_store.as_deref().and_then(nats_pid).and_then(rss_kb) {
                rss.insert("nats-server".into(), kb);
            }
            let lag = backlogs(&js).await;
            let worst = lag.values().max().copied().unwrap_or(0);
            println!(
                "{:>6.0} s  served {:>9}  failed {}  max backlog {:>6}  rss MB {}",
                now.as_secs_f64(),
                served.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed),
                worst,
                rss.iter().map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1024.0)).collect::<Vec<_>>().join(", ")
            );
            samples.push((now, rss, lag));
            next_sample += Duration::from_secs(15);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await?;
    }
    let elapsed = started.elapsed();
    // Let the backlogs drain, then read them once more.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let drained = backlogs(&js).await;
    let versions = client::models(&registry, "churn").await?.len();
    let dead = js.get_stream("MLOPS_DLQ").await?.info().await?.state.messages;
    let mut sizes = String::new();
    for stream in ["MLOPS_PREDICTIONS", "MLOPS_EVENTS", "OBJ_datasets", "OBJ_models"] {
        let state = js.get_stream(stream).await?.info().await?.state.clone();
        let per = state.bytes.checked_div(state.messages).unwrap_or(0);
        sizes.push_str(&format!(
            "- `{stream}`: {} messages, {:.1} MB, {per} B per message\n",
            state.messages,
            state.bytes as f64 / 1e6
        ));
    }

    // Memory: the median of the three samples after warm-up against the median of the last three.
    let at_warmup: Vec<_> = samples.iter().filter(|(t, ..)| *t >= warmup).take(3).collect();
    let at_end: Vec<_> = samples.iter().rev().take(3).collect();
    let mut report = String::new();
    report.push_str(&format!(
        "# Soak: {:.1} min, {rate} predictions/s target, new data every 60 s\n\n\
         | process | RSS after warm-up (MB) | RSS at end (MB) | growth |\n|---|---|---|---|\n",
        elapsed.as_secs_f64() / 60.0
    ));
    let mut grew = Vec::new();
    let names: Vec<String> = samples.last().map(|(_, r, _)| r.keys().cloned().collect()).unwrap_or_default();
    for name in &names {
        let w = median(at_warmup.iter().filter_map(|(_, r, _)| r.get(name).copied()).collect());
        let e = median(at_end.iter().filter_map(|(_, r, _)| r.get(name).copied()).collect());
        let growth = if w > 0 { (e as f64 - w as f64) / w as f64 * 100.0 } else { 0.0 };
        if growth >= 10.0 && name != "nats-server" {
            grew.push(format!("{name} +{growth:.1} %"));
        }
        report.push_str(&format!(
            "| {name} | {:.1} | {:.1} | {growth:+.1} % |\n",
            w as f64 / 1024.0,
            e as f64 / 1024.0
        ));
    }
    let worst_backlog = samples.iter().flat_map(|(_, _, l)| l.values().copied()).max().unwrap_or(0);
    let left: u64 = drained.values().sum();
    let (served, failed) = (served.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    report.push_str(&format!(
        "\n- predictions served: {served} ({:.0}/s), failed requests: {failed}\n\
         - datasets uploaded: {}, model versions: {versions}, dead letters: {dead}\n\
         - labels sent: {labels_sent}\n\
         - largest consumer backlog in any sample: {worst_backlog}; left 10 s after the load stopped: {left}\n",
        served as f64 / elapsed.as_secs_f64(),
        uploads + 1,
    ));
    report.push_str(&sizes);
    let errs = errors.lock().unwrap().clone();
    if !errs.is_empty() {
        report.push_str(&format!("- first errors: {errs:?}\n"));
    }
    println!("\n{report}");
    let target = std::env::current_exe()?.ancestors().nth(3).context("target dir")?.to_path_buf();
    std::fs::write(target.join("soak-report.md"), &report)?;
    anyhow::ensure!(grew.is_empty(), "resident memory grew 10 % or more: {grew:?}");
    anyhow::ensure!(failed == 0, "{failed} requests failed: {errs:?}");
    anyhow::ensure!(dead == 0, "{dead} messages were dead-lettered");
    anyhow::ensure!(left < 1000, "consumers were still {left} messages behind 10 s after the load stopped");
    Ok(())
}
