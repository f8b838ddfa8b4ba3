//! The team's own training program: `training.code` names it, `training.environment` the Python
//! environment it runs in. `mlops pipeline apply` packs the code directory into a content-addressed
//! bundle and records its sha256 (and the git commit) here, so the stored spec names exactly the
//! code that trains.

use serde::{Deserialize, Serialize};

use super::{SpecError, bad};

/// A training program run by the trainers instead of a built-in algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSpec {
    /// The directory holding the program, relative to the spec file: the root of the bundle.
    pub path: String,
    /// The program and its arguments, run in a fresh copy of the bundle (`[python, train.py]`).
    pub command: Vec<String>,
    /// Names of the trainer's environment variables the program receives. No other variable of
    /// the trainer's reaches it, so secrets stay with the trainer unless listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// sha256 of the bundle, set when the spec is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// The git commit of the code directory's work tree at apply, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Whether the work tree had changes under the code directory that were not committed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dirty: bool,
}

/// The environment a program runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// A Python virtual environment, made by the trainer and shared by runs with the same
    /// requirements; its `bin` comes first on the program's `PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonEnvironment>,
}

/// A Python virtual environment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonEnvironment {
    /// A pip requirements file inside the code directory, relative to the spec file like
    /// `code.path`. Absent: an empty environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
}

/// The longest a run may take when the spec does not say (one day).
pub const DEFAULT_TIMEOUT_SECS: u64 = 86_400;

/// The longest a spec may let a run take (30 days).
pub const MAX_TIMEOUT_SECS: u64 = 30 * 86_400;

/// The largest memory limit a spec may set, in MiB (16 TiB).
pub const MAX_MEMORY_MB: u64 = 1 << 24;

/// Variables besides `MLOPS_*` that the platform sets for the program, which `code.env` cannot
/// pass on from the trainer.
const RESERVED: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED", "PYTHONHASHSEED"];

impl CodeSpec {
    /// `path` (relative to the spec file, like `code.path`) as a path inside the bundle, or `None`
    /// when it lies outside the code directory.
    pub fn in_bundle(&self, path: &str) -> Option<String> {
        let root = components(&self.path)?;
        let path = components(path)?;
        let inside = path.strip_prefix(root.as_slice())?;
        (!inside.is_empty()).then(|| inside.join("/"))
    }

    /// Checks the command, the variables passed on and the recorded bundle address.
    pub(super) fn check(&self) -> Result<(), SpecError> {
        if components(&self.path).is_none() {
            return bad(format!(
                "`training.code.path` {:?} must be a relative directory without `..` (relative to the spec file)",
                self.path
            ));
        }
        if self.command.first().is_none_or(|c| c.trim().is_empty()) {
            return bad("`training.code.command` names no program (e.g. [python, train.py])".into());
        }
        for name in &self.env {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return bad(format!("`training.code.env` {name:?} is not an environment variable name"));
            }
            if name.starts_with("MLOPS_") || RESERVED.contains(&name.as_str()) {
                return bad(format!("`training.code.env` {name:?}: the platform sets it for the program"));
            }
        }
        if let Some(sha) = &self.bundle
            && !(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            return bad(format!("`training.code.bundle` {sha:?} is not a sha256 (64 lowercase hex digits)"));
        }
        Ok(())
    }
}

/// The normal components of a relative path (`.` and empty ones dropped), or `None` for an
/// absolute path or one that climbs with `..`.
fn components(path: &str) -> Option<Vec<&str>> {
    if path.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    (!parts.contains(&"..")).then_some(parts)
}

#[cfg(test)]
mod tests {
    use crate::spec::PipelineSpec;
    use crate::spec::tests::SPEC;

    fn with(training: &str) -> Result<PipelineSpec, String> {
        PipelineSpec::from_yaml(&format!("{SPEC}training: {training}\n")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_code_step_takes_any_numeric_params_and_finds_its_requirements_in_the_bundle() {
        let spec = with(
            "{code: {path: ./train/, command: [python, train.py], env: [HF_TOKEN]}, \
             environment: {python: {requirements: train/req/requirements.txt}}, \
             params: {n_estimators: 50, anything: 0.5}, search: {params: {depth: [2, 4]}}, timeout_secs: 60, memory_mb: 512}",
        )
        .unwrap();
        let code = spec.training.code.as_ref().unwrap();
        assert_eq!(code.in_bundle("train/req/requirements.txt").as_deref(), Some("req/requirements.txt"));
        assert_eq!(code.in_bundle("./train//x.txt").as_deref(), Some("x.txt"));
        assert_eq!(code.in_bundle("other/requirements.txt"), None);
        assert_eq!(code.in_bundle("train"), None);
        // The bundle is what shapes the model: a new bundle, a new model hash.
        let mut applied = spec.clone();
        applied.training.code.as_mut().unwrap().bundle = Some("a".repeat(64));
        assert_ne!(applied.model_hash(), spec.model_hash());
        let mut committed = applied.clone();
        committed.training.code.as_mut().unwrap().commit = Some("abc".into());
        assert_eq!(committed.model_hash(), applied.model_hash());
        // A spec without code keeps the hash it always had.
        assert_eq!(
            PipelineSpec::from_yaml(SPEC).unwrap().model_hash(),
            PipelineSpec::from_yaml(&format!("{SPEC}training: {{}}\n")).unwrap().model_hash()
        );
    }

    #[test]
    fn bad_code_steps_are_refused_naming_the_key() {
        for (training, expected) in [
            ("{code: {path: train, command: []}}", "`training.code.command` names no program"),
            ("{code: {path: /abs, command: [x]}}", "`training.code.path` \"/abs\" must be a relative directory"),
            ("{code: {path: ../up, command: [x]}}", "without `..`"),
            ("{code: {path: t, command: [x], env: [MLOPS_SECRET]}}", "the platform sets it"),
            ("{code: {path: t, command: [x], env: [PATH]}}", "`training.code.env` \"PATH\": the platform sets it"),
            (
                "{code: {path: t, command: [x]}, timeout_secs: 99999999999}",
                "`training.timeout_secs` must be at most 2592000",
            ),
            (
                "{code: {path: t, command: [x]}, memory_mb: 99999999999}",
                "`training.memory_mb` must be at most 16777216",
            ),
            ("{code: {path: t, command: [x], env: [\"A-B\"]}}", "not an environment variable name"),
            ("{code: {path: t, command: [x], bundle: abc}}", "`training.code.bundle` \"abc\" is not a sha256"),
            (
                "{code: {path: t, command: [x]}, environment: {python: {requirements: r.txt}}}",
                "`training.environment.python.requirements` \"r.txt\" is not inside `training.code.path`",
            ),
            ("{environment: {python: {}}}", "`training.environment` needs `training.code`"),
            ("{timeout_secs: 5}", "`training.timeout_secs` needs `training.code`"),
            ("{code: {path: t, command: [x]}, timeout_secs: 0}", "`training.timeout_secs` must be at least 1"),
            ("{code: {path: t, command: [x]}, memory_mb: 10}", "`training.memory_mb` must be at least 64"),
            ("{code: {path: t, command: [x]}, params: {a: .nan}}", "`training.params.a` must be a finite number"),
            ("{code: {path: t, command: [x], shell: true}}", "unknown field `shell`"),
        ] {
            let err = with(training).unwrap_err();
            assert!(err.contains(expected), "{training}: {err}");
        }
    }
}
