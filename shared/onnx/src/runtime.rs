//! Loading ONNX Runtime's shared library, once per process.
//!
//! `ort` panics on any call made before a library is loaded, and after a failed load it quietly
//! tries other paths on its next call. So the path is checked first (absolute, an existing file),
//! the load is attempted once, and its outcome — success or the reason — is kept for the life of
//! the process: no `ort` call is made unless it succeeded.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The setting that names the library (`libonnxruntime.so.*`) for services and tools.
pub const LIBRARY_ENV: &str = "MLOPS_ONNXRUNTIME";

/// Why ONNX Runtime is not available.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    #[error(
        "{LIBRARY_ENV} is not set: name ONNX Runtime's shared library (libonnxruntime.so.*; `just deps` installs one)"
    )]
    NotConfigured,
    #[error("ONNX Runtime library {path}: {reason} (set {LIBRARY_ENV} to an absolute path of libonnxruntime.so.*)")]
    BadPath { path: PathBuf, reason: String },
    #[error(
        "cannot load ONNX Runtime from {path}: {reason} (it must be ONNX Runtime 1.31 or newer; see {LIBRARY_ENV})"
    )]
    Load { path: PathBuf, reason: String },
    #[error("ONNX Runtime was already loaded from {first}; a process loads one library, not also {asked}")]
    OtherLibrary { first: PathBuf, asked: PathBuf },
}

/// A loaded ONNX Runtime: sessions are made from it.
pub struct Runtime {
    pub(crate) environment: ort::environment::Environment,
    library: PathBuf,
}

/// The process's one attempt to load a runtime, with the path it was made with.
static LOADED: OnceLock<(PathBuf, Result<Runtime, RuntimeError>)> = OnceLock::new();

impl Runtime {
    /// Loads the library at `library`, or answers with the runtime (or the error) the process's
    /// first load gave. A path that is not an absolute path of a file is refused before any load.
    pub fn load(library: &Path) -> Result<&'static Self, RuntimeError> {
        check_path(library)?;
        let (first, outcome) = LOADED.get_or_init(|| (library.to_path_buf(), Self::open(library)));
        if first != library {
            return Err(RuntimeError::OtherLibrary { first: first.clone(), asked: library.to_path_buf() });
        }
        outcome.as_ref().map_err(Clone::clone)
    }

    /// Loads the library named by [`LIBRARY_ENV`].
    pub fn from_env() -> Result<&'static Self, RuntimeError> {
        match std::env::var_os(LIBRARY_ENV) {
            Some(path) if !path.is_empty() => Self::load(Path::new(&path)),
            _ => Err(RuntimeError::NotConfigured),
        }
    }

    /// The library this runtime was loaded from.
    pub fn library(&self) -> &Path {
        &self.library
    }

    fn open(library: &Path) -> Result<Self, RuntimeError> {
        let load = |reason: String| RuntimeError::Load { path: library.to_path_buf(), reason };
        // `{:?}` keeps the loader's own reason ("invalid ELF header"), which `{}` leaves out.
        let builder = ort::init_from(library).map_err(|e| load(format!("{e} ({e:?})")))?;
        let environment = builder.with_name("mlops").with_telemetry(false).build().map_err(|e| load(e.to_string()))?;
        // The runtime narrates every session's graph optimisations at its info level: warnings only.
        environment.set_log_level(ort::logging::LogLevel::Warning);
        Ok(Self { environment, library: library.to_path_buf() })
    }
}

/// Refuses a library path that is not absolute or not an existing file, before `ort` sees it.
pub(crate) fn check_path(library: &Path) -> Result<(), RuntimeError> {
    let bad = |reason: &str| RuntimeError::BadPath { path: library.to_path_buf(), reason: reason.into() };
    if !library.is_absolute() {
        return Err(bad("not an absolute path"));
    }
    match std::fs::metadata(library) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(bad("not a file")),
        Err(e) => Err(bad(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_cannot_be_a_library_is_refused_before_any_load() {
        for (path, reason) in [
            ("libonnxruntime.so", "not an absolute path"),
            ("/", "not a file"),
            ("/no/such/libonnxruntime.so.1.31.1", "No such file"),
        ] {
            let e = Runtime::load(Path::new(path)).err().expect(path);
            assert!(matches!(e, RuntimeError::BadPath { .. }) && e.to_string().contains(reason), "{e}");
            assert!(e.to_string().contains(LIBRARY_ENV), "{e}");
        }
        assert!(LOADED.get().is_none(), "nothing was loaded");
    }
}
