//! Code bundles at apply: a spec with `training.code` comes with its bundle (or names one already
//! stored); the registry checks it, stores it in the `code` bucket and records its sha256 and git
//! commit in the spec, so every revision names exactly the code that trains under it.

use mlops_proto as pb;
use mlops_shared::bundle::{self, MAX_BUNDLE_BYTES};
use mlops_shared::ids::Sha256;
use mlops_shared::objects::{ObjectError, Objects};
use mlops_shared::spec::PipelineSpec;
use tonic::Status;

/// The largest `ApplyPipeline` request: a full bundle and its spec.
pub const MAX_APPLY_BYTES: usize = MAX_BUNDLE_BYTES as usize + (4 << 20);

/// Stores the bundle `req` carries for `spec` and records it there. Whether the spec names code.
pub async fn attach(code: &Objects, spec: &mut PipelineSpec, req: &pb::ApplyPipelineRequest) -> Result<bool, Status> {
    let requirements =
        spec.training.environment.as_ref().and_then(|e| e.python.as_ref()).and_then(|p| p.requirements.clone());
    let Some(step) = spec.training.code.as_mut() else {
        if !req.code_bundle.is_empty() {
            return Err(Status::invalid_argument("a code bundle was sent, but the spec has no `training.code`"));
        }
        return Ok(false);
    };
    let bytes = if req.code_bundle.is_empty() {
        let Some(named) = step.bundle.clone() else {
            return Err(Status::invalid_argument(
                "the spec has `training.code` but no code bundle came with it: apply it with \
                 `mlops pipeline apply SPEC`, which packs the code directory",
            ));
        };
        let sha = Sha256::parse(named).map_err(|e| Status::invalid_argument(e.to_string()))?;
        code.get_verified(&sha).await.map_err(|e| match e {
            ObjectError::NotFound { .. } => Status::failed_precondition(format!(
                "the spec names code bundle {sha}, which is not stored: apply it from its code directory"
            )),
            other => Status::unavailable(other.to_string()),
        })?
    } else {
        req.code_bundle.clone()
    };
    let files = bundle::files(&bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if let Some(r) = requirements {
        let inside = step.in_bundle(&r).unwrap_or_default();
        if !files.iter().any(|(name, _, _)| *name == inside) {
            return Err(Status::invalid_argument(format!(
                "`training.environment.python.requirements` {r:?} is not in the code directory {:?}",
                step.path
            )));
        }
    }
    // A bundle sent is the code: a bundle the spec names (applied before) gives way to it.
    let sha = code.put(&bytes).await.map_err(|e| Status::unavailable(e.to_string()))?;
    step.bundle = Some(sha.to_string());
    if !req.code_commit.is_empty() {
        step.commit = Some(req.code_commit.clone());
        step.dirty = req.code_dirty;
    }
    Ok(true)
}
