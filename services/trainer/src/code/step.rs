//! One run of a training program through the step runner (`mlops-step`): its output read as it
//! comes — `progress F` lines reported, the last [`TAIL_BYTES`] kept, a flood stopped — and its
//! outcome as the runner reports it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

/// How much of a program's output a run keeps: the end of it.
pub const TAIL_BYTES: usize = 64 << 10;

/// How a run of the program ended, as the step runner writes it to its status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Status {
    /// The program ended by itself: its exit code, or the signal that ended it; `leftover` when
    /// processes it started were still running (they were killed).
    Exited { code: Option<i32>, signal: Option<i32>, leftover: bool },
    /// It ran past its deadline and was killed with its process group.
    TimedOut { secs: u64 },
    /// The trainer stopped it (or went away), and its process group was killed.
    Cancelled,
    /// It could not be started (or the limits not set).
    FailedToStart { error: String },
}

impl Status {
    pub fn exited(exit: std::process::ExitStatus, leftover: bool) -> Self {
        use std::os::unix::process::ExitStatusExt as _;
        Self::Exited { code: exit.code(), signal: exit.signal(), leftover }
    }
    pub fn timed_out(secs: u64) -> Self {
        Self::TimedOut { secs }
    }
    pub fn cancelled() -> Self {
        Self::Cancelled
    }
    pub fn failed_to_start(error: String) -> Self {
        Self::FailedToStart { error }
    }
}

/// One run to make.
pub struct Step<'a> {
    /// The step runner binary.
    pub runner: &'a Path,
    /// The working directory (a fresh copy of the bundle).
    pub cwd: &'a Path,
    /// Where the runner writes its status.
    pub status_file: &'a Path,
    pub command: &'a [String],
    /// The program's whole environment.
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    /// 0: no limit.
    pub memory_mb: u64,
    /// Output (stdout and stderr together) past which the program is stopped.
    pub max_output: u64,
}

/// What a run gave.
#[derive(Debug)]
pub struct Ran {
    pub status: Status,
    /// The end of its output, stdout and stderr interleaved as they came.
    pub tail: String,
    /// Set when it printed more than `max_output` and was stopped for it.
    pub flooded: bool,
}

/// Runs `step`, telling `progress` each `progress F` line's fraction.
pub async fn run(step: &Step<'_>, progress: &mut (dyn FnMut(f64) + Send)) -> std::io::Result<Ran> {
    let _ = std::fs::remove_file(step.status_file);
    let mut child = tokio::process::Command::new(step.runner)
        .arg(step.status_file)
        .arg(step.timeout.as_secs().max(1).to_string())
        .arg(step.memory_mb.to_string())
        .args(step.command)
        .current_dir(step.cwd)
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Holding the runner's stdin keeps the program alive: closing it (or dropping this future,
    // or the trainer dying) makes the runner kill the program's process group.
    let mut stdin = child.stdin.take();
    let (tx, mut rx) = mpsc::channel::<(bool, Vec<u8>)>(64);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(forward(out, true, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(forward(err, false, tx)));
    }
    let (mut tail, mut lines, mut total, mut flooded) = (Vec::new(), Lines::default(), 0u64, false);
    // Output is read until the pipes close, or for a moment after the runner ended: a process
    // that escaped it and holds the pipes open must not hold the run.
    let mut ended: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            chunk = rx.recv() => {
                let Some((stdout, chunk)) = chunk else { break };
                total += chunk.len() as u64;
                if total > step.max_output && !flooded {
                    flooded = true;
                    stdin.take();
                }
                if stdout {
                    lines.feed(&chunk, &mut |line| {
                        if let Some(f) = progress_of(line) {
                            progress(f);
                        }
                    });
                }
                keep_tail(&mut tail, &chunk);
            }
            status = child.wait(), if ended.is_none() => {
                status?;
                ended = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            }
            () = tokio::time::sleep_until(ended.unwrap_or_else(tokio::time::Instant::now)), if ended.is_some() => break,
        }
    }
    readers.iter().for_each(tokio::task::JoinHandle::abort);
    if ended.is_none() {
        child.wait().await?;
    }
    drop(stdin);
    // No status: the runner itself failed (missing, killed), not the program.
    let json = std::fs::read(step.status_file)
        .map_err(|e| std::io::Error::new(e.kind(), format!("the step runner wrote no status: {e}")))?;
    let status = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
    let start = tail.len().saturating_sub(TAIL_BYTES);
    Ok(Ran { status, tail: String::from_utf8_lossy(&tail[start..]).into_owned(), flooded })
}

/// Sends what `from` gives, chunk by chunk, until its end.
async fn forward(mut from: impl tokio::io::AsyncRead + Unpin, stdout: bool, to: mpsc::Sender<(bool, Vec<u8>)>) {
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.send((stdout, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
}

/// Appends `chunk` to `tail`, dropping the front once it holds twice what is kept.
fn keep_tail(tail: &mut Vec<u8>, chunk: &[u8]) {
    tail.extend_from_slice(chunk);
    if tail.len() > 2 * TAIL_BYTES {
        tail.drain(..tail.len() - TAIL_BYTES);
    }
}

/// Splits a stream into lines, keeping at most a short one whole: progress lines are short, and a
/// line of megabytes is not kept in memory.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    overlong: bool,
}

impl Lines {
    const MAX: usize = 256;

    fn feed(&mut self, chunk: &[u8], each: &mut dyn FnMut(&[u8])) {
        for part in chunk.split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match part.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (part, false),
            };
            if !self.overlong {
                self.partial.extend_from_slice(body);
                self.overlong = self.partial.len() > Self::MAX;
            }
            if ends {
                if !self.overlong {
                    each(&self.partial);
                }
                self.partial.clear();
                self.overlong = false;
            }
        }
    }
}

/// The fraction a `progress F` line reports, clamped to [0, 1].
fn progress_of(line: &[u8]) -> Option<f64> {
    let line = std::str::from_utf8(line).ok()?.trim();
    let value = line.strip_prefix("progress")?.trim().parse::<f64>().ok()?;
    value.is_finite().then(|| value.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_found_in_any_chunking_and_long_lines_are_skipped() {
        let text = b"starting\nprogress 0.25\nprogress 2\nprogress  0.5 \nprogressive 0.9\nprogress nan\n";
        for size in [1, 3, 7, text.len()] {
            let mut lines = Lines::default();
            let mut seen = Vec::new();
            for chunk in text.chunks(size) {
                lines.feed(chunk, &mut |l| seen.extend(progress_of(l)));
            }
            assert_eq!(seen, [0.25, 1.0, 0.5], "chunks of {size}");
        }
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        let long = [b"progress 0.1".repeat(100), b"\nprogress 0.75\n".to_vec()].concat();
        lines.feed(&long, &mut |l| seen.extend(progress_of(l)));
        assert_eq!(seen, [0.75]);
        let mut tail = Vec::new();
        for i in 0..100_000u32 {
            keep_tail(&mut tail, format!("{i}\n").as_bytes());
        }
        assert!(tail.len() <= 2 * TAIL_BYTES && tail.ends_with(b"99999\n"));
    }
}
