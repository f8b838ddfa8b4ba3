//! A user's mistake (a missing file, a service that is not there) reads as one sentence: the real
//! `mlops` binary prints `error: …` with its causes and exits 1, and no backtrace even when
//! RUST_BACKTRACE=1 is set, unless `--verbose` asks for one.

use std::process::{Command, Output};

/// Runs `mlops args` with RUST_BACKTRACE=1, as a shell that sets it everywhere would.
fn mlops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlops"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("running the mlops binary")
}

/// Asserts that `out` failed with exactly one line on stderr, an `error:` naming `expected`.
fn assert_one_error(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, no backtrace: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(expected), "{stderr}");
    assert!(!stderr.contains("acktrace"), "{stderr}");
}

#[test]
fn a_missing_file_is_one_error_line_without_a_backtrace() {
    let missing = std::env::temp_dir().join(format!("mlops-no-such-file-{}.csv", std::process::id()));
    let out = mlops(&["schema", "infer", missing.to_str().expect("a UTF-8 temp dir")]);
    // The chain, outermost first: what was being done, then why it failed.
    assert_one_error(&out, &format!("opening {}: ", missing.display()));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_service_that_is_not_there_is_one_error_line_without_a_backtrace() {
    // A port that was free a moment ago: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let url = format!("http://127.0.0.1:{port}");
    let out = mlops(&["--registry-url", &url, "models", "show", "churn@1"]);
    assert_one_error(&out, &url);
}

#[test]
fn verbose_adds_the_backtrace_of_the_error() {
    let missing = std::env::temp_dir().join(format!("mlops-no-such-file-v-{}.csv", std::process::id()));
    let out = mlops(&["--verbose", "schema", "infer", missing.to_str().expect("a UTF-8 temp dir")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: opening "), "{stderr}");
    let (_, backtrace) = stderr.split_once("\nbacktrace:\n").unwrap_or_else(|| panic!("no backtrace: {stderr}"));
    // A debug build names its own functions in the frames.
    assert!(backtrace.contains("schema::run"), "{stderr}");
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    use std::io::Read as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlops"))
        .args(["sample", "--rows", "200000"])
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the mlops binary");
    // Read one line, then close the pipe, as `| head -1` does.
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).expect("the header");
    drop(stdout);
    let out = child.wait_with_output().expect("waiting for mlops");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{:?}: {stderr}", out.status);
}
