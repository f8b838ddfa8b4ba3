//! A feature view's batches: checked by the same column checks as a pipeline's data (the features'
//! types, bounds and domains, the key columns present), then read with their times (each must
//! parse, none far in the future), and once accepted, written to the feature store before the
//! verdict is announced.

use mlops_features::{FeatureError, ViewRows, Written, read_batch};
use mlops_shared::spec::{FeatureViewSpec, PipelineSpec};

/// The checks of `view`'s batches as a pipeline spec: its features as features, its key columns
/// as checked columns that may not be empty, and no target (the `features` environment does not
/// ask for one). Times are checked when the rows are read ([`read_rows`]).
pub(crate) fn validation_spec(view: &FeatureViewSpec) -> PipelineSpec {
    let keys: Vec<serde_json::Value> = view
        .entities
        .iter()
        .map(|k| {
            let mut key = serde_json::json!({"name": k, "type": "categorical", "nullable": false});
            if let Some(p) = &view.entity_pii {
                key["pii"] = serde_json::json!(p.pii);
                key["purpose"] = serde_json::json!(p.purpose);
            }
            key
        })
        .collect();
    let spec = serde_json::json!({
        "name": view.name,
        "features": view.features,
        "columns": keys,
        "target": {"name": format!("{}__no_target", view.name)},
    });
    PipelineSpec::from_json(&serde_json::to_vec(&spec).expect("JSON"))
        .expect("a checked view makes a valid validation spec")
}

/// Every row of a batch file of `view` that arrived at `arrived_ms`, with its times checked.
pub(crate) fn read_rows(
    view: &FeatureViewSpec,
    file: mlops_data::Source,
    name: &str,
    arrived_ms: i64,
) -> Result<ViewRows, FeatureError> {
    let batches = mlops_data::open(file, name, &mlops_data::Limits::default())?.read_ahead(2);
    let written = view.ingestion_time.as_deref().map_or(Written::At(arrived_ms), Written::Column);
    let mut rows = ViewRows::empty(view);
    let mut first_row = 0;
    for batch in batches {
        let batch = batch?;
        read_batch(view, &batch, first_row, written, &mut rows)?;
        first_row += batch.num_rows();
    }
    rows.check_times(view, arrived_ms)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> FeatureViewSpec {
        FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: stats\nentities: [customer_id]\nevent_time: ts\nmax_clock_skew: 1h\n\
             features: [{name: spend, type: numeric, min: 0}]\n",
        )
        .unwrap()
    }

    fn read(csv: &str, arrived_ms: i64) -> Result<ViewRows, FeatureError> {
        read_rows(&view(), mlops_data::Source::Bytes(csv.to_owned().into()), "batch.csv", arrived_ms)
    }

    #[test]
    fn a_view_is_checked_as_a_pipeline_without_a_target() {
        let spec = validation_spec(&view());
        assert_eq!(spec.features[0].min, Some(0.0));
        assert!(!spec.columns[0].nullable && spec.columns[0].name == "customer_id");
    }

    #[test]
    fn an_entity_key_of_e_mail_addresses_is_refused_unless_the_view_allows_it_for_a_purpose() {
        let csv = (0..20)
            .fold("customer_id,ts,spend\n".to_owned(), |csv, i| csv + &format!("c{i}@example.org,1777636800,{i}\n"));
        let judge = |view: &FeatureViewSpec| {
            let batches = mlops_data::open(mlops_data::Source::Bytes(csv.clone().into()), "b.csv", &Default::default());
            let spec = validation_spec(view);
            crate::checks::validate(
                batches,
                &spec,
                None,
                mlops_shared::spec::Environment::Features,
                mlops_shared::spec::Origin::Upload,
            )
        };
        let refused = judge(&view());
        assert!(refused.blocked(), "{:?}", refused.columns);
        let allowed = FeatureViewSpec::from_yaml(
            "kind: feature_view\nname: stats\nentities: [customer_id]\nentity_pii: {pii: allow, purpose: lookups by e-mail}\n\
             event_time: ts\nmax_clock_skew: 1h\nfeatures: [{name: spend, type: numeric, min: 0}]\n",
        )
        .unwrap();
        let accepted = judge(&allowed);
        assert!(!accepted.blocked(), "{:?}", accepted.columns);
        let warned = accepted.columns.iter().find(|c| c.column == "customer_id").unwrap();
        assert!(warned.anomalies[0].message.ends_with("allowed for: lookups by e-mail"), "{warned:?}");
        assert!(!format!("{:?}", accepted.profile).contains("example.org"));
    }

    #[test]
    fn rows_read_with_their_times_and_bad_times_are_named() {
        let noon = 1_777_636_800_000;
        let rows = read("customer_id,ts,spend\nc1,2026-05-01T12:00:00Z,3\nc2,1777636800,\n", noon).unwrap();
        assert_eq!(rows.event_ms, [noon, noon]);
        assert_eq!(rows.written_ms, [noon, noon]);
        let future = read("customer_id,ts,spend\nc1,2026-05-03T12:00:00Z,3\n", noon).unwrap_err().to_string();
        assert!(
            future.contains("row 0: event time `ts` 2026-05-03T12:00:00.000Z is 172800 s in the future"),
            "{future}"
        );
        let bad = read("customer_id,ts,spend\nc1,2026-05-01T12:00:00Z,3\nc2,soon,4\n", noon).unwrap_err().to_string();
        assert!(bad.contains("row 1: time `ts`: \"soon\" is not a time"), "{bad}");
        let missing = read("customer_id,ts,spend\n,2026-05-01T12:00:00Z,3\n", noon).unwrap_err().to_string();
        assert!(missing.contains("row 0: entity key `customer_id` is missing"), "{missing}");
        let no_time = read("customer_id,spend\nc1,3\n", noon).unwrap_err().to_string();
        assert!(no_time.contains("column `ts` is missing"), "{no_time}");
    }
}
