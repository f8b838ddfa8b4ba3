//! `just bench-data`: read + validate + profile one dataset file against a spec, as the validator
//! does (streamed Arrow batches), and print the time and the process's peak resident memory.
//!
//! Usage: cargo bench -p mlops-validator --bench validate -- SPEC.yaml DATA_FILE [RUNS]

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::Instant;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [spec, data, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: validate SPEC.yaml DATA_FILE [RUNS]");
    };
    let runs: usize = rest.first().map_or(Ok(3), |r| r.parse())?;
    let spec = mlops_shared::spec::PipelineSpec::from_yaml(&std::fs::read_to_string(spec)?)?;
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let file = std::fs::File::open(data)?;
        let numeric = spec.numeric_features();
        let batches = mlops_data::open_typed(mlops_data::Source::File(file), data, &Default::default(), &numeric);
        if std::env::var_os("MLOPS_BENCH_READ_ONLY").is_some() {
            // Decoding alone, to see how the time splits between reading and checking.
            rows = batches?.map(|b| b.map(|b| b.num_rows() as u64)).sum::<Result<u64, _>>()?;
            times.push(started.elapsed().as_secs_f64());
            continue;
        }
        let report = mlops_validator::checks::validate(batches, &spec, None, Default::default(), Default::default());
        times.push(started.elapsed().as_secs_f64());
        rows = report.rows;
        anyhow::ensure!(
            report.profile.columns.len() == spec.features.len() + 1,
            "profile incomplete: {}",
            report.summary()
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "rows={rows} runs={runs} median_s={:.3} min_s={:.3} peak_rss_mb={:.0}",
        times[times.len() / 2],
        times[0],
        peak_rss_mb()
    );
    Ok(())
}
