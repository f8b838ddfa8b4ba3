//! Serving by entity: a request to a model that looks features up may carry only the entity key
//! (and any features of its own); the looked-up features are read from the online store, joined
//! in, and the model scores (and the prediction log keeps) exactly the values it used.
//!
//! Precedence: the online store's value wins over a value the request names for the same
//! feature (the model must see what training saw); each such override is counted
//! (`mlops_features_overridden_total`). A request without the key but with every looked-up
//! feature is scored as it is. An entity the view does not have (or whose value is past the
//! view's TTL) gets missing values, imputed as in training, and is counted
//! (`mlops_features_missing_total`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlops_features::FeatureStore;
use mlops_features::online::Entry;
use mlops_features::replica::Replica;
use mlops_shared::spec::{FeatureKind, FeatureViewSpec, LookupSpec};
use tokio_util::sync::CancellationToken;

use crate::error::DeployerError;
use crate::serving::Column;

/// How long a view's spec is used before it is read again.
const VIEW_CACHE: Duration = Duration::from_secs(2);

/// The online store, as serving reads it: through a replica of each view it has read, held in
/// memory up to `replica_limit` entities a view (see [`Replica`]).
pub struct OnlineFeatures {
    store: FeatureStore,
    views: Mutex<HashMap<String, (Arc<FeatureViewSpec>, Instant)>>,
    replicas: Mutex<HashMap<String, Arc<Replica>>>,
    replica_limit: usize,
    /// Ends the replicas' watches.
    shutdown: CancellationToken,
}

/// One looked-up feature for each requested entity.
pub struct Looked {
    pub columns: Vec<(String, Column)>,
    /// Per looked-up feature, the event time of each value (None where missing).
    pub event_ms: Vec<Vec<Option<i64>>>,
}

impl OnlineFeatures {
    pub fn new(store: FeatureStore, replica_limit: usize, shutdown: CancellationToken) -> Self {
        let (views, replicas) = (Mutex::new(HashMap::new()), Mutex::new(HashMap::new()));
        Self { store, views, replicas, replica_limit, shutdown }
    }

    /// View `name`'s replica, started by the first read of the view.
    fn replica(&self, name: &str) -> Arc<Replica> {
        let mut replicas = self.replicas.lock().expect("not poisoned");
        if let Some(r) = replicas.get(name) {
            return r.clone();
        }
        let replica = self.store.replica(name, self.replica_limit, self.shutdown.child_token());
        replicas.insert(name.to_owned(), replica.clone());
        replica
    }

    /// View `name`'s spec, from a cache of a few seconds.
    pub async fn view(&self, name: &str) -> Result<Arc<FeatureViewSpec>, DeployerError> {
        if let Some((v, at)) = self.views.lock().expect("not poisoned").get(name)
            && at.elapsed() < VIEW_CACHE
        {
            return Ok(v.clone());
        }
        let view = self.store.view(name).await.map_err(DeployerError::store)?;
        let view =
            Arc::new(view.ok_or_else(|| DeployerError::BadInput(format!("feature view `{name}` is not known")))?);
        self.views.lock().expect("not poisoned").insert(name.to_owned(), (view.clone(), Instant::now()));
        Ok(view)
    }

