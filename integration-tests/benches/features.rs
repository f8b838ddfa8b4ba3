//! `just bench-features`: the feature store against Feast, on the files `bench/features_gen.py`
//! writes.
//!
//!     features ours-online DIR SECONDS    the platform (release binaries, a private nats-server):
//!                                         three views applied, view_*.parquet uploaded and
//!                                         materialised (its time from upload to
//!                                         `features.materialised`), the deployer's replicas
//!                                         of the views current, then POST /v1/features
//!     features http URL ENTITIES SECONDS  the same requests to another server (Feast's
//!                                         `/get-online-features`)
//!     features ours-offline DIR [ROUNDS]  the point-in-time training set of entities.parquet
//!                                         against history.parquet (read ROUNDS times over as one
//!                                         log, 1 by default), in this process: seconds and peak
//!                                         resident memory
//!
//! Online load: CONCURRENCY requests in flight, each for 1 or 100 random entities and all 30
//! features of the three views, in Feast's request form (which /v1/features takes as is), for
//! SECONDS after a one-second warm-up; then one request in flight, for latency alone.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use mlops_cli::client;
use mlops_cli::stack::{Stack, StackOptions};
use mlops_features::Written;
use mlops_features::training::{Lookup, join, write_parquet};
use mlops_integration_tests::load::{http, load, peak_rss_mb, post, rss_mb};
use mlops_shared::spec::FeatureViewSpec;
use prost::Message as _;

const CONCURRENCY: usize = 16;

fn view_yaml(name: &str) -> String {
    let features: Vec<String> = (0..10).map(|f| format!("  - {{name: f{f}, type: numeric, nullable: true}}")).collect();
    format!(
        "kind: feature_view\nname: {name}\nentities: [entity_id]\nevent_time: event_ts\ningestion_time: written_at\n\
         ttl: 30d\nfeatures:\n{}\n",
        features.join("\n")
    )
}

/// The body asking every feature of the three views for `keys` random entities (the i-th request).
fn body(i: usize, keys: usize, entities: u64) -> String {
    let features: Vec<String> = (0..3).flat_map(|v| (0..10).map(move |f| format!("v{v}:f{f}"))).collect();
    let ids: Vec<u64> =
        (0..keys as u64).map(|k| (i as u64 * 100 + k).wrapping_mul(0x9E37_79B9_7F4A_7C15) % entities).collect();
    serde_json::json!({"features": features, "entities": {"entity_id": ids}, "full_feature_names": true}).to_string()
}

/// Loads `url` with requests of 1 and of 100 entities, after checking one answer holds values.
async fn online(target: &str, url: &str, entities: u64, secs: u64) -> anyhow::Result<()> {
    let check: serde_json::Value = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body(7, 3, entities))
        .send()
        .await?
        .json()
        .await?;
    let values = &check["results"][1]["values"];
    anyhow::ensure!(values[0].is_number(), "{target}: no value in {check}");
    // Throughput under CONCURRENCY requests in flight; then latency with one at a time, where
    // no request waits behind another (the load generator shares the two cores).
    for (keys, concurrency) in [(1, CONCURRENCY), (100, CONCURRENCY), (1, 1)] {
        let (client, url) = (http(concurrency), url.to_owned());
        let mut f = load(concurrency, secs, move |i| {
            let (client, url) = (client.clone(), url.clone());
            async move { post(&client, &url, "application/json", body(i, keys, entities)).await }
        })
        .await;
        println!("{}  [{keys} entities x 30 features]", f.line(target));
    }
    Ok(())
}

