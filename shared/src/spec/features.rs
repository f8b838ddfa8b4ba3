//! The `features` and `columns` sections: each column's type, bounds, domain, drift limits and
//! encoding, and the checks that keep them consistent with one another.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{SpecError, bad};

/// One input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FeatureKind,
    /// Inclusive lower bound (numeric features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Inclusive upper bound (numeric features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The allowed values (categorical features).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// A regular expression every value must match, whole (categorical columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Whether empty cells are allowed.
    #[serde(default)]
    pub nullable: bool,
    /// Whether this feature's anomalies block the dataset (`block`, the default) or only warn.
    #[serde(default, skip_serializing_if = "Severity::is_block")]
    pub severity: Severity,
    /// Share of rows that must pass each value check (type, nulls, range, domain); anomalies
    /// within this tolerance only warn. 1.0 (the default) tolerates none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mostly: Option<f64>,
    /// Whether every value must be distinct.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// Largest tolerated Jensen–Shannon divergence, in bits (base 2, so in [0, 1]), of a numeric
    /// feature's histogram from the previous accepted version's, over that version's bin edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_js_divergence: Option<f64>,
    /// Largest tolerated change of any one category's share (the L∞ distance between the share
    /// vectors) against the previous accepted version, for a categorical feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_share_shift: Option<f64>,
    /// The one key both of the above had before they were told apart: still read, so that stored
    /// and existing specs keep working, moved to the key of the feature's type when the spec is
    /// read ([`PipelineSpec::from_yaml`](super::PipelineSpec::from_yaml)), and never written.
    #[serde(default, skip_serializing)]
    pub max_drift: Option<f64>,
    /// How a categorical feature becomes model inputs (`one_hot` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// What a missing numeric value becomes before standardisation (`mean` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impute: Option<Impute>,
    /// What becomes of personal data found in the column ([`crate::pii`]): `forbid` rejects the
    /// version, `allow` admits it for the stated `purpose`. A column found holding personal data
    /// with no policy is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<PiiPolicy>,
    /// Why the column's personal data is processed: required by `pii: allow`, and shown wherever
    /// the column's personal data is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The least predictive power the feature must show alone on labelled data, in [0, 1]: the
    /// validator's `power` (|2·AUC − 1| for a classifier, R² for regression). Under it the data
    /// has a `low_power` anomaly (blocking unless `severity: warn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_power: Option<f64>,
}

/// A column's personal-data policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiPolicy {
    /// Personal data found in the column rejects the version.
    Forbid,
    /// Personal data in the column is admitted, for the column's `purpose`.
    Allow,
    /// Ingest replaces the column's values by keyed hashes ([`crate::pii::Pseudonymiser`])
    /// before anything is stored: for a checked column, not a feature.
    #[serde(alias = "pseudonymize")]
    Pseudonymise,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// How a categorical feature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One input per category, 1 for the row's category; an unseen or missing one is all zeros.
    OneHot,
    /// One input: the category's position in `categories` (0, 1, …), for ordered categories;
    /// an unseen or missing one is -1.
    Ordinal,
}

/// How a missing numeric value is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impute {
    /// The training rows' mean.
    Mean,
    /// The training rows' median (robust to outliers).
    Median,
}

/// Whether an anomaly stops a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Block,
    Warn,
}

impl Severity {
    pub(super) fn is_block(&self) -> bool {
        *self == Self::Block
    }
}

/// `pattern` compiled to match a whole value, not a part of it.
pub fn full_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$")).size_limit(1 << 20).build()
}

/// Refuses personal data in a declared domain (the spec is stored and its categories shown in
/// reports and model cards) unless the column allows it, naming the entry and the kind, never the
/// value.
pub(super) fn check_domains(
    features: &[FeatureSpec],
    columns: &[FeatureSpec],
    detector: &crate::pii::Detector,
) -> Result<(), SpecError> {
    let sections = features.iter().map(|f| ("features", f)).chain(columns.iter().map(|f| ("columns", f)));
    for (section, f) in sections.filter(|(_, f)| f.pii != Some(PiiPolicy::Allow)) {
        for (i, c) in f.categories.iter().enumerate() {
            if let Some(kind) = detector.classify(c) {
                return bad(format!(
                    "{section}.{}: category {} of `categories` is personal data ({}); list none in a spec, \
                     or declare `pii: allow` with a `purpose`",
                    f.name,
                    i + 1,
                    detector.name(kind)
                ));
            }
        }
    }
    Ok(())
}

