//! The step runner (`mlops-step`) with real programs: exit codes, the deadline, memory, floods of
//! output, processes left behind, and the trainer going away. Each one ends the run with an outcome
//! that names it, and nothing the program started is left running.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Whether none of `pids` runs: each is gone, or a zombie (ended, waiting to be reaped). The
/// runner returns only once what it killed has ended, so this holds when a run is over.
fn all_gone(pids: &[u32]) -> bool {
    pids.iter().all(|pid| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    })
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
    assert!(all_gone(&started), "a process of the program outlived its deadline");
}

#[tokio::test]
async fn processes_left_behind_are_killed_and_reported() {
    let (ran, _) = Run::default().of(&["sh", "-c", "sleep 300 & echo pid $!; exit 0"]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(0), signal: None, leftover: true });
    assert!(all_gone(&pids(&ran.tail)), "the child outlived its program");
}

/// A process that left the program's group (`setsid`) while holding its output open is still
/// found, killed and reported, and the run does not wait on its open pipe.
#[tokio::test]
async fn a_process_that_escaped_the_group_is_killed_too() {
    // The escapee says through a fifo that it has left the group before the program exits.
    let script = "mkfifo left; setsid sh -c 'echo $$ > left; exec sleep 300' & read pid < left; echo pid $pid; exit 0";
    let (ran, _) = Run::default().of(&["sh", "-c", script]).await;
    assert_eq!(ran.status, Status::Exited { code: Some(0), signal: None, leftover: true });
    assert!(all_gone(&pids(&ran.tail)), "the escaped process outlived its program");
}

/// Children that ended but were never waited for (zombies) are not processes left running.
#[tokio::test]
async fn children_that_ended_unwaited_are_not_left_running() {
    // Waits for the child to end without collecting it, so it stays a zombie when the program exits.
    let script = "import os, subprocess\np = subprocess.Popen(['true'])\nos.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)\nprint('done')";
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
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let status: PathBuf = dir.path().join("status.json");
    let mut child = std::process::Command::new(runner())
        .args([status.to_str().unwrap(), "600", "0", "sh", "-c", "sleep 300 & echo $!; echo $$; wait"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The program's two processes, as it prints them once both run.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let started: Vec<u32> = (0..2)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim().parse().unwrap()
        })
        .collect();
    drop(child.stdin.take());
    child.wait().unwrap();
    assert!(all_gone(&started), "the program outlived its trainer");
    let outcome: Status = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(outcome, Status::Cancelled);
}
