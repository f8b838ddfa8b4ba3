//! A pipeline's `lookup` at training and evaluation time: its views' offline logs loaded once,
//! the spec its models are trained under (its own features, then the looked-up ones), and each
//! dataset with the looked-up features appended as of each row's time.

use mlops_shared::spec::{FeatureViewSpec, LookupSpec, PipelineSpec};

use crate::join::ViewStats;
use crate::training::{Lookup, join, write_parquet};
use crate::{FeatureError, FeatureStore, StoreError, ViewRows};

/// The views a pipeline looks features up in, with their offline logs.
pub struct LookedUp {
    lookup: LookupSpec,
    views: Vec<(FeatureViewSpec, ViewRows)>,
}

impl FeatureStore {
    /// Loads the views `lookup` names, with their whole offline logs.
    pub async fn looked_up(&self, lookup: &LookupSpec) -> Result<LookedUp, StoreError> {
        let mut views = Vec::new();
        for name in lookup.views() {
            let view = self.known_view(name).await?;
            let log = self.log(&view).await?;
            views.push((view, log));
        }
        Ok(LookedUp { lookup: lookup.clone(), views })
    }
}

impl LookedUp {
    /// The spec `spec`'s models are trained and judged under: its features, then each looked-up
    /// feature (as its view declares it, as a model input) in `lookup.from` order.
    pub fn model_spec(&self, spec: &PipelineSpec) -> Result<PipelineSpec, FeatureError> {
        let mut model = spec.clone();
        for r in self.lookup.refs() {
            let f = self.view(r.view)?.feature(r.feature).ok_or_else(|| {
                FeatureError::Offline(format!("feature view `{}` has no feature `{}`", r.view, r.feature))
            })?;
            model.features.push(f.model_input());
        }
        Ok(model)
    }

    fn view(&self, name: &str) -> Result<&FeatureViewSpec, FeatureError> {
        self.views
            .iter()
            .map(|(v, _)| v)
            .find(|v| v.name.as_str() == name)
            .ok_or_else(|| FeatureError::Offline(format!("feature view `{name}` was not loaded")))
    }

    /// `dataset` (named `name`, for its format) with the looked-up features appended as of each
    /// row's `lookup.at`, as Parquet; and what each view matched.
    pub fn join_dataset(&self, dataset: mlops_data::Source, name: &str) -> Result<(Vec<u8>, ViewStats), FeatureError> {
        let batches: Vec<_> =
            mlops_data::open(dataset, name, &mlops_data::Limits::default())?.collect::<Result<_, _>>()?;
        let lookups: Vec<Lookup<'_>> = self
            .views
            .iter()
            .map(|(view, log)| Lookup {
                view,
                log,
                features: self.lookup.refs().filter(|r| r.view == view.name.as_str()).map(|r| r.feature).collect(),
            })
            .collect();
        let joined = join(&batches, &self.lookup.entities, &self.lookup.at, &lookups)?;
        let mut bytes = Vec::new();
        write_parquet(joined.schema, &joined.batches, &mut bytes)?;
        Ok((bytes, joined.stats))
    }
}