    /// The features `refs` (`VIEW:feature`) of the entities `keys` now, one column per reference.
    pub async fn look_up<'r>(
        &self,
        refs: impl Iterator<Item = mlops_shared::spec::FeatureRef<'r>>,
        keys: &[String],
    ) -> Result<Looked, DeployerError> {
        let now = mlops_shared::now_unix_ms();
        let refs: Vec<_> = refs.collect();
        let mut names: Vec<&str> = refs.iter().map(|r| r.view).collect();
        names.sort_unstable();
        names.dedup();
        // Every view's entries at once: one round of reads, however many views.
        let reads = names.iter().map(|&name| async move {
            let view = self.view(name).await?;
            let replica = self.replica(name);
            let entries = self.store.online(&view, keys, now, Some(&replica)).await.map_err(DeployerError::store)?;
            Ok::<_, DeployerError>((name, (view, entries)))
        });
        let fetched: HashMap<&str, (Arc<FeatureViewSpec>, Vec<Option<Entry>>)> =
            futures::future::try_join_all(reads).await?.into_iter().collect();
        let mut out = Looked { columns: Vec::new(), event_ms: Vec::new() };
        for &name in &names {
            let missing = fetched[name].1.iter().filter(|e| e.is_none()).count() as u64;
            if missing > 0 {
                metrics::counter!("mlops_features_missing_total", "view" => name.to_owned()).increment(missing);
            }
        }
        for r in refs {
            let (view, entries) = &fetched[r.view];
            let Some(i) = view.features.iter().position(|f| f.name == r.feature) else {
                return Err(DeployerError::BadInput(format!(
                    "feature view `{}` has no feature `{}`",
                    r.view, r.feature
                )));
            };
            let value = |e: &Option<Entry>| e.as_ref().and_then(|e| e.values.get(i)).cloned();
            let column = match view.features[i].kind {
                FeatureKind::Numeric => {
                    Column::Num(entries.iter().map(|e| value(e).and_then(|v| v.as_f64())).collect())
                }
                FeatureKind::Categorical => {
                    Column::Str(entries.iter().map(|e| value(e).and_then(|v| v.as_str().map(str::to_owned))).collect())
                }
            };
            out.columns.push((r.feature.to_owned(), column));
            out.event_ms.push(entries.iter().map(|e| e.as_ref().map(|e| e.event_ms)).collect());
        }
        Ok(out)
    }

    /// `inputs` for a model that looks features up by `lookup`: the key columns taken out, the
    /// looked-up features put in (see the module's precedence). Without a lookup, `inputs` as
    /// they are.
    pub async fn fill(
        &self,
        lookup: Option<&LookupSpec>,
        mut inputs: Vec<(String, Column)>,
    ) -> Result<Vec<(String, Column)>, DeployerError> {
        let Some(lookup) = lookup else { return Ok(inputs) };
        let has = |inputs: &[(String, Column)], name: &str| inputs.iter().any(|(n, _)| n == name);
        if let Some(key) = lookup.entities.iter().find(|k| !has(&inputs, k)) {
            if lookup.refs().all(|r| has(&inputs, r.feature)) {
                return Ok(inputs); // every looked-up feature given: scored as it is
            }
            return Err(DeployerError::BadInput(format!(
                "input `{key}` is missing: the model looks features up by it ({})",
                lookup.from.join(", ")
            )));
        }
        let mut key_columns = Vec::with_capacity(lookup.entities.len());
        for k in &lookup.entities {
            let at = inputs.iter().position(|(n, _)| n == k).expect("checked above");
            key_columns.push(inputs.remove(at).1);
        }
        inputs.retain(|(n, _)| n != &lookup.at);
        let keys = entity_keys(&key_columns);
        let looked = self.look_up(lookup.refs(), &keys).await?;
        for (name, column) in looked.columns {
            if let Some(at) = inputs.iter().position(|(n, _)| *n == name) {
                metrics::counter!("mlops_features_overridden_total", "feature" => name.clone()).increment(1);
                inputs.remove(at);
            }
            inputs.push((name, column));
        }
        Ok(inputs)
    }
}

/// Each row's composite key from the key columns, as the view's files hold keys (numbers as
/// their text, integers without a fraction; text trimmed).
pub fn entity_keys(columns: &[Column]) -> Vec<String> {
    let rows = columns.first().map_or(0, Column::len);
    (0..rows)
        .map(|i| {
            let parts: Vec<String> = columns
                .iter()
                .map(|c| match c {
                    Column::Str(v) => v
                        .get(i)
                        .and_then(Option::as_deref)
                        .map(|s| mlops_shared::table::trim_cell(s).to_owned())
                        .unwrap_or_default(),
                    Column::Num(v) => v
                        .get(i)
                        .copied()
                        .flatten()
                        .map(|x| mlops_data::text(mlops_data::Cell::Num(x)).into_owned())
                        .unwrap_or_default(),
                })
                .collect();
            mlops_features::composite_key(&parts)
        })
        .collect()
}

/// An entity key value of a JSON request, as [`entity_keys`] takes it: text, or a number or a
/// boolean as the view's files write it (`42.0` is `42`); null is none.
pub fn key_text(v: &serde_json::Value) -> Option<String> {
    use mlops_data::Cell;
    let cell = match v {
        serde_json::Value::String(s) => Cell::Str(s),
        serde_json::Value::Number(n) => Cell::Num(n.as_f64()?),
        serde_json::Value::Bool(b) => Cell::Bool(*b),
        _ => return None,
    };
    Some(mlops_data::text(cell).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_files_hold_them() {
        let keys = entity_keys(&[Column::Num(vec![Some(42.0), None, Some(1.5)])]);
        assert_eq!(keys, ["42", "", "1.5"]);
        let composite = entity_keys(&[Column::Str(vec![Some(" s1 ".into())]), Column::Num(vec![Some(7.0)])]);
        assert_eq!(composite, [mlops_features::composite_key(&["s1", "7"])]);
        let json: Vec<Option<String>> =
            serde_json::json!([42, 42.0, 1e2, 1.5, "c7", null]).as_array().unwrap().iter().map(key_text).collect();
        let want = [Some("42"), Some("42"), Some("100"), Some("1.5"), Some("c7"), None];
        assert_eq!(json, want.map(|k| k.map(String::from)));
    }
}
