//! Training sets: rows of entities and times (any other columns ride along, labels among them)
//! with the features they look up appended, each as of its row's time.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use mlops_data::{text, view};
use mlops_shared::spec::FeatureViewSpec;
use mlops_shared::table::Column;

use crate::join::{ViewStats, as_of, gather};
use crate::rows::times;
use crate::{FeatureError, ViewRows, composite_key};

/// Features looked up in one view.
pub struct Lookup<'a> {
    pub view: &'a FeatureViewSpec,
    /// The view's offline log.
    pub log: &'a ViewRows,
    /// The features taken, by name, in the order they are appended.
    pub features: Vec<&'a str>,
}

/// What a join appended and found, per view.
pub struct Joined {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub stats: ViewStats,
}

/// Appends to `batches` (all of one schema) the looked-up features, the key read from the
/// `entities` columns (in each view's key order) and the time from `at`.
pub fn join(
    batches: &[RecordBatch],
    entities: &[String],
    at: &str,
    lookups: &[Lookup<'_>],
) -> Result<Joined, FeatureError> {
    let (keys, at_ms) = keys_and_times(batches, entities, at)?;
    let mut columns: Vec<(Field, Column)> = Vec::new();
    let mut stats = Vec::with_capacity(lookups.len());
    for l in lookups {
        let (found, s) = as_of(l.log, l.view.ttl_ms(), &keys, &at_ms);
        stats.push((l.view.name.to_string(), s));
        for &name in &l.features {
            let (i, f) = l.view.features.iter().enumerate().find(|(_, f)| f.name == name).ok_or_else(|| {
                FeatureError::Offline(format!("feature view `{}` has no feature `{name}`", l.view.name))
            })?;
            columns.push((Field::new(name, crate::offline::arrow_type(f.kind), true), gather(l.log, &found, i)));
        }
    }
    let base = batches.first().map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema);
    if let Some((f, _)) = columns.iter().find(|(f, _)| base.column_with_name(f.name()).is_some()) {
        return Err(FeatureError::Offline(format!("the entity rows already have a column `{}`", f.name())));
    }
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(columns.iter().map(|(f, _)| f.clone()));
    let schema = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    let mut start = 0;
    for batch in batches {
        let range = start..start + batch.num_rows();
        let mut arrays = batch.columns().to_vec();
        arrays.extend(columns.iter().map(|(_, c)| mlops_data::column_array(c, range.clone())));
        out.push(RecordBatch::try_new(schema.clone(), arrays).map_err(|e| FeatureError::Offline(e.to_string()))?);
        start = range.end;
    }
    Ok(Joined { schema, batches: out, stats })
}

/// Each row's composite key and time.
fn keys_and_times(
    batches: &[RecordBatch],
    entities: &[String],
    at: &str,
) -> Result<(Vec<String>, Vec<i64>), FeatureError> {
    let (mut keys, mut at_ms) = (Vec::new(), Vec::new());
    let mut first_row = 0;
    for batch in batches {
        let column =
            |name: &str| batch.column_by_name(name).ok_or_else(|| FeatureError::MissingColumn(name.to_owned()));
        let key_columns = entities.iter().map(|e| column(e)).collect::<Result<Vec<_>, _>>()?;
        let views: Vec<_> = key_columns.iter().map(|a| view(a)).collect();
        for row in 0..batch.num_rows() {
            let parts: Vec<_> = views.iter().map(|v| text(v.get(row))).collect();
            keys.push(composite_key(&parts));
        }
        let times =
            times(column(at)?, at).map_err(|(row, message)| FeatureError::Row { row: first_row + row, message })?;
        at_ms.extend(times);
        first_row += batch.num_rows();
    }
    Ok((keys, at_ms))
}

/// Writes `batches` as one Parquet file.
pub fn write_parquet(
    schema: SchemaRef,
    batches: &[RecordBatch],
    to: impl std::io::Write + Send,
) -> Result<(), FeatureError> {
    let err = |e: parquet::errors::ParquetError| FeatureError::Offline(e.to_string());
    let mut writer = parquet::arrow::ArrowWriter::try_new(to, schema, None).map_err(err)?;
    for b in batches {
        writer.write(b).map_err(err)?;
    }
    writer.close().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_rows_keep_their_columns_and_gain_the_features_as_of_their_time() {
        let view = FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: stats\nentities: [customer_id]\nevent_time: ts\nfeatures:\n\
             - {name: spend, type: numeric}\n- {name: tier, type: categorical, categories: [a, b]}\n",
        )
        .unwrap();
        let log = ViewRows {
            keys: vec!["c1".into(), "c1".into()],
            event_ms: vec![1_000_000, 2_000_000],
            written_ms: vec![1_000_000, 2_000_000],
            columns: vec![
                Column::Numeric(vec![Some(1.0), Some(2.0)]),
                Column::Categorical(vec![Some("a".into()), None]),
            ],
        };
        let csv = "customer_id,when,label\nc1,1500,1\nc1,2500,0\nc9,2500,1\nc1,10,0\n";
        let batches: Vec<RecordBatch> =
            mlops_data::open(mlops_data::Source::Bytes(csv.into()), "e.csv", &Default::default())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let lookup = Lookup { view: &view, log: &log, features: vec!["spend", "tier"] };
        let joined = join(&batches, &["customer_id".into()], "when", &[lookup]).unwrap();
        let names: Vec<&str> = joined.schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["customer_id", "when", "label", "spend", "tier"]);
        let spend = joined.batches[0].column_by_name("spend").unwrap();
        let spend: Vec<Option<f64>> =
            spend.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap().iter().collect();
        assert_eq!(spend, [Some(1.0), Some(2.0), None, None]);
        assert_eq!(joined.stats[0].1, crate::join::JoinStats { matched: 2, unknown: 1, absent: 1 });
        let err = join(
            &batches,
            &["customer_id".into()],
            "label",
            &[Lookup { view: &view, log: &log, features: vec!["label"] }],
        );
        assert!(err.is_err());
    }
}
