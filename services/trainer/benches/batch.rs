//! `just bench-batch`: a model trained as the trainer trains it, then a Parquet file scored in
//! bulk as `mlops score` and batch jobs score it (`mlops_data::score_to_parquet`: read a batch at
//! a time, scored on every core, written as Parquet with the answers), timed from opening the
//! input to closing the output, with the process's peak resident memory.
//!
//! Usage: cargo bench -p mlops-trainer --bench batch -- SPEC.yaml TRAIN.csv ROWS.parquet OUT.parquet [all|none]
//! (`none`: the answers alone, without the input's columns, as `mlops score --keep ''` writes them)

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (spec, train, rows, out, keep) = match args.as_slice() {
        [spec, train, rows, out] => (spec, train, rows, out, "all"),
        [spec, train, rows, out, keep] => (spec, train, rows, out, keep.as_str()),
        _ => anyhow::bail!("usage: batch SPEC.yaml TRAIN.csv ROWS.parquet OUT.parquet [all|none]"),
    };
    let spec = mlops_shared::spec::PipelineSpec::from_yaml(&std::fs::read_to_string(spec)?)?;
    let artifact = mlops_trainer::train::train(&spec, &[(train.clone(), std::fs::read(train)?)])?.artifact;
    let started = Instant::now();
    let input = std::fs::File::open(rows)?;
    let batches = mlops_data::open(mlops_data::Source::File(input), "rows.parquet", &Default::default())?;
    let scorer = mlops_data::Scorer {
        model: &artifact,
        version: 1,
        artifact_sha256: "bench",
        batch_id: "bench",
        keep: (keep == "none").then_some(&[]),
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let output = std::io::BufWriter::new(std::fs::File::create(out)?);
    let done = mlops_data::score_to_parquet(&scorer, batches.read_ahead(2), threads, output, |_| ())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "mlops {:<9} {} rows in {secs:.2} s: {:.0} rows/s (read, scored, written with {keep} input columns), peak {:.0} MB resident",
        spec.training.algorithm.as_str(),
        done.rows,
        done.rows as f64 / secs,
        peak_rss_mb()
    );
    Ok(())
}

/// This process's peak resident memory, from /proc.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}