/// Checks `features`, then `columns`, entry by entry, and returns every declared name.
pub(super) fn check<'a>(
    features: &'a [FeatureSpec],
    columns: &'a [FeatureSpec],
) -> Result<BTreeSet<&'a str>, SpecError> {
    if features.is_empty() {
        return bad("`features` must list at least one feature".into());
    }
    let mut seen = BTreeSet::new();
    let sections = features.iter().map(|f| ("features", f)).chain(columns.iter().map(|f| ("columns", f)));
    for (section, f) in sections {
        if f.name.is_empty() {
            return bad(format!("an entry of `{section}` has an empty `name`"));
        }
        if !seen.insert(f.name.as_str()) {
            return bad(format!("column `{}` is declared twice", f.name));
        }
        f.check(section)?;
    }
    Ok(seen)
}

impl FeatureSpec {
    /// This feature as a model sees it: its name, type, categories, nullability, encoding and
    /// imputation. The data checks (bounds, pattern, severity, tolerance, uniqueness) and drift
    /// limits are left out: they decide which data is admitted and when to alert, never what a
    /// model learns from admitted data, so changing them makes no new model.
    pub fn model_input(&self) -> Self {
        Self {
            name: self.name.clone(),
            kind: self.kind,
            categories: self.categories.clone(),
            nullable: self.nullable,
            encoding: self.encoding,
            impute: self.impute,
            min: None,
            max: None,
            regex: None,
            severity: Severity::default(),
            mostly: None,
            unique: false,
            max_js_divergence: None,
            max_share_shift: None,
            max_drift: None,
            pii: None,
            purpose: None,
            min_power: None,
        }
    }

