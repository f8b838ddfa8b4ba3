//! Code bundles: a training program's directory as a deterministic tar — entries sorted by path,
//! no timestamps, owners or directory entries, mode 0644 or 0755 — so the same files make the
//! same bytes and the bundle's sha256 names the code. Bundles live in the `code` bucket; the
//! trainer unpacks one into each run's fresh directory.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

/// The largest code directory a bundle holds (the files' bytes).
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;

/// Directories never bundled: version control, caches and virtual environments.
pub const IGNORED_DIRS: &[&str] =
    &[".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ipynb_checkpoints", ".venv", "venv"];

/// Why a directory cannot be bundled, or a bundle unpacked.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the code directory {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path} is a symbolic link to {target}, outside the code directory")]
    LinkOutside { path: PathBuf, target: PathBuf },
    #[error("{0} is a symbolic link to a directory; bundles hold files only")]
    LinkToDirectory(PathBuf),
    #[error("{0}: file names must be UTF-8")]
    NotUtf8(PathBuf),
    #[error("the code directory holds over {limit} bytes (at {at}); keep data and models out of it")]
    TooLarge { at: PathBuf, limit: u64 },
    #[error("the bundle is not a valid code bundle: {0}")]
    Corrupt(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.to_path_buf(), source }
}

/// One file of a bundle.
struct Entry {
    name: String,
    path: PathBuf,
    executable: bool,
}

/// Packs `dir` into a bundle.
pub fn pack(dir: &Path) -> Result<Vec<u8>, BundleError> {
    if !dir.is_dir() {
        return Err(BundleError::NotADirectory(dir.to_path_buf()));
    }
    let root = dir.canonicalize().map_err(io(dir))?;
    let mut entries = Vec::new();
    collect(&root, &root, "", &mut entries)?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut builder = tar::Builder::new(Vec::new());
    let mut total = 0u64;
    for e in entries {
        let content = std::fs::read(&e.path).map_err(io(&e.path))?;
        total += content.len() as u64;
        if total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { at: e.path, limit: MAX_BUNDLE_BYTES });
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(if e.executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, &e.name, content.as_slice()).map_err(io(&e.path))?;
    }
    builder.into_inner().map_err(io(dir))
}

/// Adds the files under `dir` (named from `prefix`) to `out`, following symbolic links that stay
/// inside `root`.
fn collect(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<(), BundleError> {
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let item = item.map_err(io(dir))?;
        let path = item.path();
        let name = item.file_name().into_string().map_err(|_| BundleError::NotUtf8(path.clone()))?;
        let kind = item.file_type().map_err(io(&path))?;
        let name = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        if kind.is_dir() {
            if !IGNORED_DIRS.contains(&item.file_name().to_string_lossy().as_ref()) {
                collect(root, &path, &name, out)?;
            }
            continue;
        }
        if name.ends_with(".pyc") {
            continue;
        }
        let target = if kind.is_symlink() {
            let target = path.canonicalize().map_err(io(&path))?;
            if !target.starts_with(root) {
                return Err(BundleError::LinkOutside { path, target });
            }
            if target.is_dir() {
                return Err(BundleError::LinkToDirectory(path));
            }
            target
        } else {
            path
        };
        let meta = std::fs::metadata(&target).map_err(io(&target))?;
        if !meta.is_file() {
            continue; // sockets, fifos and devices are not code
        }
        out.push(Entry { name, executable: meta.permissions().mode() & 0o111 != 0, path: target });
    }
    Ok(())
}

/// The files of `bundle`: (path inside it, executable, content), in bundle order.
pub fn files(bundle: &[u8]) -> Result<Vec<(String, bool, Vec<u8>)>, BundleError> {
    let corrupt = |e: std::io::Error| BundleError::Corrupt(e.to_string());
    let mut archive = tar::Archive::new(bundle);
    let mut out = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BundleError::Corrupt(format!("entry type {:?} is not a file", entry.header().entry_type())));
        }
        let path = entry.path().map_err(corrupt)?.into_owned();
        if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(BundleError::Corrupt(format!("entry {} leaves the bundle", path.display())));
        }
        let name = path.to_str().ok_or_else(|| BundleError::NotUtf8(path.clone()))?.to_owned();
        total += entry.size();
        if total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { at: path, limit: MAX_BUNDLE_BYTES });
        }
        let executable = entry.header().mode().map_err(corrupt)? & 0o111 != 0;
        let mut content = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut content).map_err(corrupt)?;
        out.push((name, executable, content));
    }
    Ok(out)
}

/// Writes the files of `bundle` under `into` (which must exist).
pub fn unpack(bundle: &[u8], into: &Path) -> Result<(), BundleError> {
    for (name, executable, content) in files(bundle)? {
        let path = into.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, content).map_err(io(&path))?;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    #[test]
    fn the_same_files_make_the_same_bundle_whatever_their_times_and_order() {
        let a = tree(&[("train.py", "print(1)"), ("lib/features.py", "X = 1"), ("requirements.txt", "numpy")]);
        let b = tree(&[("requirements.txt", "numpy"), ("lib/features.py", "X = 1"), ("train.py", "print(1)")]);
        for ignored in [".git/HEAD", "__pycache__/x.pyc", "lib/__pycache__/y.pyc", ".venv/bin/python", "z.pyc"] {
            let path = b.path().join(ignored);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "cache").unwrap();
        }
        let (pa, pb) = (pack(a.path()).unwrap(), pack(b.path()).unwrap());
        assert_eq!(pa, pb);
        let names: Vec<String> = files(&pa).unwrap().into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, ["lib/features.py", "requirements.txt", "train.py"]);
        // A changed file, a new bundle; an executable bit survives the round trip.
        std::fs::write(b.path().join("train.py"), "print(2)").unwrap();
        std::fs::set_permissions(b.path().join("train.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let changed = pack(b.path()).unwrap();
        assert_ne!(changed, pa);
        let out = tempfile::tempdir().unwrap();
        unpack(&changed, out.path()).unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("lib/features.py")).unwrap(), "X = 1");
        let mode = std::fs::metadata(out.path().join("train.py")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // Long names travel too.
        let long = format!("{}/x.py", "d".repeat(150));
        let c = tree(&[(&long, "1")]);
        assert_eq!(files(&pack(c.path()).unwrap()).unwrap()[0].0, long);
    }

    #[test]
    fn links_out_of_the_directory_and_oversized_trees_are_refused() {
        let outside = tree(&[("secret.txt", "s")]);
        let a = tree(&[("train.py", "x")]);
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), a.path().join("s.txt")).unwrap();
        let err = pack(a.path()).unwrap_err().to_string();
        assert!(err.contains("s.txt is a symbolic link to") && err.contains("outside the code directory"), "{err}");
        let b = tree(&[("train.py", "x")]);
        std::os::unix::fs::symlink(b.path().join("train.py"), b.path().join("alias.py")).unwrap();
        let inside = files(&pack(b.path()).unwrap()).unwrap();
        assert_eq!(inside.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["alias.py", "train.py"]);
        assert!(pack(&b.path().join("train.py")).unwrap_err().to_string().contains("is not a directory"));
        let big = tree(&[("train.py", "x")]);
        std::fs::write(big.path().join("data.bin"), vec![0u8; MAX_BUNDLE_BYTES as usize + 1]).unwrap();
        assert!(pack(big.path()).unwrap_err().to_string().contains("keep data and models out of it"));
        assert!(files(b"not a tar at all, but long enough to be read as one header?").is_err());
    }
}
