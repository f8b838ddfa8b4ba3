//! The pipeline spec: what a team declares about its data, model, gates, deployment and monitoring.
//! Written in YAML (`mlops pipeline apply spec.yaml`), checked here section by section (a module
//! each), stored by the registry and published to the `pipelines` bucket as canonical JSON.

mod business;
mod code;
mod deployment;
mod features;
mod gates;
mod lookup;
mod monitoring;
mod store;
mod target;
mod training;
mod validation;
mod view;

use serde::{Deserialize, Serialize};

use crate::ids::PipelineName;

pub use business::{BUSINESS_VALUE, BusinessSpec, ValueMatrix};
pub use code::{CodeSpec, DEFAULT_TIMEOUT_SECS, EnvironmentSpec, MAX_MEMORY_MB, MAX_TIMEOUT_SECS, PythonEnvironment};
pub use deployment::{CanarySpec, DeploymentSpec, Strategy};
pub use features::{Encoding, FeatureKind, FeatureSpec, Impute, PiiPolicy, Severity, full_match};
pub use gates::{EvaluationSpec, GateRows, GateSpec, ServingLimits, StalenessSpec};
pub use lookup::{FeatureRef, LookupSpec, parse_ref};
pub use monitoring::{
    DriftMethod, DriftOverride, FEEDBACK_COLUMNS, FeedbackSpec, MAX_FEEDBACK_ROWS, MonitoringSpec, PerformanceSpec,
    ReferenceKind,
};
pub use store::SpecStore;
pub use target::{CLASSIFICATION_METRICS, Classes, REGRESSION_METRICS, TargetSpec, Task};
pub use training::{
    Accepted, Algorithm, MAX_CANDIDATES, SearchSpec, TrainingSpec, TrainingWindow, TriggerEvent, TriggerSpec,
    WindowSpec,
};
pub use validation::{DEFAULT_MIN_SHARE, Environment, Origin, PersonalDataSpec, ValidationSpec};
pub use view::{FEATURE_VIEW_KIND, FeatureViewSpec, kind_of, parse_duration};

/// Why a spec was refused. The message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("spec is not valid YAML for a pipeline: {0}")]
    Parse(String),
    #[error("spec: {0}")]
    Invalid(String),
}

/// A pipeline spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: PipelineName,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub features: Vec<FeatureSpec>,
    /// Columns the validator checks but the model never sees: ids, free text, timestamps kept
    /// as text. A categorical one may leave `categories` out (an open domain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<FeatureSpec>,
    pub target: TargetSpec,
    #[serde(default)]
    pub training: TrainingSpec,
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// The infrastructure gate: limits on what serving the candidate would cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_limits: Option<ServingLimits>,
    /// Slices and the staleness analysis.
    #[serde(default, skip_serializing_if = "is_default")]
    pub evaluation: EvaluationSpec,
    #[serde(default)]
    pub deployment: DeploymentSpec,
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    #[serde(default, skip_serializing_if = "is_default_validation")]
    pub validation: ValidationSpec,
    /// Features looked up in feature views by entity key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupSpec>,
    /// What each decision is worth: the trainer picks the threshold that maximises it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<BusinessSpec>,
    /// How long the prediction archive keeps the pipeline's predictions.
    #[serde(default, skip_serializing_if = "is_default")]
    pub audit: AuditSpec,
}

/// The prediction archive's rules for a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// Days an archived hour of predictions is kept before it is deleted (and the deletion
    /// recorded); a year by default.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Whether the rows a batch job scores (`batch.completed`) are archived too, beside the
    /// served predictions; on by default.
    #[serde(default = "default_true")]
    pub archive_batches: bool,
}

fn default_true() -> bool {
    true
}

fn default_retention_days() -> u32 {
    365
}

impl Default for AuditSpec {
    fn default() -> Self {
        Self { retention_days: default_retention_days(), archive_batches: true }
    }
}

fn is_default_validation(v: &ValidationSpec) -> bool {
    *v == ValidationSpec::default()
}