    /// Checks one entry of `section` (`features` or `columns`) on its own: its shares, its drift
    /// limits and the keys its type allows.
    fn check(&self, section: &str) -> Result<(), SpecError> {
        let at = format!("{section}.{}", self.name);
        if self.mostly.is_some_and(|m| !(m > 0.0 && m <= 1.0)) {
            return bad(format!("{at}: `mostly` must be in (0, 1]"));
        }
        for (key, max) in [("max_js_divergence", self.max_js_divergence), ("max_share_shift", self.max_share_shift)] {
            if max.is_some_and(|d| !(0.0..=1.0).contains(&d)) {
                return bad(format!("{at}: `{key}` must be in [0, 1]"));
            }
        }
        if self.min_power.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return bad(format!("{at}: `min_power` must be in [0, 1] (0 no signal, 1 a perfect one)"));
        }
        if self.min_power.is_some() && section == "columns" {
            return bad(format!("{at}: `min_power` is for `features`: a column is never trained on"));
        }
        match (self.pii, self.purpose.as_deref().map(str::trim)) {
            (Some(PiiPolicy::Allow), None | Some("")) => {
                return bad(format!("{at}: `pii: allow` needs a `purpose` saying why the personal data is processed"));
            }
            (None | Some(PiiPolicy::Forbid | PiiPolicy::Pseudonymise), Some(_)) => {
                return bad(format!("{at}: `purpose` goes with `pii: allow`"));
            }
            _ => {}
        }
        if self.pii == Some(PiiPolicy::Pseudonymise) {
            self.check_pseudonymised(section, &at)?;
        }
        if self.max_drift.is_some() {
            return bad(format!(
                "{at}: `max_drift` was renamed `max_js_divergence` (numeric) or `max_share_shift` (categorical)"
            ));
        }
        match self.kind {
            FeatureKind::Numeric => self.check_numeric(&at),
            FeatureKind::Categorical => self.check_categorical(section, &at),
        }
    }

    /// A column whose values become keyed hashes: checked, never a model input (serving would see
    /// the raw values), text, with no domain or pattern the hashes could match.
    fn check_pseudonymised(&self, section: &str, at: &str) -> Result<(), SpecError> {
        if section == "features" {
            return bad(format!(
                "{at}: `pii: pseudonymise` is for `columns`: a feature's values reach the model when it serves, \
                 where they are not pseudonymised"
            ));
        }
        if self.kind != FeatureKind::Categorical {
            return bad(format!(
                "{at}: `pii: pseudonymise` needs a categorical column: its values become keyed hashes"
            ));
        }
        if !self.categories.is_empty() || self.regex.is_some() {
            return bad(format!(
                "{at}: a pseudonymised column's values become keyed hashes: no `categories` or `regex`"
            ));
        }
        Ok(())
    }

    /// A numeric column, named `at` in messages: no categorical keys, and bounds in order.
    fn check_numeric(&self, at: &str) -> Result<(), SpecError> {
        if !self.categories.is_empty() {
            return bad(format!("{at}: `categories` is for categorical features"));
        }
        if self.encoding.is_some() {
            return bad(format!("{at}: `encoding` is for categorical features"));
        }
        if self.regex.is_some() {
            return bad(format!("{at}: `regex` is for categorical columns"));
        }
        if self.max_share_shift.is_some() {
            return bad(format!(
                "{at}: `max_share_shift` is for categorical features (numeric ones take `max_js_divergence`)"
            ));
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max)
            && lo > hi
        {
            return bad(format!("{at}: `min` ({lo}) is greater than `max` ({hi})"));
        }
        Ok(())
    }

    /// A categorical column, named `at` in messages: no numeric keys, and categories that match
    /// its pattern.
    fn check_categorical(&self, section: &str, at: &str) -> Result<(), SpecError> {
        // A model input needs its categories (they are its one-hot columns); a column
        // that is only checked may have an open domain.
        if self.categories.is_empty() && section == "features" {
            return bad(format!("{at}: a categorical feature needs `categories`"));
        }
        if self.min.is_some() || self.max.is_some() {
            return bad(format!("{at}: `min`/`max` are for numeric features"));
        }
        if self.max_js_divergence.is_some() {
            return bad(format!(
                "{at}: `max_js_divergence` is for numeric features (categorical ones take `max_share_shift`)"
            ));
        }
        if self.impute.is_some() {
            return bad(format!("{at}: `impute` is for numeric features"));
        }
        if let Some(pattern) = &self.regex {
            let re = full_match(pattern).map_err(|e| SpecError::Invalid(format!("{at}: `regex`: {e}")))?;
            if let Some(c) = self.categories.iter().find(|c| !re.is_match(c)) {
                return bad(format!("{at}: category {c:?} does not match `regex` {pattern:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PipelineSpec;
    use crate::spec::tests::SPEC;

    #[test]
    fn drift_limits_name_their_statistic_and_the_old_key_still_reads() {
        let new_keys = SPEC
            .replace("max: 100}", "max: 100, max_js_divergence: 0.1}")
            .replace("[monthly, yearly]}", "[monthly, yearly], max_share_shift: 0.2}");
        let spec = PipelineSpec::from_yaml(&new_keys).unwrap();
        assert_eq!((spec.features[0].max_js_divergence, spec.features[2].max_share_shift), (Some(0.1), Some(0.2)));
        // A spec written with the old key reads as the same spec, and is stored under the new keys.
        let old_keys = SPEC
            .replace("max: 100}", "max: 100, max_drift: 0.1}")
            .replace("[monthly, yearly]}", "[monthly, yearly], max_drift: 0.2}");
        let old = PipelineSpec::from_yaml(&old_keys).unwrap();
        assert_eq!(old, spec);
        let json = String::from_utf8(old.canonical_json()).unwrap();
        assert!(json.contains("\"max_js_divergence\":0.1") && !json.contains("max_drift"), "{json}");
        assert_eq!(PipelineSpec::from_json(json.as_bytes()).unwrap(), spec);
        let err = |yaml: &str| PipelineSpec::from_yaml(yaml).unwrap_err().to_string();
        let both = SPEC.replace("max: 100}", "max: 100, max_drift: 0.1, max_js_divergence: 0.2}");
        assert!(err(&both).contains("`max_drift` is the old name of `max_js_divergence`"), "{}", err(&both));
        let wrong_kind = SPEC.replace("max: 100}", "max: 100, max_share_shift: 0.1}");
        assert!(err(&wrong_kind).contains("`max_share_shift` is for categorical features"), "{}", err(&wrong_kind));
        let wrong_kind = SPEC.replace("[monthly, yearly]}", "[monthly, yearly], max_js_divergence: 0.1}");
        assert!(err(&wrong_kind).contains("`max_js_divergence` is for numeric features"), "{}", err(&wrong_kind));
        let out_of_range = SPEC.replace("max: 100}", "max: 100, max_js_divergence: 1.5}");
        assert!(err(&out_of_range).contains("`max_js_divergence` must be in [0, 1]"), "{}", err(&out_of_range));
    }

    #[test]
    fn checked_columns_may_have_an_open_domain_and_a_pattern() {
        let spec = PipelineSpec::from_yaml(&format!(
            "{SPEC}columns: [{{name: customer_id, type: categorical, regex: \"C[0-9]{{4}}\", unique: true}}]\n"
        ))
        .unwrap();
        assert!(spec.checked_column("customer_id").is_some() && spec.feature("customer_id").is_none());
        let re = full_match(spec.columns[0].regex.as_deref().unwrap()).unwrap();
        assert!(re.is_match("C0042") && !re.is_match("xC0042") && !re.is_match("C00421"));
        // The spec's hash is unchanged for specs that do not use the new keys.
        let plain = PipelineSpec::from_yaml(SPEC).unwrap();
        let json = String::from_utf8(plain.canonical_json()).unwrap();
        assert!(!json.contains("columns") && !json.contains("regex"), "{json}");
    }
}