async fn ours_online(dir: &str, secs: u64) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let mut opts = StackOptions::beside_current_exe(work.path().to_path_buf())?;
    opts.log_dir = Some(work.path().join("logs"));
    let stack = Stack::start(opts).await?;
    let nats = async_nats::connect(&stack.nats_url).await?;
    let mut materialised = nats.subscribe("mlops.events.features.materialised.>").await?;
    let mut rejected = nats.subscribe("mlops.events.data.rejected.>").await?;
    for v in 0..3 {
        client::apply_pipeline(&stack.url("registry"), &view_yaml(&format!("v{v}"))).await?;
    }
    let started = Instant::now();
    let mut rows = 0;
    for v in 0..3 {
        let path = std::path::PathBuf::from(format!("{dir}/view_{v}.parquet"));
        let header = mlops_proto::UploadHeader {
            pipeline: format!("v{v}"),
            source: path.display().to_string(),
            ..Default::default()
        };
        client::upload_file(&stack.url("ingest"), header, &path).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    for _ in 0..3 {
        let next = async {
            tokio::select! {
                m = materialised.next() => Ok(m),
                r = rejected.next() => Err(r),
            }
        };
        let m = match tokio::time::timeout_at(deadline, next).await.context("not materialised within 900 s")? {
            Ok(m) => mlops_proto::FeaturesMaterialised::decode(m.context("subscription ended")?.payload)?,
            Err(r) => anyhow::bail!(
                "a view's batch was refused: {:?}",
                r.map(|r| mlops_proto::DataRejected::decode(r.payload))
            ),
        };
        rows += m.rows;
        println!(
            "{:<14} {}: {} rows offline, {} entities online, {:.1} s after its arrival",
            "mlops",
            m.pipeline,
            m.rows,
            m.entities_written,
            m.lag_ms as f64 / 1000.0
        );
    }
    let secs_taken = started.elapsed().as_secs_f64();
    println!(
        "{:<14} materialised {rows} rows (upload, validation, offline file, online store) in {secs_taken:.1} s ({:.0} rows/s)",
        "mlops",
        rows as f64 / secs_taken
    );
    let entities = rows / 3;
    let pid = stack.pid_of("deployer").context("deployer pid")?;
    let url = format!("{}/v1/features", stack.url("deployer"));
    // The first read of each view starts the deployer's replica of it; the load runs once all
    // three hold every entity (until then reads go to NATS KV, as beyond the replica's limit).
    let started = Instant::now();
    post(&http(1), &url, "application/json", body(0, 1, entities)).await;
    let metrics = format!("{}/metrics", stack.url("deployer"));
    let current = || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        let current = text.lines().filter(|l| l.starts_with("mlops_feature_replica_current") && l.ends_with(" 1"));
        (current.count() == 3).then_some(())
    };
    mlops_integration_tests::wait_until(Duration::from_secs(600), current).await.context("replicas not current")?;
    println!(
        "{:<14} the deployer's replicas of the three views current {:.1} s after the first read; {:.1} MB resident",
        "mlops",
        started.elapsed().as_secs_f64(),
        rss_mb(pid)
    );
    online("mlops /v1", &url, entities, secs).await?;
    println!("{:<14} {:>9.1} MB resident (deployer, with its replicas) after load", "mlops", rss_mb(pid));
    Ok(())
}

fn ours_offline(dir: &str, rounds: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let view = FeatureViewSpec::from_yaml(&view_yaml("history"))?;
    let entities = std::fs::File::open(format!("{dir}/entities.parquet"))?;
    let batches: Vec<_> =
        mlops_data::open(mlops_data::Source::File(entities), "entities.parquet", &Default::default())?
            .collect::<Result<_, _>>()?;
    // The history `rounds` times over as one log: its records again (each a correction of itself
    // with the same values), so the answer is the same and only the log's length grows.
    let history = format!("{dir}/history.parquet");
    let read = move |_| -> mlops_features::training::Log<'static> {
        let batches = std::fs::File::open(&history)
            .map_err(|e| mlops_data::DataError::Io(e.to_string()))
            .and_then(|f| mlops_data::open(mlops_data::Source::File(f), "history.parquet", &Default::default()));
        let batches: Box<dyn Iterator<Item = _> + Send> = match batches {
            Ok(b) => Box::new(b.read_ahead(2).map(|b| b.map_err(mlops_features::FeatureError::from))),
            Err(e) => Box::new(std::iter::once(Err(e.into()))),
        };
        mlops_features::training::file_log("history.parquet", batches)
    };
    // Each reading opened when the one before is done.
    let log = (0..rounds).flat_map(read);
    let features: Vec<String> = (0..10).map(|f| format!("f{f}")).collect();
    let lookup = Lookup {
        view: &view,
        features: features.iter().map(String::as_str).collect(),
        log: Box::new(log),
        written: Written::Column("written_at"),
    };
    let joined = join(&[batches], &["entity_id".to_owned()], "event_timestamp", vec![lookup])?.remove(0);
    let join_secs = started.elapsed().as_secs_f64();
    let out = std::fs::File::create(format!("{dir}/ours-training.parquet"))?;
    write_parquet(joined.schema.clone(), &joined.batches, std::io::BufWriter::new(out))?;
    let rows: usize = joined.batches.iter().map(|b| b.num_rows()).sum();
    let s = &joined.stats[0].1;
    println!(
        "{:<14} training set of {rows} rows against the history (read {rounds}×) in {:.1} s (reading and joining {join_secs:.1} s), peak {:.0} MB resident ({} matched, {} unknown, {} absent)",
        "mlops",
        started.elapsed().as_secs_f64(),
        peak_rss_mb(std::process::id()),
        s.matched,
        s.unknown,
        s.absent
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ours-online", dir, secs] => ours_online(dir, secs.parse()?).await,
        ["http", url, entities, secs] => online("feast", url, entities.parse()?, secs.parse()?).await,
        ["ours-offline", dir] => ours_offline(dir, 1),
        ["ours-offline", dir, rounds] => ours_offline(dir, rounds.parse()?),
        _ => anyhow::bail!(
            "usage: features ours-online DIR SECS | features http URL ENTITIES SECS | features ours-offline DIR [ROUNDS]"
        ),
    }
}