/// Whether `v` is its type's default (which the canonical form leaves out).
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The refusal of a spec that parses but is wrong, with `msg` naming the offending key.
fn bad<T>(msg: String) -> Result<T, SpecError> {
    Err(SpecError::Invalid(msg))
}

impl PipelineSpec {
    /// Parses and checks a YAML spec.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        let mut spec: Self = serde_norway::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        // The default algorithm is the task's: linear regression for a regression target.
        if spec.target.task == Task::Regression {
            let named = serde_norway::from_str::<serde_norway::Value>(text)
                .ok()
                .is_some_and(|v| v.get("training").and_then(|t| t.get("algorithm")).is_some());
            if !named {
                spec.training.algorithm = Algorithm::LinearRegression;
            }
        }
        spec.upgrade_keys()?;
        spec.check()?;
        spec.check_domains()?;
        Ok(spec)
    }

    /// Each row's amount in `frame` (read under this spec), when `business.amount` names one.
    pub fn amounts(&self, frame: &crate::table::Frame) -> Option<Vec<f64>> {
        self.business.as_ref()?.amounts(&self.features, frame)
    }

    /// The columns whose values ingest replaces by keyed hashes (`pii: pseudonymise`).
    pub fn pseudonymised(&self) -> Vec<&str> {
        self.columns.iter().filter(|c| c.pii == Some(PiiPolicy::Pseudonymise)).map(|c| c.name.as_str()).collect()
    }

    /// Refuses personal data in a declared domain: when a spec is applied (read from YAML), not
    /// when a stored one is read, so that a spec stored before the detectors knew a kind still
    /// loads.
    fn check_domains(&self) -> Result<(), SpecError> {
        features::check_domains(&self.features, &self.columns, &self.validation.personal_data.detector()?)
    }

    /// Parses the canonical JSON form stored in the key-value bucket.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SpecError> {
        let mut spec: Self = serde_json::from_slice(bytes).map_err(|e| SpecError::Parse(e.to_string()))?;
        spec.upgrade_keys()?;
        spec.check()?;
        Ok(spec)
    }

    /// Moves keys renamed since a spec may have been written to their current names: a feature's
    /// `max_drift` becomes `max_js_divergence` (numeric) or `max_share_shift` (categorical).
    fn upgrade_keys(&mut self) -> Result<(), SpecError> {
        for f in self.features.iter_mut().chain(self.columns.iter_mut()) {
            let Some(old) = f.max_drift.take() else { continue };
            let (key, slot) = match f.kind {
                FeatureKind::Numeric => ("max_js_divergence", &mut f.max_js_divergence),
                FeatureKind::Categorical => ("max_share_shift", &mut f.max_share_shift),
            };
            if slot.is_some() {
                return Err(SpecError::Invalid(format!(
                    "{}: `max_drift` is the old name of `{key}`; give only `{key}`",
                    f.name
                )));
            }
            *slot = Some(old);
        }
        Ok(())
    }

    /// The spec as YAML that [`PipelineSpec::from_yaml`] reads back to the same spec (comments and
    /// key order of the original are not kept).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a spec always serializes")
    }

    /// The canonical JSON form: same spec, same bytes.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a spec always serializes")
    }

    /// sha256 of the canonical form, recorded in every model's lineage.
    pub fn hash(&self) -> String {
        crate::sha256_hex(&self.canonical_json())
    }

    /// The features as models see them ([`FeatureSpec::model_input`]), in order.
    pub fn model_inputs(&self) -> Vec<FeatureSpec> {
        self.features.iter().map(FeatureSpec::model_input).collect()
    }

    /// sha256 of the parts of the spec that shape a trained model: the features as models see
    /// them, the target, and the training algorithm, hyper-parameters, search, holdout and seed.
    /// With the data, it fixes the artifact: a change anywhere else (data checks, gates,
    /// deployment, monitoring, triggers, the training window) makes no new model.
    pub fn model_hash(&self) -> String {
        #[derive(Serialize)]
        struct Shaping<'s> {
            features: Vec<FeatureSpec>,
            target: &'s TargetSpec,
            algorithm: Algorithm,
            params: &'s std::collections::BTreeMap<String, f64>,
            search: &'s Option<SearchSpec>,
            holdout: f64,
            seed: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            code: Option<CodeShape<'s>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            lookup: &'s Option<LookupSpec>,
            /// The threshold is chosen by it: a new matrix makes a new artifact.
            #[serde(skip_serializing_if = "Option::is_none")]
            business: &'s Option<BusinessSpec>,
        }
        /// What of a code step shapes its model: the bundle, how it is run and in what.
        #[derive(Serialize)]
        struct CodeShape<'s> {
            bundle: &'s Option<String>,
            command: &'s [String],
            environment: &'s Option<EnvironmentSpec>,
        }
        let t = &self.training;
        let shaping = Shaping {
            features: self.model_inputs(),
            target: &self.target,
            algorithm: t.algorithm,
            params: &t.params,
            search: &t.search,
            holdout: t.holdout,
            seed: t.seed,
            code: t.code.as_ref().map(|c| CodeShape {
                bundle: &c.bundle,
                command: &c.command,
                environment: &t.environment,
            }),
            lookup: &self.lookup,
            business: &self.business,
        };
        crate::sha256_hex(&serde_json::to_vec(&shaping).expect("a spec always serializes"))
    }

    /// sha256 of the parts of the spec the validator judges data by: the features and columns
    /// with their checks and drift limits, the target and the `validation` section. A dataset
    /// judged under another validation hash is judged again when it is uploaded again.
    pub fn validation_hash(&self) -> String {
        #[derive(Serialize)]
        struct Checks<'s> {
            features: &'s [FeatureSpec],
            columns: &'s [FeatureSpec],
            target: &'s TargetSpec,
            validation: &'s ValidationSpec,
        }
        let checks = Checks {
            features: &self.features,
            columns: &self.columns,
            target: &self.target,
            validation: &self.validation,
        };
        crate::sha256_hex(&serde_json::to_vec(&checks).expect("a spec always serializes"))
    }

    /// The feature named `name`.
    pub fn feature(&self, name: &str) -> Option<&FeatureSpec> {
        self.features.iter().find(|f| f.name == name)
    }

    /// The names of the numeric columns (features, checked columns, a regression target), which
    /// readers may decode as numbers.
    pub fn numeric_features(&self) -> Vec<&str> {
        let regression_target = (self.target.task == Task::Regression).then_some(self.target.name.as_str());
        self.features
            .iter()
            .chain(&self.columns)
            .filter(|f| f.kind == FeatureKind::Numeric)
            .map(|f| f.name.as_str())
            .chain(regression_target)
            .collect()
    }

    /// The checked column (feature or not) named `name`.
    pub fn checked_column(&self, name: &str) -> Option<&FeatureSpec> {
        self.features.iter().chain(&self.columns).find(|f| f.name == name)
    }

    /// Checks everything serde cannot: names, bounds, shares, known metrics and parameters.
    ///
    /// One section at a time, always in this order, so that a spec with several faults is always
    /// refused for the same one. What the target's task rules out in training and validation comes
    /// right after the target, before those sections' own checks.
    pub fn check(&self) -> Result<(), SpecError> {
        let task = self.target.task;
        let declared = features::check(&self.features, &self.columns)?;
        self.target.check(&declared)?;
        self.training.check_algorithm(task)?;
        self.validation.check_task(task)?;
        self.training.check(task)?;
        if let Some(business) = &self.business {
            business.check(task)?;
            business.check_amount(&self.features)?;
        }
        gates::check(&self.gates, task, &self.evaluation, self.business.as_ref())?;
        self.evaluation.check(&self.features, task)?;
        if let Some(limits) = &self.serving_limits {
            limits.check()?;
        }
        self.deployment.check()?;
        self.validation.check()?;
        self.monitoring.check(&self.features, task, self.business.as_ref())?;
        if !(1..=36_500).contains(&self.audit.retention_days) {
            return bad(format!("audit.retention_days: {} is not between 1 and 36500", self.audit.retention_days));
        }
        if let Some(lookup) = &self.lookup {
            lookup.check(&self.features, &self.columns)?;
        }
        let taken = |name: &str| FEEDBACK_COLUMNS.contains(&name);
        if self.monitoring.feedback.is_some()
            && let Some(name) = declared.iter().copied().chain([self.target.name.as_str()]).find(|n| taken(n))
        {
            return bad(format!(
                "`monitoring.feedback` adds a column `{name}` to feedback versions; rename the spec's `{name}`"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SPEC: &str = r#"
name: churn
features:
  - {name: tenure, type: numeric, min: 0, max: 100}
  - {name: charges, type: numeric, nullable: true}
  - {name: contract, type: categorical, categories: [monthly, yearly]}
target: {name: churned}
gates:
  - {metric: roc_auc, min: 0.7, max_drop: 0.01}
"#;

    #[test]
    fn parses_with_defaults_and_hashes_canonically() {
        let spec = PipelineSpec::from_yaml(SPEC).unwrap();
        assert_eq!(spec.training.seed, 42);
        assert_eq!(spec.target.positive, "1");
        assert_eq!(spec.monitoring.window, 500);
        // No `deployment` section still logs every prediction: monitoring needs them.
        assert_eq!((spec.deployment.log_sample, spec.deployment.strategy), (1.0, Strategy::Direct));
        let again = PipelineSpec::from_json(&spec.canonical_json()).unwrap();
        assert_eq!(spec, again);
        assert_eq!(spec.hash(), again.hash());
    }

    #[test]
    fn errors_name_the_offending_key() {
        let cases = [
            (SPEC.replace("min: 0, max: 100", "min: 5, max: 1"), "features.tenure"),
            (SPEC.replace("roc_auc", "f7"), "`f7` is not a binary_classification metric"),
            (SPEC.replace("name: churned", "name: tenure"), "also declared as a feature"),
            (SPEC.replace("target:", "targte:"), "targte"),
            (SPEC.replace("categories: [monthly, yearly]", ""), "needs `categories`"),
            (SPEC.replace("name: churn\n", "name: Churn!\n"), "pipeline name"),
            (SPEC.replace("max: 100}", "max: 100, mostly: 1.5}"), "features.tenure: `mostly`"),
            (format!("{SPEC}validation: {{min_rows: 10, max_rows: 5}}\n"), "validation.min_rows"),
            (format!("{SPEC}training: {{params: {{depth: 3}}}}\n"), "training.params.depth"),
            (format!("{SPEC}columns: [{{name: id, type: categorical, regex: \"C(\"}}]\n"), "columns.id: `regex`"),
            (
                format!("{SPEC}columns: [{{name: n, type: numeric, regex: x}}]\n"),
                "columns.n: `regex` is for categorical",
            ),
            (format!("{SPEC}columns: [{{name: tenure, type: numeric}}]\n"), "column `tenure` is declared twice"),
            (
                SPEC.replace("categories: [monthly, yearly]", "categories: [monthly, yearly], regex: \"m.*\""),
                "category \"yearly\" does not match `regex`",
            ),
            (
                format!("{SPEC}columns: [{{name: email, type: categorical, pii: allow}}]\n"),
                "columns.email: `pii: allow` needs a `purpose`",
            ),
            (
                format!("{SPEC}columns: [{{name: email, type: categorical, pii: forbid, purpose: x}}]\n"),
                "columns.email: `purpose` goes with `pii: allow`",
            ),
            (format!("{SPEC}columns: [{{name: email, type: categorical, pii: mask}}]\n"), "unknown variant `mask`"),
            (
                SPEC.replace("categories: [monthly, yearly]", "categories: [monthly, yearly], pii: pseudonymise"),
                "features.contract: `pii: pseudonymise` is for `columns`",
            ),
            (
                format!("{SPEC}columns: [{{name: email, type: categorical, categories: [a], pii: pseudonymise}}]\n"),
                "columns.email: a pseudonymised column's values become keyed hashes",
            ),
            (
                format!("{SPEC}columns: [{{name: n, type: numeric, pii: pseudonymize}}]\n"),
                "columns.n: `pii: pseudonymise` needs a categorical column",
            ),
            (
                format!("{SPEC}validation: {{personal_data: {{national_ids: {{fr_insee: \"[0-9\"}}}}}}\n"),
                "validation.personal_data.national_ids: national id `fr_insee`",
            ),
            (
                format!("{SPEC}validation: {{personal_data: {{national_ids: {{Bad-Name: x}}}}}}\n"),
                "name \"Bad-Name\" is not snake_case",
            ),
            (
                format!("{SPEC}validation: {{personal_data: {{min_share: 0}}}}\n"),
                "`validation.personal_data.min_share`",
            ),
            (
                format!("{SPEC}business: {{value: {{tp: 0, fp: 0, fn: 0, tn: 0}}}}\n"),
                "`business.value` cannot be maximised",
            ),
            (format!("{SPEC}business: {{value: {{tp: 5, fp: 1, fn: 5, tn: 1}}}}\n"), "no threshold changes the value"),
            (format!("{SPEC}business: {{value: {{tp: .inf, fp: 0, fn: 0, tn: 0}}}}\n"), "must be finite"),
            (format!("{SPEC}business: {{value: {{tp: 1, fp: 0, tn: 0}}}}\n"), "missing field `fn`"),
            (
                format!("{SPEC}business: {{value: {{tp: 1, fp: 0, fn: 0, tn: 0}}, amount: revenue}}\n"),
                "`business.amount` names `revenue`, which is not a feature",
            ),
            (
                format!("{SPEC}business: {{value: {{tp: 1, fp: 0, fn: 0, tn: 0}}, amount: contract}}\n"),
                "`business.amount`: `contract` is categorical",
            ),
            (SPEC.replace("roc_auc", "business_value"), "gates: `business_value` needs `business.value`"),
            (SPEC.replace("max: 100}", "max: 100, min_power: 1.5}"), "features.tenure: `min_power` must be in [0, 1]"),
            (
                format!("{SPEC}columns: [{{name: id, type: categorical, min_power: 0.1}}]\n"),
                "columns.id: `min_power` is for `features`",
            ),
            (
                format!("{SPEC}monitoring: {{performance: {{metric: business_value, min: 0}}}}\n"),
                "`monitoring.performance.metric`: `business_value` needs `business.value`",
            ),
            (
                format!(
                    "{}business: {{value: {{tp: 1, fp: 0, fn: 0, tn: 0}}}}\n",
                    SPEC.replace("target: {name: churned}", "target: {name: churned, task: regression}")
                ),
                "needs a binary_classification target",
            ),
        ];
        for (text, expected) in cases {
            let err = PipelineSpec::from_yaml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn a_value_matrix_allows_a_business_value_gate_and_reshapes_the_model() {
        let priced = format!("{SPEC}business: {{value: {{tp: 100, fp: -20, fn: -100, tn: 0}}}}\n");
        let gated = priced.replace("roc_auc, min: 0.7, max_drop: 0.01", "business_value, min: -5, max_drop: 2");
        let watched = format!("{gated}monitoring: {{performance: {{metric: business_value, min: 5, window: 50}}}}\n");
        let spec = PipelineSpec::from_yaml(&watched).unwrap();
        assert_eq!(spec.business.as_ref().unwrap().value.fn_, -100.0);
        assert_eq!(spec.monitoring.performance.as_ref().unwrap().metric, BUSINESS_VALUE);
        assert_eq!(spec.gates[0].metric, BUSINESS_VALUE);
        let plain = PipelineSpec::from_yaml(SPEC).unwrap();
        assert_ne!(PipelineSpec::from_yaml(&priced).unwrap().model_hash(), plain.model_hash());
        // Read back from its canonical JSON, the spec is the same.
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(PipelineSpec::from_json(json.as_bytes()).unwrap(), spec);
    }

    #[test]
    fn personal_data_in_a_declared_domain_is_refused_without_quoting_it_unless_allowed() {
        let with = |entry: &str| format!("{SPEC}columns: [{entry}]\n");
        let err =
            PipelineSpec::from_yaml(&with("{name: contact, type: categorical, categories: [none, ada@example.org]}"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("columns.contact: category 2 of `categories` is personal data (email)"), "{err}");
        assert!(!err.contains("ada@example.org"), "{err}");
        let ssn = "validation: {personal_data: {national_ids: {us_ssn: '\\d{3}-\\d{2}-\\d{4}'}}}\n";
        let err = PipelineSpec::from_yaml(&format!(
            "{}{ssn}",
            with("{name: id, type: categorical, categories: ['123-45-6789'], pii: forbid}")
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("is personal data (national_id:us_ssn)"), "{err}");
        let allowed = with(
            "{name: contact, type: categorical, categories: [ada@example.org], pii: allow, purpose: account recovery}",
        );
        let spec = PipelineSpec::from_yaml(&allowed).unwrap();
        assert_eq!(spec.columns[0].pii, Some(PiiPolicy::Allow));
        // A spec that says nothing of personal data hashes as before: no version is judged again.
        assert_eq!(PipelineSpec::from_yaml(SPEC).unwrap().validation.personal_data, PersonalDataSpec::default());
        assert!(
            !String::from_utf8_lossy(&PipelineSpec::from_yaml(SPEC).unwrap().canonical_json())
                .contains("personal_data")
        );
    }

    #[test]
    fn the_first_error_reported_follows_the_order_sections_are_checked_in() {
        // Every section broken at once, then mended one at a time in the order `check` reads them:
        // each time the error names the first fault left, and the fully mended spec is accepted.
        let faults = [
            "features.tenure: `mostly` must be in (0, 1]",
            "target `tenure` is also declared as a feature",
            "`training.algorithm` logistic_regression does not learn regression",
            "`validation.min_label_share` is for classification",
            "`training.window` needs `versions` or `days`",
            "gates: `roc_auc` is not a regression metric",
            "`evaluation.slices`: `tenure` is numeric",
            "`serving_limits` needs `max_p99_ms` or `max_artifact_bytes`",
            "`deployment.log_sample` must be in [0, 1]",
            "`validation.min_rows` (10) is greater than `validation.max_rows` (5)",
            "`monitoring.window` must be at least 10 predictions",
        ];
        for mended in 0..=faults.len() {
            let pick =
                |fault: usize, broken: &'static str, fine: &'static str| if fault >= mended { broken } else { fine };
            let yaml = format!(
                "name: churn\n\
                 features:\n  - {{name: tenure, type: numeric, mostly: {}}}\n  \
                 - {{name: contract, type: categorical, categories: [monthly, yearly]}}\n\
                 target: {{name: {}, task: regression}}\n\
                 training: {{algorithm: {}, window: {}}}\n\
                 validation: {{min_label_share: {}, min_rows: 10, max_rows: {}}}\n\
                 gates: [{{metric: {}, max: 10}}]\n\
                 evaluation: {{slices: [{}]}}\n\
                 serving_limits: {}\n\
                 deployment: {{log_sample: {}}}\n\
                 monitoring: {{window: {}}}\n",
                pick(0, "1.5", "1"),
                pick(1, "tenure", "churned"),
                pick(2, "logistic_regression", "linear_regression"),
                pick(4, "{}", "{versions: 1}"),
                pick(3, "0.1", "null"),
                pick(9, "5", "20"),
                pick(5, "roc_auc", "rmse"),
                pick(6, "tenure", "contract"),
                pick(7, "{}", "{max_artifact_bytes: 1000000}"),
                pick(8, "2", "1"),
                pick(10, "5", "500"),
            );
            match (PipelineSpec::from_yaml(&yaml), faults.get(mended)) {
                (Err(e), Some(expected)) => assert!(e.to_string().contains(expected), "expected {expected:?} in {e:?}"),
                (Ok(_), None) => {}
                (got, expected) => panic!("expected {expected:?}, got {got:?} for\n{yaml}"),
            }
        }
    }
}
