//! `mlops runs`: training runs from their records in the `jobs` bucket, and their progress live
//! from `mlops.progress.train.<pipeline>` as a progress bar per run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use futures::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mlops_shared::runs::{PROGRESS_PREFIX, Run, RunState, Runs};

/// One line per run, newest first.
pub fn table(runs: &[Run]) -> String {
    let mut out = format!(
        "{:<44} {:<12} {:<11} {:<10} {:>5}  {:<20} {:>9} {:<16}  ARTIFACT\n",
        "JOB", "PIPELINE", "REASON", "STATE", "DONE", "STARTED (UTC)", "SECONDS", "METRIC"
    );
    for r in runs {
        let started = if r.started_ms > 0 { r.started_ms } else { r.queued_ms };
        let started = chrono::DateTime::from_timestamp_millis(started)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let seconds = if r.finished_ms > 0 && r.started_ms > 0 {
            format!("{:.1}", (r.finished_ms - r.started_ms) as f64 / 1000.0)
        } else {
            "-".into()
        };
        let metric = mlops_shared::scoring::headline(|k| r.metrics.get(k).copied())
            .map_or_else(|| "-".to_owned(), |(name, value)| format!("{name} {value:.4}"));
        let _ = writeln!(
            out,
            "{:<44} {:<12} {:<11} {:<10} {:>4.0}%  {:<20} {:>9} {:<16}  {}",
            r.job_id,
            r.pipeline,
            r.reason,
            r.state.as_str(),
            r.progress * 100.0,
            started,
            seconds,
            metric,
            &r.artifact_sha256[..12.min(r.artifact_sha256.len())]
        );
    }
    out
}

/// The line printed when a run ends.
pub fn outcome(r: &Run) -> String {
    match r.state {
        RunState::Succeeded => {
            let (metric, value) =
                mlops_shared::scoring::headline(|k| r.metrics.get(k).copied()).unwrap_or(("metric", f64::NAN));
            format!(
                "{} succeeded: trained by {} in {:.1} s on {} dataset(s): artifact {}, holdout {metric} {value:.4}",
                r.job_id,
                r.trainer,
                (r.finished_ms - r.started_ms) as f64 / 1000.0,
                r.dataset_ids.len(),
                &r.artifact_sha256[..12.min(r.artifact_sha256.len())],
            )
        }
        RunState::Failed => format!("{} failed: {}", r.job_id, r.error),
        RunState::Superseded => format!("{} superseded by {}", r.job_id, r.superseded_by),
        RunState::Skipped => format!("{} skipped: {}", r.job_id, r.stage),
        _ => format!("{} {} ({})", r.job_id, r.state.as_str(), r.stage),
    }
}

/// One run in full, for `mlops runs show`: its record, then what its program printed.
pub fn details(r: &Run) -> String {
    let mut out = format!("{}\n", outcome(r));
    out +=
        &format!("pipeline:  {}\nreason:    {}\nstate:     {} ({})\n", r.pipeline, r.reason, r.state.as_str(), r.stage);
    out += &format!("trainer:   {} (attempt {})\ndatasets:  {}\n", r.trainer, r.attempt, r.dataset_ids.join(", "));
    if !r.error.is_empty() {
        out += &format!("error:     {}\n", r.error);
    }
    if !r.phases.is_empty() {
        let phases: Vec<String> = r.phases.iter().map(|(k, v)| format!("{k} {v:.2} s")).collect();
        out += &format!("phases:    {}\n", phases.join(", "));
    }
    if !r.output.is_empty() {
        out += &format!("--- output (the last {} bytes) ---\n{}", r.output.len(), r.output);
        if !r.output.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Follows runs of `pipeline` (all when `None`) with a progress bar each, until Ctrl-C; with
/// `job`, until that run ends, returning it. Progress comes from core NATS; the records are read
/// again every few seconds, so a missed message only delays the bar.
pub async fn watch(
    client: &async_nats::Client,
    runs: &Runs,
    pipeline: Option<&str>,
    job: Option<&str>,
) -> anyhow::Result<Option<Run>> {
    let mut progress = client.subscribe(format!("{PROGRESS_PREFIX}.{}", pipeline.unwrap_or("*"))).await?;
    let wanted = |r: &Run| pipeline.is_none_or(|p| r.pipeline == p) && job.is_none_or(|j| r.job_id == j);
    let mut poll = tokio::time::interval(Duration::from_secs(3));
    let mut ended = None;
    let mut bars = Bars::default();
    loop {
        let update: Vec<Run> = tokio::select! {
            msg = progress.next() => match msg {
                Some(msg) => serde_json::from_slice::<Run>(&msg.payload).ok().into_iter().collect(),
                None => anyhow::bail!("the NATS subscription ended"),
            },
            _ = poll.tick() => match job {
                Some(j) => runs.get(j).await?.into_iter().collect(),
                None => runs.list().await?.into_iter().filter(|r| !r.state.is_final() || bars.open(&r.job_id)).collect(),
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        for run in update.into_iter().filter(|r| wanted(r)) {
            bars.show(&run);
            if job == Some(run.job_id.as_str()) && run.state.is_final() {
                ended = Some(run);
            }
        }
        if ended.is_some() {
            break;
        }
    }
    Ok(ended)
}

#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    done: std::collections::HashSet<String>,
}

impl Bars {
    fn open(&self, job: &str) -> bool {
        self.bars.contains_key(job)
    }

    fn show(&mut self, run: &Run) {
        if self.done.contains(&run.job_id) {
            return;
        }
        let bar = self.bars.entry(run.job_id.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(1000));
            bar.set_style(
                ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {percent:>3}% {elapsed:>4} {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{} {}", run.pipeline, run.reason));
            bar
        });
        bar.set_position((run.progress.clamp(0.0, 1.0) * 1000.0) as u64);
        bar.set_message(format!("{} · {}", run.state.as_str(), run.stage));
        if run.state.is_final() {
            bar.finish_and_clear();
            self.bars.remove(&run.job_id);
            self.done.insert(run.job_id.clone());
            // Printed above the bars still running, and kept when the output is not a terminal.
            let _ = self.multi.println(outcome(run));
            if self.multi.is_hidden() {
                println!("{}", outcome(run));
            }
        }
    }
}
