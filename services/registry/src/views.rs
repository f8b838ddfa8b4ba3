//! Feature views, applied through `ApplyPipeline` as pipelines are (`kind: feature_view`), and the
//! checks that keep views and the pipelines that look features up in them consistent: a pipeline
//! may name only features that exist, and a view may not drop or retype one a pipeline uses.

use mlops_shared::spec::{FeatureViewSpec, PipelineSpec};
use tonic::Status;

/// Refuses `view` (replacing `old`, if any) when it drops or retypes a feature one of
/// `pipelines` looks up, or changes its key's width, naming the pipeline.
pub(crate) fn check_users(
    view: &FeatureViewSpec,
    old: Option<&FeatureViewSpec>,
    pipelines: &[PipelineSpec],
) -> Result<(), String> {
    for p in pipelines {
        let Some(lookup) = &p.lookup else { continue };
        for r in lookup.refs().filter(|r| r.view == view.name.as_str()) {
            let Some(now) = view.feature(r.feature) else {
                return Err(format!(
                    "feature view `{}` would drop `{}`, which pipeline `{}` looks up (lookup.from); \
                     remove it from the pipeline first",
                    view.name, r.feature, p.name
                ));
            };
            if let Some(before) = old.and_then(|o| o.feature(r.feature))
                && before.kind != now.kind
            {
                return Err(format!(
                    "feature view `{}` would change the type of `{}` ({:?} to {:?}), which pipeline `{}` looks up",
                    view.name, r.feature, before.kind, now.kind, p.name
                ));
            }
        }
        if lookup.views().contains(view.name.as_str()) && lookup.entities.len() != view.entities.len() {
            return Err(format!(
                "feature view `{}` would have {} key column(s); pipeline `{}` joins it on {} (lookup.entities)",
                view.name,
                view.entities.len(),
                p.name,
                lookup.entities.len()
            ));
        }
    }
    Ok(())
}

/// Refuses a pipeline whose `lookup` names a view or a feature that does not exist, or joins a
/// view on another number of key columns than it has.
pub(crate) fn check_lookup(spec: &PipelineSpec, views: &[FeatureViewSpec]) -> Result<(), String> {
    let Some(lookup) = &spec.lookup else { return Ok(()) };
    for r in lookup.refs() {
        let Some(view) = views.iter().find(|v| v.name.as_str() == r.view) else {
            return Err(format!("lookup.from: feature view `{}` is not known (apply it first)", r.view));
        };
        if view.feature(r.feature).is_none() {
            let known: Vec<&str> = view.features.iter().map(|f| f.name.as_str()).collect();
            return Err(format!(
                "lookup.from: feature view `{}` has no feature `{}` (it has {})",
                r.view,
                r.feature,
                known.join(", ")
            ));
        }
        if view.entities.len() != lookup.entities.len() {
            return Err(format!(
                "lookup.entities names {} column(s); feature view `{}` is keyed by {} ({})",
                lookup.entities.len(),
                r.view,
                view.entities.len(),
                view.entities.join(", ")
            ));
        }
    }
    Ok(())
}

/// A refusal as the gRPC status `ApplyPipeline` answers.
pub(crate) fn refused(message: String) -> Status {
    Status::failed_precondition(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(features: &str) -> FeatureViewSpec {
        FeatureViewSpec::from_yaml(&format!(
            "kind: feature_view\nname: stats\nentities: [customer_id]\nevent_time: ts\nfeatures: [{features}]\n"
        ))
        .unwrap()
    }

    fn pipeline() -> PipelineSpec {
        PipelineSpec::from_yaml(
            "name: churn\nfeatures: [{name: tenure, type: numeric}]\ntarget: {name: churned}\n\
             columns: [{name: customer_id, type: categorical}, {name: at, type: categorical}]\n\
             lookup: {from: [\"stats:spend\"], entities: customer_id, at: at}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_view_may_not_drop_a_feature_a_pipeline_looks_up() {
        let both = view("{name: spend, type: numeric}, {name: visits, type: numeric}");
        assert_eq!(check_users(&both, None, &[pipeline()]), Ok(()));
        let dropped = view("{name: visits, type: numeric}");
        let err = check_users(&dropped, Some(&both), &[pipeline()]).unwrap_err();
        assert!(err.contains("would drop `spend`, which pipeline `churn` looks up"), "{err}");
        let retyped = view("{name: spend, type: categorical, categories: [low, high]}");
        let err = check_users(&retyped, Some(&both), &[pipeline()]).unwrap_err();
        assert!(err.contains("would change the type of `spend` (Numeric to Categorical)"), "{err}");
        let mut rekeyed = both.clone();
        rekeyed.entities.push("shop".into());
        assert!(check_users(&rekeyed, Some(&both), &[pipeline()]).unwrap_err().contains("joins it on 1"));
        // A pipeline that looks nothing up in this view is not in the way.
        assert_eq!(check_users(&view("{name: other, type: numeric}"), None, &[]), Ok(()));
    }

    #[test]
    fn a_pipeline_may_look_up_only_what_exists() {
        let spend = view("{name: spend, type: numeric}");
        assert_eq!(check_lookup(&pipeline(), std::slice::from_ref(&spend)), Ok(()));
        assert!(check_lookup(&pipeline(), &[]).unwrap_err().contains("feature view `stats` is not known"));
        let other = view("{name: visits, type: numeric}");
        let err = check_lookup(&pipeline(), &[other]).unwrap_err();
        assert!(err.contains("has no feature `spend` (it has visits)"), "{err}");
    }
}
