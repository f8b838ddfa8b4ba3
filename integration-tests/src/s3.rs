//! A real S3 server for tests: `s3s-fs` (crates.io, pinned in `just deps-test`), an S3 API over
//! a directory, started as a child process on a free port with its own access key. It keeps its
//! objects as files, so a test can look at what the platform wrote and restart the server with
//! its data mid-cascade.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The access key and secret the server accepts.
pub const ACCESS_KEY: &str = "mlops-test-access";
pub const SECRET_KEY: &str = "mlops-test-secret-do-not-log";

/// A running S3 server; killed on drop.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    /// The directory the server serves: a folder per bucket, a file per object.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where `just deps-test` installs the server.
pub fn binary() -> PathBuf {
    crate::target_dir().join("tools/bin/s3s-fs")
}

impl S3Server {
    /// Starts the server with the buckets `buckets` (empty folders).
    pub async fn start(buckets: &[&str]) -> Self {
        let bin = binary();
        assert!(bin.exists(), "{} is missing: run `just deps-test`", bin.display());
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("s3");
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).expect("bucket folder");
        }
        // A port the OS says is free; the server cannot take port 0 and report it.
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut server = Self { child: None, port, root, _dir: dir };
        server.spawn().await;
        server
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a process needs to use this server as `MLOPS_OBJECT_STORE=s3://bucket/prefix`.
    pub fn env(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        [
            ("MLOPS_OBJECT_STORE", format!("s3://{bucket}/{prefix}")),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The file holding `key` of `bucket`, if the server has it.
    pub fn object(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        Some(self.root.join(bucket).join(key)).filter(|p| p.is_file())
    }

    /// Stops the server (SIGKILL), as a crash or a network partition would take it away.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.root.with_extension("log")).expect("server log");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        let up = crate::wait_until(Duration::from_secs(30), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(drop) }
        });
        assert!(up.await.is_some(), "s3s-fs did not listen on {addr}: {}", self.log());
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every file under `dir`, as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}
