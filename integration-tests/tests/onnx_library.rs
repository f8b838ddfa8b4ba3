//! A library that is not ONNX Runtime is refused at load with the setting to fix, and the process
//! goes on without it: no later call loads another library behind its back (`ort` would try other
//! paths after a failed load) or panics. Its own test binary, since a process loads one library.

use mlops_onnx::{LIBRARY_ENV, Runtime, RuntimeError};

#[test]
fn a_file_that_is_not_the_runtime_is_refused_and_stays_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fake = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&fake, "not a shared library\n").expect("writing");
    let e = Runtime::load(&fake).err().expect("refused");
    assert!(matches!(e, RuntimeError::Load { .. }), "{e}");
    assert!(e.to_string().contains(LIBRARY_ENV) && e.to_string().contains("1.31"), "{e}");
    // The same answer again, and no second library for the process.
    assert_eq!(Runtime::load(&fake).err(), Some(e));
    let other = dir.path().join("libonnxruntime.so.1.32.0");
    std::fs::write(&other, "another\n").expect("writing");
    assert!(matches!(Runtime::load(&other), Err(RuntimeError::OtherLibrary { .. })));
}

/// A service that runs ONNX models and is told to use a library that is not there says so at
/// start, naming the setting, and exits 1 before it connects anywhere.
#[test]
fn a_service_told_to_use_a_runtime_that_is_not_there_says_so_at_start() {
    let bin = mlops_cli::stack::StackOptions::beside_current_exe(std::env::temp_dir()).expect("binaries").bin_dir;
    let dir = tempfile::tempdir().expect("a temp dir");
    for service in ["registry", "evaluator", "deployer"] {
        let out = std::process::Command::new(bin.join(format!("mlops-{service}")))
            .env(LIBRARY_ENV, "/no/such/libonnxruntime.so.1.31.1")
            .env("MLOPS_LISTEN", "127.0.0.1:0")
            .env("MLOPS_DATA_DIR", dir.path())
            .env("MLOPS_NATS_URL", "nats://127.0.0.1:1")
            .output()
            .expect("running the service");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{service}: {stderr}");
        assert!(stderr.contains(&format!("{service}: error: ")) && stderr.contains(LIBRARY_ENV), "{stderr}");
        assert!(stderr.contains("/no/such/libonnxruntime.so.1.31.1"), "{stderr}");
    }
}
