//! Erasure from a feature view: the rows of a data subject (the entities whose key column holds
//! their value) leave the offline log and the online store.

use std::collections::HashSet;
use std::sync::Arc;

use mlops_shared::spec::FeatureViewSpec;

use crate::online::entry_key;
use crate::store::{FeatureStore, StoreError, nats};
use crate::{FeatureError, KEY_SEPARATOR, ViewRows, offline};

/// Whether a key cell holds the subject.
pub type Matches = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// An offline file written again without the subject's rows (deleted when none was left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedFile {
    pub name: String,
    pub rows_removed: u64,
    pub rows_kept: u64,
}

/// What an erasure did to a view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewErased {
    pub files: Vec<ErasedFile>,
    /// Online entries deleted: one per entity of the subject (composite keys counted each).
    pub online_deleted: u64,
}

impl ViewRows {
    /// Rows `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Self {
        Self {
            keys: idx.iter().map(|&i| self.keys[i].clone()).collect(),
            event_ms: idx.iter().map(|&i| self.event_ms[i]).collect(),
            written_ms: idx.iter().map(|&i| self.written_ms[i]).collect(),
            columns: self.columns.iter().map(|c| c.take(idx)).collect(),
        }
    }
}

/// One offline file, read and split: the subject's entities (composite keys, each once), and the
/// file without their rows (`None` when it holds none of them).
struct Split {
    entities: Vec<String>,
    kept: Option<(ViewRows, u64)>,
}

/// Splits `rows` by whether key part `part` holds the subject.
fn split(rows: &ViewRows, part: usize, matches: &Matches) -> Split {
    let (mut kept, mut entities, mut seen) = (Vec::with_capacity(rows.len()), Vec::new(), HashSet::new());
    for (i, key) in rows.keys.iter().enumerate() {
        if matches(key.split(KEY_SEPARATOR).nth(part).unwrap_or("")) {
            if seen.insert(key.as_str()) {
                entities.push(key.clone());
            }
        } else {
            kept.push(i);
        }
    }
    let removed = (rows.len() - kept.len()) as u64;
    Split { entities, kept: (removed > 0).then(|| (rows.take(&kept), removed)) }
}

impl FeatureStore {
    /// Erases from `view` every row whose entity key column `column` holds the subject: for each
    /// offline file holding such rows, the online entries of those entities are deleted, then the
    /// file is written again without the rows under its own name (so it keeps its place in write
    /// order), or deleted when none is left. Safe to repeat after a crash: a file written again
    /// holds none of the subject's rows, and one not written yet still names their entities.
    pub async fn erase_entity(
        &self,
        view: &FeatureViewSpec,
        column: &str,
        matches: Matches,
    ) -> Result<ViewErased, StoreError> {
        let part = view.entities.iter().position(|k| k == column).ok_or_else(|| StoreError::BadView {
            view: view.name.to_string(),
            message: format!("`{column}` is not one of its entity key columns"),
        })?;
        let mut erased = ViewErased::default();
        let mut deleted = HashSet::new();
        for name in self.files(view.name.as_str()).await? {
            let bytes = self.file(&name).await?;
            let (v, m, file) = (view.clone(), matches.clone(), name.clone());
            let split = tokio::task::spawn_blocking(move || {
                let mut rows = ViewRows::empty(&v);
                offline::read(&v, mlops_data::Source::Bytes(bytes.into()), &mut rows)?;
                let split = split(&rows, part, &m);
                let rewritten = match &split.kept {
                    Some((kept, _)) if !kept.is_empty() => {
                        let mut out = Vec::new();
                        offline::write(&v, kept, &mut out)?;
                        Some(out)
                    }
                    _ => None,
                };
                Ok::<_, FeatureError>((split, rewritten))
            })
            .await
            .map_err(|e| FeatureError::Unavailable(format!("the erasure's reader stopped: {e}")))
            .and_then(|r| r)
            .map_err(|source| StoreError::File { name: file, source })?;
            let (Split { entities, kept: Some((kept, removed)) }, rewritten) = split else { continue };
            for entity in entities {
                if !deleted.contains(&entity) {
                    let key = entry_key(view.name.as_str(), &entity);
                    self.online.purge(&key).await.map_err(|e| nats("online")(&e))?;
                    deleted.insert(entity);
                }
            }
            match rewritten {
                Some(bytes) => self.offline.put_named(&name, &bytes).await,
                None => self.offline.delete(&name).await,
            }
            .map_err(|e| nats("offline")(&e))?;
            erased.files.push(ErasedFile { name, rows_removed: removed, rows_kept: kept.len() as u64 });
        }
        erased.online_deleted = deleted.len() as u64;
        Ok(erased)
    }
}

#[cfg(test)]
mod tests {
    use mlops_shared::table::Column;

    use super::*;

    fn rows(keys: &[&str]) -> ViewRows {
        let n = keys.len();
        ViewRows {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            event_ms: (0..n as i64).collect(),
            written_ms: vec![5; n],
            columns: vec![Column::Numeric((0..n).map(|i| Some(i as f64)).collect())],
        }
    }

    #[test]
    fn the_subjects_rows_leave_and_their_entities_are_named_once() {
        let sep = KEY_SEPARATOR;
        let all = rows(&[&format!("a{sep}x"), &format!("b{sep}x"), &format!("a{sep}y"), &format!("a{sep}x")]);
        let is_a: Matches = Arc::new(|cell| cell == "a");
        let split = split(&all, 0, &is_a);
        assert_eq!(split.entities, [format!("a{sep}x"), format!("a{sep}y")]);
        let (kept, removed) = split.kept.unwrap();
        assert_eq!((removed, kept.keys.clone(), kept.event_ms.clone()), (3, vec![format!("b{sep}x")], vec![1]));
        assert_eq!(kept.columns, [Column::Numeric(vec![Some(1.0)])]);
        // By the second key column; a file without the subject is left alone.
        assert_eq!(split_entities(&all, 1, "y"), [format!("a{sep}y")]);
        assert!(super::split(&all, 0, &(Arc::new(|cell: &str| cell == "c") as Matches)).kept.is_none());
    }

    fn split_entities(rows: &ViewRows, part: usize, value: &'static str) -> Vec<String> {
        super::split(rows, part, &(Arc::new(move |cell: &str| cell == value) as Matches)).entities
    }
}
