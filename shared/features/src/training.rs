//! Training sets: rows of entities and times (any other columns ride along, labels among them)
//! with the features they look up appended, each as of its row's time.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use mlops_data::{text, view};
use mlops_shared::spec::{FeatureKind, FeatureViewSpec};
use mlops_shared::table::Column;

use crate::join::{AsOf, EntityRows, JoinStats, ViewStats};
use crate::rows::times;
use crate::{FeatureError, Written, composite_key};

/// A batch of a view's offline log, and where it is from: a file, from its row `first_row`.
pub struct LogBatch {
    pub batch: RecordBatch,
    pub file: Arc<str>,
    pub first_row: usize,
}

/// A view's offline log, batch after batch in write order.
pub type Log<'a> = Box<dyn Iterator<Item = Result<LogBatch, FeatureError>> + Send + 'a>;

/// The batches of file `name` as part of a log; an error reading them names the file.
pub fn file_log<'a>(
    name: &str,
    batches: impl Iterator<Item = Result<RecordBatch, FeatureError>> + Send + 'a,
) -> Log<'a> {
    let file: Arc<str> = name.into();
    let mut next_row = 0;
    Box::new(batches.map(move |b| match b {
        Ok(batch) => {
            let first_row = next_row;
            next_row += batch.num_rows();
            Ok(LogBatch { batch, file: file.clone(), first_row })
        }
        Err(e) => Err(FeatureError::InFile { file: file.to_string(), error: Box::new(e) }),
    }))
}

/// Features looked up in one view.
pub struct Lookup<'a> {
    pub view: &'a FeatureViewSpec,
    /// The features taken, by name, in the order they are appended.
    pub features: Vec<&'a str>,
    /// The view's offline log, read once, and where it keeps each record's write time.
    pub log: Log<'a>,
    pub written: Written<'a>,
}

/// What a join appended and found, per view.
pub struct Joined {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub stats: ViewStats,
}

/// Appends to each set of entity rows in `sets` (each set all of one schema) the looked-up
/// features, the key read from the `entities` columns (in each view's key order) and the time
/// from `at`. Each view's log is read once for all the sets.
pub fn join(
    sets: &[Vec<RecordBatch>],
    entities: &[String],
    at: &str,
    lookups: Vec<Lookup<'_>>,
) -> Result<Vec<Joined>, FeatureError> {
    let (mut keys, mut at_ms, mut ranges) = (Vec::new(), Vec::new(), Vec::with_capacity(sets.len()));
    for (i, set) in sets.iter().enumerate() {
        let start = keys.len();
        keys_and_times(set, entities, at, &mut keys, &mut at_ms)
            .map_err(|e| FeatureError::InSet { set: i, error: Box::new(e) })?;
        ranges.push(start..keys.len());
    }
    let rows = EntityRows::new(keys, at_ms);
    let mut columns: Vec<(Field, Column)> = Vec::new();
    let mut outcomes = Vec::with_capacity(lookups.len());
    for l in lookups {
        let mut join = AsOf::new(&rows, l.view, l.written, &l.features)?;
        for batch in l.log {
            join.push(batch?)?;
        }
        let (values, found) = join.finish()?;
        outcomes.push((l.view.name.to_string(), found));
        for (&name, column) in l.features.iter().zip(values) {
            let kind = match column {
                Column::Numeric(_) => FeatureKind::Numeric,
                Column::Categorical(_) => FeatureKind::Categorical,
            };
            columns.push((Field::new(name, crate::offline::arrow_type(kind), true), column));
        }
    }
    sets.iter()
        .zip(ranges)
        .enumerate()
        .map(|(i, (set, range))| {
            let stats = outcomes.iter().map(|(view, o)| (view.clone(), JoinStats::of(&o[range.clone()]))).collect();
            appended(set, &columns, range.start, stats).map_err(|e| FeatureError::InSet { set: i, error: Box::new(e) })
        })
        .collect()
}

/// `set` (its rows from `first` in `columns`) with `columns` appended.
fn appended(
    set: &[RecordBatch],
    columns: &[(Field, Column)],
    first: usize,
    stats: ViewStats,
) -> Result<Joined, FeatureError> {
    let base = set.first().map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema);
    if let Some((f, _)) = columns.iter().find(|(f, _)| base.column_with_name(f.name()).is_some()) {
        return Err(FeatureError::Offline(format!("the entity rows already have a column `{}`", f.name())));
    }
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(columns.iter().map(|(f, _)| f.clone()));
    let schema = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(set.len());
    let mut start = first;
    for batch in set {
        let range = start..start + batch.num_rows();
        let mut arrays = batch.columns().to_vec();
        arrays.extend(columns.iter().map(|(_, c)| mlops_data::column_array(c, range.clone())));
        out.push(RecordBatch::try_new(schema.clone(), arrays).map_err(|e| FeatureError::Offline(e.to_string()))?);
        start = range.end;
    }
    Ok(Joined { schema, batches: out, stats })
}

/// Appends each row's composite key and time.
fn keys_and_times(
    batches: &[RecordBatch],
    entities: &[String],
    at: &str,
    keys: &mut Vec<String>,
    at_ms: &mut Vec<i64>,
) -> Result<(), FeatureError> {
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
    Ok(())
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
    use mlops_shared::table::Column;

    use super::*;
    use crate::ViewRows;

    fn csv(text: &'static str) -> Vec<RecordBatch> {
        mlops_data::open(mlops_data::Source::Bytes(text.into()), "e.csv", &Default::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

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
        let mut file = Vec::new();
        crate::offline::write(&view, &log, &mut file).unwrap();
        let lookup = |features: Vec<&'static str>| Lookup {
            view: &view,
            features,
            log: file_log(
                "stats/1.parquet",
                crate::offline::batches(mlops_data::Source::Bytes(file.clone().into())).unwrap(),
            ),
            written: Written::Column(crate::offline::WRITTEN_COLUMN),
        };
        // Two sets, joined in one reading of the log.
        let sets = [
            csv("customer_id,when,label\nc1,1500,1\nc1,2500,0\nc9,2500,1\nc1,10,0\n"),
            csv("customer_id,when\nc1,1999\n"),
        ];
        let joined = join(&sets, &["customer_id".into()], "when", vec![lookup(vec!["spend", "tier"])]).unwrap();
        let names: Vec<&str> = joined[0].schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["customer_id", "when", "label", "spend", "tier"]);
        let column = |j: &Joined, name: &str| -> Vec<Option<f64>> {
            let c = j.batches[0].column_by_name(name).unwrap();
            c.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap().iter().collect()
        };
        assert_eq!(column(&joined[0], "spend"), [Some(1.0), Some(2.0), None, None]);
        assert_eq!(joined[0].stats[0].1, JoinStats { matched: 2, unknown: 1, absent: 1 });
        assert_eq!(column(&joined[1], "spend"), [Some(1.0)]);
        assert_eq!(joined[1].stats[0].1, JoinStats { matched: 1, unknown: 0, absent: 0 });
        let err = join(&sets[..1], &["customer_id".into()], "customer_id", vec![lookup(vec!["spend"])]).err().unwrap();
        assert!(err.to_string().starts_with("row 0: time `customer_id`: \"c1\" is not a time"), "{err}");
        let err = join(&sets[..1], &["customer_id".into()], "when", vec![lookup(vec!["label"])]).err().unwrap();
        assert_eq!(err.to_string(), "offline file: feature view `stats` has no feature `label`");
    }
}
