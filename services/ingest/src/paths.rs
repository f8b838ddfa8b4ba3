//! Files that outside systems name in `data.arrived`: only under the configured allowed
//! directories. Paths are resolved (symlinks, `..`) before the check, so no spelling escapes.

use std::path::{Path, PathBuf};

/// Resolves `path` and checks it lies under one of `allowed` (which must already be canonical).
pub fn resolve(path: &str, allowed: &[PathBuf]) -> Result<PathBuf, String> {
    if allowed.is_empty() {
        return Err("data.arrived: `path` is not accepted: ingest has no allowed directories (--allowed-dir)".into());
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("data.arrived: path {path:?} must be absolute"));
    }
    let real = p.canonicalize().map_err(|e| format!("data.arrived: path {path:?}: {e}"))?;
    if !allowed.iter().any(|dir| real.starts_with(dir)) {
        return Err(format!("data.arrived: path {path:?} is outside the allowed directories"));
    }
    if !real.is_file() {
        return Err(format!("data.arrived: path {path:?} is not a regular file"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_under_allowed_directories_resolve() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("drop");
        let outside = root.path().join("secret");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("a.csv"), "x\n1\n").unwrap();
        std::fs::write(outside.join("s.csv"), "x\n1\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.join("s.csv"), allowed.join("link.csv")).unwrap();
        let dirs = vec![allowed.canonicalize().unwrap()];
        let s = |p: &Path| p.to_str().unwrap().to_owned();

        assert!(resolve(&s(&allowed.join("a.csv")), &dirs).is_ok());
        let dotdot = s(&allowed.join("../secret/s.csv"));
        assert!(resolve(&dotdot, &dirs).unwrap_err().contains("outside the allowed directories"));
        #[cfg(unix)]
        assert!(resolve(&s(&allowed.join("link.csv")), &dirs).unwrap_err().contains("outside"));
        assert!(resolve("drop/a.csv", &dirs).unwrap_err().contains("absolute"));
        assert!(resolve(&s(&allowed), &dirs).unwrap_err().contains("not a regular file"));
        assert!(resolve(&s(&allowed.join("none.csv")), &dirs).is_err());
        assert!(resolve(&s(&allowed.join("a.csv")), &[]).unwrap_err().contains("no allowed directories"));
    }
}
