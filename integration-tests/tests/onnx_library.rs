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
