//! `mlops demo`: the whole cascade on the bundled example, narrated. Starts the platform, applies
//! the churn spec, uploads the example data, follows the events until the model serves, then asks
//! it for predictions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::json;

use crate::events::{Decoded, decode};
use crate::stack::{Stack, StackOptions};
use crate::supervisor::RestartPolicy;
use crate::{EXAMPLE_SPEC, client};

/// What the demo measured.
#[derive(Debug)]
pub struct Outcome {
    pub arrival_to_serving: Duration,
    pub version: u64,
}

/// Runs the demo. With `keep_running` the platform stays up (until Ctrl-C) with its data in
/// `data_dir`. `tls_ca`, when given, is the CA the services' certificates are checked against
/// (should they serve TLS).
pub async fn run(
    data: Option<PathBuf>,
    data_dir: PathBuf,
    keep_running: bool,
    tls_ca: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let say = |msg: String| println!("{msg}");
    let csv = match &data {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => crate::sample::csv(3000, 42, crate::sample::Variant::Normal).into_bytes(),
    };
    let source = data.as_ref().map_or("generated churn sample".to_owned(), |p| p.display().to_string());

    say("▶ starting nats-server and the seven services".into());
    let started = Instant::now();
    let mut opts = StackOptions::beside_current_exe(data_dir.clone())?;
    opts.log_dir = Some(data_dir.join("logs"));
    if let Some(ca) = tls_ca {
        opts.set_tls_ca(ca)?;
    }
    let mut stack = Stack::start(opts).await?;
    say(format!(
        "  up in {} ms (NATS {}, logs in {})",
        started.elapsed().as_millis(),
        stack.nats_url,
        data_dir.join("logs").display()
    ));

    let result = follow(&stack, &csv, &source, &say).await;
    match (&result, keep_running) {
        (Ok(_), true) => {
            say(format!(
                "\nThe platform keeps running. Try:\n  curl {}/v2/models/churn\n  mlops --registry-url {} models list --pipeline churn\nCtrl-C stops it.",
                stack.url("deployer"),
                stack.url("registry")
            ));
            // Kept running, it is supervised as `mlops up` is: a service that exits is restarted.
            tokio::select! {
                () = mlops_shared::shutdown::wait_for_signal() => {}
                failed = stack.supervise(RestartPolicy::default(), |event| say(event.to_string())) => {
                    if let Err(e) = failed {
                        say(format!("  supervising the services failed: {e:#}"));
                    }
                }
            }
        }
        (Err(_), _) => say(format!("  logs: {}", data_dir.join("logs").display())),
        _ => {}
    }
    stack.stop(Duration::from_secs(10)).await;
    result
}

async fn follow(stack: &Stack, csv: &[u8], source: &str, say: &impl Fn(String)) -> anyhow::Result<Outcome> {
    let nats = async_nats::connect(&stack.nats_url).await.context("connecting to NATS")?;
    let mut events = nats.subscribe("mlops.events.>").await?;
    nats.flush().await?;

    let spec = mlops_shared::spec::PipelineSpec::from_yaml(EXAMPLE_SPEC)?;
    let p = client::apply_pipeline(&stack.remote("registry"), EXAMPLE_SPEC).await?;
    say(format!(
        "▶ pipeline `{}` applied (revision {}, spec {})",
        p.name,
        p.revision,
        mlops_shared::ids::short(&p.spec_hash)
    ));

    let arrival = Instant::now();
    let ds = client::upload(&stack.remote("ingest"), &p.name, source, csv.to_vec()).await?;
    say(format!(
        "▶ uploaded {} bytes from {source}: dataset {}",
        ds.size_bytes,
        mlops_shared::ids::short(&ds.dataset_id)
    ));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let version = loop {
        let msg = tokio::time::timeout_at(deadline, events.next())
            .await
            .context("no promotion within 120 s")?
            .context("event subscription ended")?;
        let seen = decode(&msg.subject, &msg.payload);
        if seen.pipeline != spec.name.as_str() {
            continue;
        }
        say(format!("  {:>6} ms  {:<16} {}", arrival.elapsed().as_millis(), seen.kind, seen.summary));
        match seen.payload {
            Decoded::Rejected(r) => bail!("the data was rejected: {}", r.reason),
            Decoded::Evaluated(e) if !e.passed => bail!("the model failed its gates"),
            Decoded::Promoted(e) => break e.version,
            _ => {}
        }
    };
    let arrival_to_serving = arrival.elapsed();
    say(format!("▶ data arrival → model serving: {} ms", arrival_to_serving.as_millis()));

    let rows = json!([
        {"tenure_months": 2, "monthly_charges": 95.5, "support_calls": 4, "age": 29, "contract": "month-to-month", "payment_method": "electronic-check"},
        {"tenure_months": 60, "monthly_charges": 40.0, "support_calls": 0, "age": 58, "contract": "two-year", "payment_method": "bank-transfer"},
        {"tenure_months": 14, "monthly_charges": 70.0, "support_calls": 1, "age": null, "contract": "one-year", "payment_method": "card"},
    ]);
    let t = Instant::now();
    let body = client::predict(&stack.remote("deployer"), spec.name.as_str(), &rows).await?;
    say(format!(
        "▶ predictions from model v{} over OIP v2 REST ({} ms):",
        body["model_version"].as_str().unwrap_or("?"),
        t.elapsed().as_millis()
    ));
    let probs = body["outputs"][0]["data"].as_array().cloned().unwrap_or_default();
    for (row, prob) in rows.as_array().expect("literal array").iter().zip(probs) {
        say(format!(
            "  churn probability {:.3}  for tenure {} months, {} contract",
            prob.as_f64().unwrap_or(f64::NAN),
            row["tenure_months"],
            row["contract"].as_str().unwrap_or("")
        ));
    }
    Ok(Outcome { arrival_to_serving, version })
}
