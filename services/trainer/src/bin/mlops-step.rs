//! The step runner: runs one training program for a trainer and answers for its whole process
//! group. The program gets a process group of its own, the memory limit and the deadline; when
//! the trainer goes away (its pipe to this runner's stdin closes, even on kill -9, or this
//! runner is re-parented) or the deadline passes, the whole group is killed. Processes the program
//! leaves behind when it exits are killed too, and reported. With Landlock, the program may write
//! only in the status file's directory (the run's) and `/dev`. The outcome is written as JSON to
//! the status file.
//!
//! `mlops-step STATUS_FILE TIMEOUT_SECS MEMORY_MB PROGRAM [ARGS...]` (MEMORY_MB 0: no limit).

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mlops_trainer::code::step::Status;
use rustix::process::{Pid, Resource, Rlimit, Signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [status_file, timeout, memory, program, rest @ ..] = args.as_slice() else {
        eprintln!("usage: mlops-step STATUS_FILE TIMEOUT_SECS MEMORY_MB PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let (Ok(timeout), Ok(memory)) = (timeout.parse::<u64>(), memory.parse::<u64>()) else {
        eprintln!("mlops-step: TIMEOUT_SECS and MEMORY_MB must be whole numbers");
        return ExitCode::from(2);
    };
    // The status file lies in the run's directory, the one place the program may write to.
    let run_dir = Path::new(status_file).parent().unwrap_or(Path::new("."));
    if let Err(e) = confine(run_dir) {
        eprintln!("mlops-step: cannot confine the program's writes to {}: {e}", run_dir.display());
        return ExitCode::from(1);
    }
    let status = run(program, rest, Duration::from_secs(timeout), memory);
    let json = serde_json::to_vec(&status).expect("a status always serializes");
    if let Err(e) = std::fs::write(status_file, json) {
        eprintln!("mlops-step: cannot write {status_file}: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Lets this process and the program it starts write only under `run_dir` (and `/dev`, for
/// `/dev/null` and `/dev/shm`), with Landlock, which needs no privilege. Reading stays open. On a
/// kernel without Landlock the program runs unconfined, and its output says so.
fn confine(run_dir: &Path) -> Result<(), landlock::RulesetError> {
    use landlock::{ABI, AccessFs, Ruleset, RulesetAttr as _, RulesetCreatedAttr as _, RulesetStatus};
    let write = AccessFs::from_write(ABI::V3);
    let status = Ruleset::default()
        .handle_access(write)?
        .create()?
        .add_rules(landlock::path_beneath_rules([run_dir, Path::new("/dev")], write))?
        .restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        eprintln!("mlops-step: this kernel has no Landlock: writes outside the run's directory are not prevented");
    }
    Ok(())
}

/// Runs the program to its end, the deadline or the trainer's going, and says which.
fn run(program: &str, args: &[String], timeout: Duration, memory_mb: u64) -> Status {
    let parent = rustix::process::getppid();
    if memory_mb > 0 {
        let bytes = memory_mb.checked_mul(1 << 20);
        if let Err(e) = rustix::process::setrlimit(Resource::As, Rlimit { current: bytes, maximum: bytes }) {
            return Status::failed_to_start(format!("cannot set the memory limit: {e}"));
        }
    }
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        return Status::failed_to_start(format!("a timeout of {} s is too long", timeout.as_secs()));
    };
    // Orphans of the program's children come to this runner, which outlives them all, so one
    // that left the program's process group is still found and killed.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut child = match Command::new(program).args(args).stdin(Stdio::null()).process_group(0).spawn() {
        Ok(child) => child,
        Err(e) => return Status::failed_to_start(format!("cannot start {program:?}: {e}")),
    };
    let group = Pid::from_child(&child);
    let trainer_gone = watch_stdin();
    loop {
        match child.try_wait() {
            Ok(Some(exit)) => return Status::exited(exit, settle(group)),
            Ok(None) => {}
            Err(e) => {
                kill_all(group);
                return Status::failed_to_start(format!("cannot wait for the program: {e}"));
            }
        }
        if trainer_gone.load(Ordering::Relaxed) || rustix::process::getppid() != parent {
            kill_all(group);
            let _ = child.wait();
            return Status::cancelled();
        }
        if Instant::now() >= deadline {
            kill_all(group);
            let _ = child.wait();
            return Status::timed_out(timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After the program ended: what it started gets half a second to end too (workers shutting
/// down); then whatever still runs — in its process group, or adopted by this runner — is
/// killed. Whether anything was left running.
fn settle(group: Pid) -> bool {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        reap();
        if !group_running(group) && adopted().is_empty() {
            return false;
        }
        if Instant::now() >= deadline {
            kill_all(group);
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the program's process group and every process this runner adopted, and returns once
/// none of them runs any more (or after a second), so a run that ended left nothing behind.
fn kill_all(group: Pid) {
    for _ in 0..100 {
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
        reap();
        let left = adopted();
        if left.is_empty() && !group_running(group) {
            return;
        }
        for pid in left {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collects every child that has ended (the program's own exit status is already taken).
fn reap() {
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
}

/// The processes whose parent is this runner: orphans it adopted as the subreaper.
fn adopted() -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .filter_map(Pid::from_raw)
        .collect()
}

/// Whether a process of `group` still runs (zombies, which have ended, do not count).
fn group_running(group: Pid) -> bool {
    if rustix::process::test_kill_process_group(group).is_err() {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    procs.flatten().filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok()).any(|stat| {
        // `pid (comm) state ppid pgrp ...`: the name may hold anything, so read after its `)`.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        fields.first().is_some_and(|state| *state != "Z")
            && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(group.as_raw_nonzero().get())
    })
}

/// A flag set when stdin reaches its end: the trainer closed its pipe, or died.
fn watch_stdin() -> Arc<AtomicBool> {
    let gone = Arc::new(AtomicBool::new(false));
    let flag = gone.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        flag.store(true, Ordering::Relaxed);
    });
    gone
}
