//! Python environments for training programs: a virtual environment per requirements file (by the
//! sha256 of its content and the interpreter's version), made once and shared by every run on
//! the machine. A file lock keeps two trainers from making the same one at once; an environment
//! counts only once it is complete, so a failed or interrupted install is made anew next time.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where environments are made, and how.
#[derive(Debug, Clone)]
pub struct Environments {
    pub root: PathBuf,
    /// The interpreter that makes them (`python3`).
    pub python: String,
    /// pip's index, when not PyPI (`PIP_INDEX_URL`).
    pub index_url: Option<String>,
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// Its `bin` directory, first on the program's `PATH`.
    pub bin: PathBuf,
    /// `pip freeze`: the resolved packages, for the lineage.
    pub freeze: String,
    /// Whether it was there already.
    pub reused: bool,
}

/// Why an environment could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// pip refused the requirements (its words, the end of them).
    #[error("pip could not install the requirements:\n{0}")]
    Pip(String),
    /// pip could not reach its package index: worth another try.
    #[error("pip could not reach the package index:\n{0}")]
    Unreachable(String),
    /// The interpreter, the disk or the lock failed.
    #[error("cannot make the Python environment: {0}")]
    Io(String),
}

const READY: &str = ".ready";
const FREEZE: &str = "freeze.txt";

impl Environments {
    /// The environment of `requirements` (a pip requirements file's content), made if missing.
    /// Blocking: it may install packages for minutes.
    pub fn prepare(&self, requirements: &[u8]) -> Result<PythonEnv, EnvError> {
        let io = |doing: &str| {
            let doing = doing.to_owned();
            move |e: std::io::Error| EnvError::Io(format!("{doing}: {e}"))
        };
        std::fs::create_dir_all(&self.root).map_err(io(&format!("creating {}", self.root.display())))?;
        let version = self.version()?;
        let key = mlops_shared::sha256_hex(
            &[self.python.as_bytes(), b"\0", version.as_bytes(), b"\0", requirements].concat(),
        );
        let dir = self.root.join(&key[..16]);
        let lock =
            std::fs::File::create(self.root.join(format!("{}.lock", &key[..16]))).map_err(io("creating the lock"))?;
        lock.lock().map_err(io("locking the environment"))?;
        let bin = dir.join("bin");
        if dir.join(READY).exists() {
            let freeze = std::fs::read_to_string(dir.join(FREEZE)).unwrap_or_default();
            return Ok(PythonEnv { bin, freeze, reused: true });
        }
        let _ = std::fs::remove_dir_all(&dir);
        let made = self.make(&dir, requirements);
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let freeze = made?;
        Ok(PythonEnv { bin, freeze, reused: false })
    }

    /// The interpreter's version (`Python 3.11.7`), asked once per process: starting it takes a
    /// tenth of a second, which a run with its environment ready should not pay.
    fn version(&self) -> Result<String, EnvError> {
        static KNOWN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
        let mut known = KNOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, v)) = known.iter().find(|(p, _)| *p == self.python) {
            return Ok(v.clone());
        }
        let v = run_quiet(Command::new(&self.python).arg("--version"))
            .map_err(|e| EnvError::Io(format!("running {}: {e}", self.python)))?;
        known.push((self.python.clone(), v.clone()));
        Ok(v)
    }

    /// Makes the environment in `dir` and returns its `pip freeze`.
    fn make(&self, dir: &Path, requirements: &[u8]) -> Result<String, EnvError> {
        run_quiet(Command::new(&self.python).args(["-m", "venv"]).arg(dir)).map_err(EnvError::Io)?;
        let python = dir.join("bin/python");
        let pip = |args: &[&str]| {
            let mut c = Command::new(&python);
            c.args(["-m", "pip", "--disable-pip-version-check", "--no-input"]).args(args);
            // pip (and any package's build script it runs) sees pip's settings, proxies and
            // certificates, not the trainer's credentials.
            c.env_clear().envs(std::env::vars().filter(|(k, _)| pip_may_see(k)));
            c.env("HOME", dir.join(".home"));
            if let Some(url) = &self.index_url {
                c.env("PIP_INDEX_URL", url);
            }
            c
        };
        if !String::from_utf8_lossy(requirements).trim().is_empty() {
            let file = dir.join("requirements.txt");
            std::fs::write(&file, requirements).map_err(|e| EnvError::Io(e.to_string()))?;
            let file = file.to_string_lossy().into_owned();
            run_quiet(&mut pip(&["install", "-r", &file])).map_err(pip_error)?;
        }
        let freeze = run_quiet(&mut pip(&["freeze"])).map_err(EnvError::Io)?;
        std::fs::write(dir.join(FREEZE), &freeze).map_err(|e| EnvError::Io(e.to_string()))?;
        std::fs::write(dir.join(READY), b"").map_err(|e| EnvError::Io(e.to_string()))?;
        Ok(freeze)
    }
}

/// Whether pip gets the trainer's variable `name`.
fn pip_may_see(name: &str) -> bool {
    const PASSED: &[&str] = &["PATH", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NO_PROXY"];
    name.starts_with("PIP_")
        || PASSED.contains(&name)
        || name.eq_ignore_ascii_case("http_proxy")
        || name.eq_ignore_ascii_case("https_proxy")
        || name.eq_ignore_ascii_case("no_proxy")
}

/// pip's failure: the index out of reach (it may come back), or the requirements refused.
fn pip_error(said: String) -> EnvError {
    const UNREACHABLE: &[&str] = &[
        "Max retries exceeded",
        "Temporary failure in name resolution",
        "Connection refused",
        "Connection reset",
        "Read timed out",
        "Network is unreachable",
    ];
    if UNREACHABLE.iter().any(|m| said.contains(m)) { EnvError::Unreachable(said) } else { EnvError::Pip(said) }
}

/// Runs `command` to its end: its stdout when it succeeds, else the end of what it printed.
fn run_quiet(command: &mut Command) -> Result<String, String> {
    let out = command.stdin(std::process::Stdio::null()).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let text = [String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)].concat();
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    Err(format!("{} ({})", text[start..].trim(), out.status))
}
