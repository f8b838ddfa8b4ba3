//! The unit tests of a pipeline's training code, as `mlops pipeline test` runs them: pytest on
//! the code bundle (unpacked into a fresh directory, as the trainers run it) in the Python
//! environment the trainers would make from the spec's requirements file.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use mlops_shared::spec::PipelineSpec;

/// The most of pytest's output a failure shows (its end).
const TAIL_LINES: usize = 40;

/// Runs the bundle's tests: pytest's summary line when they pass, `None` when the bundle has
/// no test files, an error with pytest's words when they fail.
pub async fn run(spec_file: &Path, spec: &PipelineSpec, bundle: &[u8]) -> anyhow::Result<Option<String>> {
    let files = mlops_shared::bundle::files(bundle)?;
    if !files.iter().any(|(name, _, _)| is_test_file(name)) {
        return Ok(None);
    }
    let python = python(spec_file, spec).await?;
    let dir = tempfile::tempdir().context("making a directory for the code")?;
    mlops_shared::bundle::unpack(bundle, dir.path())?;
    let at = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .current_dir(&at)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .with_context(|| format!("starting {python}"))
    })
    .await
    .context("running pytest panicked")??;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if text.contains("No module named pytest") {
        anyhow::bail!("pytest is not installed in the code's environment: add it to the requirements file");
    }
    let summary = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_owned();
    anyhow::ensure!(out.status.success(), "{summary} (pytest {}):\n{}", out.status, tail(&text));
    Ok(Some(summary))
}

/// pytest's default file patterns.
fn is_test_file(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.ends_with(".py") && (file.starts_with("test_") || file.ends_with("_test.py"))
}

/// The interpreter of the environment the spec asks for (made, as a trainer makes it, when
/// missing), or the trainers' interpreter when it asks for none.
async fn python(spec_file: &Path, spec: &PipelineSpec) -> anyhow::Result<String> {
    let settings = crate::reproduce::trainer_settings()?;
    let Some(env) = spec.training.environment.as_ref().and_then(|e| e.python.as_ref()) else {
        return Ok(settings.python);
    };
    let requirements = match &env.requirements {
        None => Vec::new(),
        Some(r) => {
            let path = spec_file.parent().unwrap_or(Path::new(".")).join(r);
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    let envs = settings.code_steps()?.envs;
    let made = tokio::task::spawn_blocking(move || envs.prepare(&requirements)).await.context("panicked")??;
    Ok(made.bin.join("python").to_string_lossy().into_owned())
}

fn tail(text: &str) -> String {
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_files_are_pytests_own_patterns() {
        assert!(is_test_file("tests/test_features.py"));
        assert!(is_test_file("features_test.py"));
        assert!(!is_test_file("train.py"));
        assert!(!is_test_file("tests/conftest.py"));
        assert!(!is_test_file("test_data.csv"));
    }
}
