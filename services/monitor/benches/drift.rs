//! `just bench-drift`: every feature's drift between a reference and a current sample, from raw
//! columns, as the monitor computes it (the test chosen per feature, the reference profiled as a
//! model's training data is).
//!
//!     drift DIR      reads DIR/drift.json, DIR/ref.f64 and DIR/cur.f64 (bench/drift_gen.py)
//!
//! Prints the time to profile the reference (done once per model, at training), the time for the
//! drift of all features (each window), each feature's test and score, and the drifted share.
//! Features are spread over the machine's cores.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use mlops_monitor::drift::{Current, Reference, choice, judge};
use mlops_shared::model::FeatureProfile;
use mlops_shared::spec::MonitoringSpec;

#[derive(serde::Deserialize)]
struct Layout {
    rows: usize,
    numeric: Vec<String>,
    categorical: BTreeMap<String, usize>,
}

fn columns(path: &str, rows: usize, n: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let bytes = std::fs::read(path).with_context(|| path.to_owned())?;
    anyhow::ensure!(bytes.len() == rows * n * 8, "{path}: {} bytes, expected {}", bytes.len(), rows * n * 8);
    Ok(bytes
        .chunks_exact(rows * 8)
        .map(|col| col.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
        .collect())
}

/// Runs `f` on every index, spread over the cores, in index order of the results.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).min(n.max(1));
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let chunks: Vec<_> = out.chunks_mut(n.div_ceil(threads)).enumerate().collect();
        for (c, chunk) in chunks {
            let f = &f;
            s.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(f(c * n.div_ceil(threads) + k));
                }
            });
        }
    });
    out.into_iter().map(|v| v.expect("every slot filled")).collect()
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().skip(1).find(|a| a != "--bench").context("usage: drift DIR")?;
    let layout: Layout = serde_json::from_slice(&std::fs::read(format!("{dir}/drift.json"))?)?;
    let names: Vec<(String, Option<usize>)> = layout
        .numeric
        .iter()
        .map(|n| (n.clone(), None))
        .chain(layout.categorical.iter().map(|(n, k)| (n.clone(), Some(*k))))
        .collect();
    let reference = columns(&format!("{dir}/ref.f64"), layout.rows, names.len())?;
    let current = columns(&format!("{dir}/cur.f64"), layout.rows, names.len())?;

    // A training frame's numeric columns are `Option<f64>` already; laying them out so is not timed.
    let optional: Vec<Vec<Option<f64>>> = reference.iter().map(|c| c.iter().map(|&x| Some(x)).collect()).collect();
    let started = Instant::now();
    let references = parallel(names.len(), |i| match names[i].1 {
        None => Reference::from_profile(&FeatureProfile::numeric(&names[i].0, &optional[i]), layout.rows as u64),
        Some(k) => {
            let mut counts = vec![0u64; k + 1];
            for &x in &reference[i] {
                counts[(x as usize).min(k)] += 1;
            }
            let n = layout.rows as f64;
            Reference::Categorical {
                categories: (0..k).map(|c| c.to_string()).collect(),
                shares: counts.iter().map(|&c| c as f64 / n).collect(),
                rows: layout.rows as u64,
            }
        }
    });
    let profiled = started.elapsed();

    let spec = MonitoringSpec::default();
    let started = Instant::now();
    let drift = parallel(names.len(), |i| {
        let window = match names[i].1 {
            None => Current::Numeric(current[i].clone()),
            Some(k) => {
                let mut counts = vec![0u64; k + 1];
                for &x in &current[i] {
                    counts[(x as usize).min(k)] += 1;
                }
                Current::Categorical(counts)
            }
        };
        let (method, threshold) = choice(&spec, &names[i].0, &references[i], window.len());
        judge(&names[i].0, method, threshold, &references[i], &window)
    });
    let judged = started.elapsed();
    for f in &drift {
        println!("{:<10} {:<15} {:>10.6} {}", f.feature, f.method, f.score, if f.drifted { "drifted" } else { "" });
    }
    let share = drift.iter().filter(|f| f.drifted).count() as f64 / drift.len() as f64;
    println!(
        "mlops: {} x {} rows x {} features: reference profile {:.3} s, drift {:.3} s, total {:.3} s; drifted share {share:.2}",
        layout.rows,
        layout.rows,
        names.len(),
        profiled.as_secs_f64(),
        judged.as_secs_f64(),
        (profiled + judged).as_secs_f64()
    );
    Ok(())
}
