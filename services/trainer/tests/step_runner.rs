//! The step runner (`mlops-step`) with real programs: exit codes, the deadline, memory, floods of
//! output, processes left behind, and the trainer going away. Each one ends the run with an outcome
//! that names it, and nothing the program started is left running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlops_trainer::code::step::{self, Ran, Status, Step};

fn runner() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mlops-step"))
}

struct Run {
    timeout: Duration,
    memory_mb: u64,
    max_output: u64,
}

impl Default for Run {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(60), memory_mb: 0, max_output: 1 << 30 }
    }
}

impl Run {
    async fn of(&self, command: &[&str]) -> (Ran, Vec<f64>) {
        let dir = tempfile::tempdir().unwrap();
        let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        let env = vec![("PATH".to_owned(), std::env::var("PATH").unwrap())];
        let status_file = dir.path().join("status.json");
        let step = Step {
            runner: runner(),
            cwd: dir.path(),
            status_file: &status_file,
            command: &command,
            env: &env,
            timeout: self.timeout,
            memory_mb: self.memory_mb,
            max_output: self.max_output,
        };
        let mut seen = Vec::new();
        let ran = step::run(&step, &mut |f| seen.push(f)).await.unwrap();
        (ran, seen)
    }
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pids: &[u32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if pids.iter().all(|&p| gone(p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The numbers the program printed on lines `pid N`.
fn pids(tail: &str) -> Vec<u32> {
    tail.lines().filter_map(|l| l.strip_prefix("pid ")?.trim().parse().ok()).collect()
}

#[tokio::test]
async fn a_program_that_succeeds_reports_progress_and_its_output_is_kept() {
    let script = "import sys\nfor i in range(1, 5): print(f'progress {i / 4}')\nprint('to stderr', file=sys.stderr)";
    let (ran, seen) = Run::default().of(&["python3", "-c", script]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(0), signal: None, leftover: false });
    assert_eq!(seen, [0.25, 0.5, 0.75, 1.0]);
    assert!(ran.tail.contains("progress 1") && ran.tail.contains("to stderr"), "{}", ran.tail);
}

#[tokio::test]
async fn a_failing_program_gives_its_exit_code_and_last_lines() {
    let (ran, _) = Run::default().of(&["python3", "-c", "print('reading data'); raise SystemExit(3)"]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(3), signal: None, leftover: false });
    assert!(ran.tail.contains("reading data"));
    let (missing, _) = Run::default().of(&["no-such-program-here"]).await;
    assert!(
        matches!(&missing.status, Status::FailedToStart { error } if error.contains("no-such-program-here")),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_hanging_program_is_killed_with_its_children_at_the_deadline() {
    let run = Run { timeout: Duration::from_secs(1), ..Run::default() };
    let (ran, _) = run.of(&["sh", "-c", "sleep 300 & echo pid $!; echo pid $$; wait"]).await;
    assert_eq!(ran.status, Status::TimedOut { secs: 1 });
    let started = pids(&ran.tail);
    assert_eq!(started.len(), 2, "{}", ran.tail);
    assert!(wait_gone(&started).await, "a process of the program outlived its deadline");
}

#[tokio::test]
async fn processes_left_behind_are_killed_and_reported() {
    let (ran, _) = Run::default().of(&["sh", "-c", "sleep 300 & echo pid $!; exit 0"]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(0), signal: None, leftover: true });
    assert!(wait_gone(&pids(&ran.tail)).await, "the child outlived its program");
}

/// A process that left the program's group (`setsid`) while holding its output open is still
/// found, killed and reported, and the run does not wait on its open pipe.
#[tokio::test]
async fn a_process_that_escaped_the_group_is_killed_too() {
    let (ran, _) = Run::default().of(&["sh", "-c", "setsid sleep 300 & echo pid $!; sleep 0.2; exit 0"]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(0), signal: None, leftover: true });
    assert!(wait_gone(&pids(&ran.tail)).await, "the escaped process outlived its program");
}

/// Children that ended but were never waited for (zombies) are not processes left running.
#[tokio::test]
async fn children_that_ended_unwaited_are_not_left_running() {
    let script = "import subprocess, time\nsubprocess.Popen(['true'])\ntime.sleep(0.3)\nprint('done')";
    let (ran, _) = Run::default().of(&["python3", "-c", script]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(0), signal: None, leftover: false }, "{}", ran.tail);
}

/// The program may write in its run's directory (its working directory here) and nowhere else.
#[tokio::test]
async fn a_program_writes_only_in_its_run_directory() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("escaped.txt");
    let script = format!("open('inside.txt', 'w').write('ok')\nopen({:?}, 'w').write('no')", target.display());
    let (ran, _) = Run::default().of(&["python3", "-c", &script]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(1), signal: None, leftover: false }, "{}", ran.tail);
    assert!(ran.tail.contains("PermissionError") && !target.exists(), "{}", ran.tail);
}

#[tokio::test]
async fn a_program_over_its_memory_limit_fails_with_a_memory_error() {
    let run = Run { memory_mb: 200, ..Run::default() };
    let (ran, _) = run.of(&["python3", "-c", "b = bytearray(1 << 30)"]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(1), signal: None, leftover: false });
    assert!(ran.tail.contains("MemoryError"), "{}", ran.tail);
}

#[tokio::test]
async fn a_flood_of_output_is_stopped_and_only_its_end_kept() {
    let run = Run { max_output: 8 << 20, ..Run::default() };
    let (ran, _) = run.of(&["python3", "-c", "import sys\nwhile True: sys.stdout.write('x' * 65536 + '\\n')"]).await;
    assert!(ran.flooded);
    assert_eq!(ran.status, Status::Cancelled);
    assert!(ran.tail.len() <= step::TAIL_BYTES);
}

/// The trainer dies (its end of the runner's stdin closes, as on kill -9): the runner kills the
/// program's whole process group at once.
#[tokio::test]
async fn when_the_trainer_goes_the_program_and_its_children_go_too() {
    let dir = tempfile::tempdir().unwrap();
    let status: PathBuf = dir.path().join("status.json");
    let pid_file = dir.path().join("pids");
    let script = format!("sleep 300 & echo $! > {0}.tmp; echo $$ >> {0}.tmp; mv {0}.tmp {0}; wait", pid_file.display());
    let mut child = std::process::Command::new(runner())
        .args([status.to_str().unwrap(), "600", "0", "sh", "-c", &script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started: Vec<u32> = std::fs::read_to_string(&pid_file).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(started.len(), 2);
    drop(child.stdin.take());
    child.wait().unwrap();
    assert!(wait_gone(&started).await, "the program outlived its trainer");
    let outcome: Status = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(outcome, Status::Cancelled);
}
