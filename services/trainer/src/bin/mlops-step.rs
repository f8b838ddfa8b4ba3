//! The step runner: runs one training program for a trainer and answers for its whole process
//! group. The program gets a process group of its own, the memory limit and the deadline; when
//! the trainer goes away (its pipe to this runner's stdin closes, even on kill -9, or this
//! runner is re-parented) or the deadline passes, the whole group is killed. Processes the program
//! leaves behind when it exits are killed too, and reported. The outcome is written as JSON to
//! the status file.
//!
//! `mlops-step STATUS_FILE TIMEOUT_SECS MEMORY_MB PROGRAM [ARGS...]` (MEMORY_MB 0: no limit).

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
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
    let status = run(program, rest, Duration::from_secs(timeout), memory);
    let json = serde_json::to_vec(&status).expect("a status always serializes");
    if let Err(e) = std::fs::write(status_file, json) {
        eprintln!("mlops-step: cannot write {status_file}: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Runs the program to its end, the deadline or the trainer's going, and says which.
fn run(program: &str, args: &[String], timeout: Duration, memory_mb: u64) -> Status {
    let parent = rustix::process::getppid();
    if memory_mb > 0 {
        let bytes = Some(memory_mb << 20);
        if let Err(e) = rustix::process::setrlimit(Resource::As, Rlimit { current: bytes, maximum: bytes }) {
            return Status::failed_to_start(format!("cannot set the memory limit: {e}"));
        }
    }
    // Orphans of the program's children come to this runner, which outlives them all.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut child = match Command::new(program).args(args).stdin(Stdio::null()).process_group(0).spawn() {
        Ok(child) => child,
        Err(e) => return Status::failed_to_start(format!("cannot start {program:?}: {e}")),
    };
    let group = Pid::from_child(&child);
    let trainer_gone = watch_stdin();
    let deadline = Instant::now() + timeout;
    let kill_group = || {
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    };
    loop {
        match child.try_wait() {
            Ok(Some(exit)) => {
                // Anything still in the group outlived the program.
                let leftover = rustix::process::test_kill_process_group(group).is_ok();
                if leftover {
                    kill_group();
                }
                return Status::exited(exit, leftover);
            }
            Ok(None) => {}
            Err(e) => {
                kill_group();
                return Status::failed_to_start(format!("cannot wait for the program: {e}"));
            }
        }
        if trainer_gone.load(Ordering::Relaxed) || rustix::process::getppid() != parent {
            kill_group();
            let _ = child.wait();
            return Status::cancelled();
        }
        if Instant::now() >= deadline {
            kill_group();
            let _ = child.wait();
            return Status::timed_out(timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
