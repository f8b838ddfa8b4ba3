//! The `lookup` section: features a pipeline takes from feature views, joined to its rows by
//! entity key, as of each row's time in training and as of the request in serving.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{FeatureSpec, SpecError, bad};

/// Which view features a pipeline looks up, by which key, as of which time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// `VIEW:feature` references; each becomes a model input named `feature`.
    pub from: Vec<String>,
    /// The pipeline's column(s) holding the entity key, in the view's key order.
    #[serde(deserialize_with = "one_or_many")]
    pub entities: Vec<String>,
    /// The pipeline's column holding each training row's time: a feature's value is the newest
    /// one that was true, and written, by then.
    pub at: String,
}

/// A parsed `VIEW:feature` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeatureRef<'a> {
    pub view: &'a str,
    pub feature: &'a str,
}

impl LookupSpec {
    /// The references, parsed (checked by [`LookupSpec::check`]).
    pub fn refs(&self) -> impl Iterator<Item = FeatureRef<'_>> {
        self.from.iter().filter_map(|r| parse_ref(r).ok())
    }

    /// The distinct views looked up, in name order.
    pub fn views(&self) -> BTreeSet<&str> {
        self.refs().map(|r| r.view).collect()
    }

    /// Checks the references and that the key and time columns are the pipeline's checked
    /// `columns` (so that validation sees them) and not its features.
    pub(super) fn check(&self, features: &[FeatureSpec], columns: &[FeatureSpec]) -> Result<(), SpecError> {
        if self.from.is_empty() {
            return bad("`lookup.from` must name at least one `VIEW:feature`".into());
        }
        let mut names = BTreeSet::new();
        for r in &self.from {
            let parsed = parse_ref(r).map_err(SpecError::Invalid)?;
            if !names.insert(parsed.feature) {
                return bad(format!("`lookup.from`: feature `{}` is looked up twice", parsed.feature));
            }
            if features.iter().chain(columns).any(|f| f.name == parsed.feature) {
                return bad(format!(
                    "`lookup.from`: `{r}` would be the model input `{}`, which the spec already declares",
                    parsed.feature
                ));
            }
        }
        if self.entities.is_empty() {
            return bad("`lookup.entities` must name the entity key column".into());
        }
        for column in self.entities.iter().chain([&self.at]) {
            if !columns.iter().any(|c| &c.name == column) {
                return bad(format!(
                    "`lookup`: column `{column}` must be declared under `columns` (checked, not a model input)"
                ));
            }
        }
        Ok(())
    }
}

/// Parses `VIEW:feature`.
pub fn parse_ref(text: &str) -> Result<FeatureRef<'_>, String> {
    match text.split_once(':') {
        Some((view, feature)) if !view.is_empty() && !feature.is_empty() && !feature.contains(':') => {
            Ok(FeatureRef { view, feature })
        }
        _ => Err(format!("`lookup.from`: {text:?} is not `VIEW:feature`")),
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use crate::spec::PipelineSpec;
    use crate::spec::tests::SPEC;

    const LOOKUP: &str = "columns:\n  - {name: customer_id, type: categorical}\n  - {name: ts, type: categorical}\n\
                          lookup: {from: [\"stats:spend\", \"stats:visits\", \"web:clicks\"], entities: customer_id, at: ts}\n";

    #[test]
    fn a_pipeline_looks_features_up_by_key_and_time() {
        let spec = PipelineSpec::from_yaml(&format!("{SPEC}{LOOKUP}")).unwrap();
        let lookup = spec.lookup.as_ref().unwrap();
        assert_eq!(lookup.entities, ["customer_id"]);
        assert_eq!(lookup.views().into_iter().collect::<Vec<_>>(), ["stats", "web"]);
        assert_eq!(lookup.refs().map(|r| r.feature).collect::<Vec<_>>(), ["spend", "visits", "clicks"]);
        assert_eq!(PipelineSpec::from_json(&spec.canonical_json()).unwrap(), spec);
        // Looking features up shapes the model; a spec without `lookup` keeps its hash.
        assert_ne!(
            spec.model_hash(),
            PipelineSpec::from_yaml(&format!("{SPEC}{}", &LOOKUP[..LOOKUP.find("lookup").unwrap()]))
                .unwrap()
                .model_hash()
        );
    }

    #[test]
    fn a_bad_lookup_is_refused_naming_the_reference() {
        let err = |lookup: &str| PipelineSpec::from_yaml(&format!("{SPEC}{lookup}")).unwrap_err().to_string();
        assert!(err(&LOOKUP.replace("stats:spend", "spend")).contains("\"spend\" is not `VIEW:feature`"));
        assert!(err(&LOOKUP.replace("web:clicks", "web:spend")).contains("`spend` is looked up twice"));
        assert!(err(&LOOKUP.replace("web:clicks", "web:tenure")).contains("the spec already declares"));
        assert!(err(&LOOKUP.replace("at: ts", "at: when")).contains("column `when` must be declared under `columns`"));
        assert!(
            err(&LOOKUP.replace("from: [\"stats:spend\", \"stats:visits\", \"web:clicks\"]", "from: []"))
                .contains("at least one")
        );
    }
}
