//! Pipeline specs in the `pipelines` key-value bucket, where each pipeline's current spec is kept
//! as canonical JSON for every service to read.

use super::PipelineSpec;
use crate::bus::{Bus, BusError, PIPELINES_KV};

/// Reads pipeline specs from the `pipelines` key-value bucket.
#[derive(Clone)]
pub struct SpecStore {
    kv: async_nats::jetstream::kv::Store,
}

impl SpecStore {
    /// Opens the bucket.
    pub async fn open(bus: &Bus) -> Result<Self, BusError> {
        Ok(Self { kv: bus.kv(PIPELINES_KV).await? })
    }

    /// The current spec of `name`, or `None` for an unknown pipeline.
    pub async fn get(&self, name: &str) -> Result<Option<PipelineSpec>, BusError> {
        let err = |message: String| BusError::Kv { bucket: PIPELINES_KV, message };
        match self.kv.get(name).await.map_err(|e| err(e.to_string()))? {
            None => Ok(None),
            Some(bytes) => PipelineSpec::from_json(&bytes).map(Some).map_err(|e| err(format!("{name}: {e}"))),
        }
    }

    /// Every stored spec, in name order. A stored spec this version cannot read is skipped with a
    /// warning rather than hiding the others.
    pub async fn all(&self) -> Result<Vec<PipelineSpec>, BusError> {
        use futures::TryStreamExt as _;
        let err = |message: String| BusError::Kv { bucket: PIPELINES_KV, message };
        let keys = self.kv.keys().await.map_err(|e| err(e.to_string()))?;
        let mut names: Vec<String> = keys.try_collect().await.map_err(|e| err(e.to_string()))?;
        names.sort();
        let mut specs = Vec::with_capacity(names.len());
        for name in names {
            match self.get(&name).await {
                Ok(Some(spec)) => specs.push(spec),
                Ok(None) => {}
                Err(e) => tracing::warn!(pipeline = %name, error = %e, "unreadable pipeline spec skipped"),
            }
        }
        Ok(specs)
    }

    /// Stores `spec` as the current spec of its pipeline.
    pub async fn put(&self, spec: &PipelineSpec) -> Result<(), BusError> {
        self.kv
            .put(spec.name.as_str(), spec.canonical_json().into())
            .await
            .map(drop)
            .map_err(|e| BusError::Kv { bucket: PIPELINES_KV, message: e.to_string() })
    }
}
