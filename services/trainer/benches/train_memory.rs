//! `just bench-train` (memory): trains boosted trees as the trainer does — the datasets read
//! from their files, split, preprocessed, binned, fitted, scored on the holdout — and reports the
//! process's peak resident memory, beside the rows and the seconds it took.
//!
//! Usage: cargo bench -p mlops-trainer --bench train_memory -- SPEC.yaml DATA.csv...

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::Instant;

use mlops_shared::spec::Algorithm;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [spec, files @ ..] = args.as_slice() else {
        anyhow::bail!("usage: train_memory SPEC.yaml DATA.csv...");
    };
    let mut spec = mlops_shared::spec::PipelineSpec::from_yaml(&std::fs::read_to_string(spec)?)?;
    spec.training.algorithm = Algorithm::GradientBoosting;
    let mut bytes = 0;
    let mut datasets = Vec::new();
    for f in files {
        let file = std::fs::File::open(f)?;
        bytes += file.metadata()?.len();
        datasets.push((f.clone(), mlops_data::Source::File(file)));
    }
    let started = Instant::now();
    let trained = mlops_trainer::train::train_sources(&spec, &datasets, &mut |_| {})?;
    let m = &trained.artifact.manifest;
    println!(
        "gbt       train_s={:.3} peak_mb={:.0} rows={} input_mb={:.0} holdout_auc={:.4}",
        started.elapsed().as_secs_f64(),
        peak_rss()? as f64 / 1e6,
        m.training_rows + m.holdout_rows,
        bytes as f64 / 1e6,
        m.metrics.get("roc_auc").copied().unwrap_or(f64::NAN),
    );
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kb * 1024)
}
