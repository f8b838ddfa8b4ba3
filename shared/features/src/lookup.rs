//! A pipeline's `lookup` at training and evaluation time: its views' offline logs loaded once,
//! the spec its models are trained under (its own features, then the looked-up ones), and each
//! dataset with the looked-up features appended as of each row's time.

use mlops_shared::spec::{FeatureViewSpec, LookupSpec, PipelineSpec};

use crate::join::ViewStats;
use crate::offline::WRITTEN_COLUMN;
use crate::training::{Lookup, join, write_parquet};
use crate::{FeatureError, FeatureStore, StoreError, Written};

/// The views a pipeline looks features up in, and the store that holds their logs.
pub struct LookedUp {
    lookup: LookupSpec,
    views: Vec<FeatureViewSpec>,
    store: FeatureStore,
    /// The runtime that fetches the logs' files.
    runtime: tokio::runtime::Handle,
}

impl FeatureStore {
    /// Loads the views `lookup` names (their logs are read at each join).
    pub async fn looked_up(&self, lookup: &LookupSpec) -> Result<LookedUp, StoreError> {
        let mut views = Vec::new();
        for name in lookup.views() {
            views.push(self.known_view(name).await?);
        }
        Ok(LookedUp { lookup: lookup.clone(), views, store: self.clone(), runtime: tokio::runtime::Handle::current() })
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
            .find(|v| v.name.as_str() == name)
            .ok_or_else(|| FeatureError::Offline(format!("feature view `{name}` was not loaded")))
    }

    /// `datasets` (by id) with the looked-up features appended as of each row's `lookup.at`, as
    /// Parquet, and what each view matched in each; each view's log is read once for all of
    /// them. An error in a dataset names it. Blocks while the log's files are fetched: call it off
    /// the runtime.
    pub fn join_datasets(
        &self,
        datasets: Vec<(String, mlops_data::Source)>,
    ) -> Result<Vec<(Vec<u8>, ViewStats)>, FeatureError> {
        let in_dataset = |id: &str, source: FeatureError| FeatureError::InFile {
            file: format!("dataset {}", mlops_shared::ids::short(id)),
            error: Box::new(source),
        };
        let (ids, sources): (Vec<String>, Vec<_>) = datasets.into_iter().unzip();
        let sets = ids
            .iter()
            .zip(sources)
            .map(|(id, d)| {
                let read = || mlops_data::open(d, "", &mlops_data::Limits::default())?.collect::<Result<Vec<_>, _>>();
                read().map_err(|e| in_dataset(id, e.into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lookups: Vec<Lookup<'_>> = self
            .views
            .iter()
            .map(|view| Lookup {
                view,
                features: self.lookup.refs().filter(|r| r.view == view.name.as_str()).map(|r| r.feature).collect(),
                log: self.store.log_batches(view.name.as_str(), &self.runtime),
                written: Written::Column(WRITTEN_COLUMN),
            })
            .collect();
        let joined = join(&sets, &self.lookup.entities, &self.lookup.at, lookups).map_err(|e| match e {
            FeatureError::InSet { set, error } => in_dataset(&ids[set], *error),
            e => e,
        })?;
        joined
            .into_iter()
            .map(|joined| {
                let mut bytes = Vec::new();
                write_parquet(joined.schema, &joined.batches, &mut bytes)?;
                Ok((bytes, joined.stats))
            })
            .collect()
    }
}
