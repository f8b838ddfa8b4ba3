//! The Python side of the ONNX tests: a virtual environment of `scripts/onnx-requirements.txt`
//! (made once per clean `target/`), the ONNX Runtime library its `onnxruntime` wheel ships, and
//! the scripts that make models as their users do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{python_venv, target_dir};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
}

/// The virtual environment with the pinned packages (made once).
pub fn venv() -> &'static Path {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        let requirements = repo().join("scripts/onnx-requirements.txt");
        python_venv("onnx-venv", &["-r", requirements.to_str().expect("UTF-8 path")], |venv| {
            library_in(venv).is_some()
                && Command::new(venv.join("bin/python"))
                    .args(["-c", "import onnxruntime, skl2onnx, onnxmltools, lightgbm"])
                    .output()
                    .is_ok_and(|o| o.status.success())
        })
    })
}

/// `libonnxruntime.so.*` as the venv's `onnxruntime` wheel installs it.
pub fn library() -> PathBuf {
    library_in(venv()).expect("checked when the venv was made")
}

fn library_in(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))?;
    let capi = lib.path().join("site-packages/onnxruntime/capi");
    std::fs::read_dir(capi)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so.")))
}

/// Runs the repository's Python script `script` (a path from the root) with `args` in the venv;
/// panics with its stderr when it fails.
pub fn python(script: &str, args: &[&Path]) {
    let out = Command::new(venv().join("bin/python"))
        .arg(repo().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The fixtures of `scripts/onnx-fixtures.py`, made once and named by what makes them, so a
/// changed script or pin makes them anew.
pub fn fixtures() -> &'static Path {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        let script = std::fs::read(repo().join("scripts/onnx-fixtures.py")).expect("the fixture script");
        let pins = std::fs::read(repo().join("scripts/onnx-requirements.txt")).expect("the requirements");
        let made_by = mlops_shared::sha256_hex(&[script, pins].concat());
        let dir = target_dir().join(format!("onnx-fixtures-{}", &made_by[..12]));
        if !dir.join("versions.json").exists() {
            python("scripts/onnx-fixtures.py", &[&dir]);
        }
        dir
    })
}
