//! The code of a spec with `training.code`, as `mlops pipeline apply` sends it: the code directory
//! (relative to the spec file) packed into a bundle, with the git commit of its work tree.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use mlops_shared::spec::PipelineSpec;

/// A bundle and where it came from.
#[derive(Debug, Clone, Default)]
pub struct CodeUpload {
    pub bundle: Vec<u8>,
    pub commit: String,
    pub dirty: bool,
}

/// The code of the spec `yaml`, read from `spec_file`'s directory; `None` when it names no code
/// (or does not parse: the registry then says why).
pub fn for_spec(spec_file: &Path, yaml: &str) -> anyhow::Result<Option<CodeUpload>> {
    let Ok(spec) = PipelineSpec::from_yaml(yaml) else { return Ok(None) };
    let Some(code) = &spec.training.code else { return Ok(None) };
    let base = spec_file.parent().unwrap_or(Path::new("."));
    let dir = base.join(&code.path);
    // A spec that names a stored bundle (as the registry completes it) applies without its code.
    if code.bundle.is_some() && !dir.exists() {
        return Ok(None);
    }
    if let Some(r) =
        spec.training.environment.as_ref().and_then(|e| e.python.as_ref()).and_then(|p| p.requirements.as_ref())
        && !base.join(r).is_file()
    {
        anyhow::bail!(
            "the requirements file {} (`training.environment.python.requirements`) does not exist",
            base.join(r).display()
        );
    }
    let bundle =
        mlops_shared::bundle::pack(&dir).with_context(|| format!("packing the code directory {}", dir.display()))?;
    let (commit, dirty) = git_state(&dir).unwrap_or_default();
    Ok(Some(CodeUpload { bundle, commit, dirty }))
}

/// The git commit a spec file comes from: `given` (`--commit`), else the CI's (`GITHUB_SHA`,
/// `CI_COMMIT_SHA`), else the commit checked out in the work tree holding it; empty when none.
pub fn spec_commit(spec_file: &Path, given: Option<&str>) -> String {
    let from_ci =
        || ["GITHUB_SHA", "CI_COMMIT_SHA"].into_iter().find_map(|v| std::env::var(v).ok()).filter(|c| !c.is_empty());
    let dir = spec_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    given.map(str::to_owned).or_else(from_ci).or_else(|| git_state(dir).map(|(head, _)| head)).unwrap_or_default()
}

/// The commit checked out in the work tree holding `dir`, and whether anything under `dir`
/// differs from it; `None` outside a work tree.
fn git_state(dir: &Path) -> Option<(String, bool)> {
    let git =
        |args: &[&str]| Command::new("git").arg("-C").arg(dir).args(args).output().ok().filter(|o| o.status.success());
    let head = git(&["rev-parse", "HEAD"])?;
    let status = git(&["status", "--porcelain", "--", "."])?;
    Some((String::from_utf8_lossy(&head.stdout).trim().to_owned(), !status.stdout.is_empty()))
}
