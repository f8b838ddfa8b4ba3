//! Feature views (`kind: feature_view`): a stream of feature batches keyed by entity and stamped
//! with event time, which the feature store keeps offline (every batch, immutably) and online (the
//! newest value per entity), and which pipelines look features up in.

use serde::{Deserialize, Serialize};

use super::{FeatureKind, FeatureSpec, PiiPolicy, SpecError, bad, features};
use crate::ids::PipelineName;

/// The `kind` a feature view's spec declares.
pub const FEATURE_VIEW_KIND: &str = "feature_view";

/// A feature view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureViewSpec {
    /// Always [`FEATURE_VIEW_KIND`].
    pub kind: String,
    /// The view's name; its batches are uploaded and arrive under it, as a pipeline's do.
    pub name: PipelineName,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The entity key: one or more columns whose values, together, name an entity.
    pub entities: Vec<String>,
    /// What becomes of personal data in the entity key (customers keyed by e-mail address, say):
    /// `pii: allow` with a `purpose`, or `pii: forbid`. Without it, a key column holding personal
    /// data is refused like any undeclared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_pii: Option<EntityPii>,
    /// The column holding when each value became true (RFC 3339 text, a Parquet timestamp, or a
    /// number of Unix seconds).
    pub event_time: String,
    /// The column holding when each row was written at its source, for backfills that know it;
    /// otherwise a row counts as written when its batch arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingestion_time: Option<String>,
    /// How long a value stays valid after its event time (`90d`, `12h`, `30m`, `45s` or a number
    /// of seconds); none means forever.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "duration")]
    pub ttl: Option<u64>,
    /// How far in the future (against the clock when the batch is validated) an event time may be
    /// before the batch is refused: a clock that is wrong, or a unit mistaken (default 5 minutes).
    #[serde(default = "default_clock_skew", with = "duration_required")]
    pub max_clock_skew: u64,
    pub features: Vec<FeatureSpec>,
}

/// The personal-data policy of a view's entity key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityPii {
    pub pii: PiiPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

fn default_clock_skew() -> u64 {
    300
}

impl FeatureViewSpec {
    /// Parses and checks a YAML view.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        let view: Self = serde_norway::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        view.check()?;
        Ok(view)
    }

    /// Parses the canonical JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SpecError> {
        let view: Self = serde_json::from_slice(bytes).map_err(|e| SpecError::Parse(e.to_string()))?;
        view.check()?;
        Ok(view)
    }

    /// The canonical JSON form: same view, same bytes.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a view always serializes")
    }

    /// sha256 of the canonical form.
    pub fn hash(&self) -> String {
        crate::sha256_hex(&self.canonical_json())
    }

    /// The feature named `name`.
    pub fn feature(&self, name: &str) -> Option<&FeatureSpec> {
        self.features.iter().find(|f| f.name == name)
    }

    /// The columns a batch must have besides the features: the entity key, the event time and
    /// any ingestion time, in that order.
    pub fn key_columns(&self) -> impl Iterator<Item = &str> {
        self.entities.iter().map(String::as_str).chain([self.event_time.as_str()]).chain(self.ingestion_time.as_deref())
    }

    /// The TTL in milliseconds, `i64::MAX` for none.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl.map_or(i64::MAX, |s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// Checks what serde cannot: the kind, distinct names, and features that are checked as a
    /// pipeline's are.
    pub fn check(&self) -> Result<(), SpecError> {
        if self.kind != FEATURE_VIEW_KIND {
            return bad(format!("`kind` is {:?}; a feature view's is `{FEATURE_VIEW_KIND}`", self.kind));
        }
        if self.entities.is_empty() {
            return bad("`entities` must name at least one key column".into());
        }
        features::check(&self.features, &[])?;
        let mut seen = std::collections::BTreeSet::new();
        for name in self.key_columns() {
            if name.is_empty() {
                return bad("`entities`, `event_time` and `ingestion_time` name columns; one is empty".into());
            }
            if self.feature(name).is_some() || !seen.insert(name) {
                return bad(format!("column `{name}` is declared twice (a key or time column is not a feature)"));
            }
        }
        if let Some(f) = self.features.iter().find(|f| f.kind == FeatureKind::Categorical && f.categories.is_empty()) {
            return bad(format!("features.{}: a categorical feature needs `categories`", f.name));
        }
        match &self.entity_pii {
            Some(EntityPii { pii: PiiPolicy::Pseudonymise, .. }) => bad(
                "`entity_pii`: `pii: pseudonymise` would hash the keys serving looks entities up by; use `pii: allow` \
                 with a `purpose`, or `pii: forbid`"
                    .into(),
            ),
            Some(EntityPii { pii: PiiPolicy::Allow, purpose })
                if purpose.as_deref().is_none_or(|p| p.trim().is_empty()) =>
            {
                bad("`entity_pii`: `pii: allow` needs a `purpose` saying why the personal data is processed".into())
            }
            Some(EntityPii { pii: PiiPolicy::Forbid, purpose: Some(_) }) => {
                bad("`entity_pii`: `purpose` goes with `pii: allow`".into())
            }
            _ => Ok(()),
        }
    }
}

/// Parses a duration: a whole number of seconds, or one followed by `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 90d, 12h, 30m, 45s)"))?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("{text:?}: unit {other:?} is not s, m, h or d")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long a duration"))
}

/// A duration written as seconds or as text (`30d`), stored as seconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Secs(u64),
    Text(String),
}

impl Written {
    fn secs<E: serde::de::Error>(self) -> Result<u64, E> {
        match self {
            Self::Secs(s) => Ok(s),
            Self::Text(t) => parse_duration(&t).map_err(E::custom),
        }
    }
}

mod duration {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(secs) => s.serialize_u64(*secs),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<super::Written>::deserialize(d)?.map(super::Written::secs).transpose()
    }
}

mod duration_required {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        super::Written::deserialize(d)?.secs()
    }
}

/// The `kind` a YAML document declares, if any (`feature_view`; a pipeline declares none).
pub fn kind_of(text: &str) -> Option<String> {
    let value: serde_norway::Value = serde_norway::from_str(text).ok()?;
    value.get("kind")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const VIEW: &str = r#"
kind: feature_view
name: customer_stats
entities: [customer_id]
event_time: event_ts
ttl: 30d
features:
  - {name: spend_30d, type: numeric, min: 0}
  - {name: segment, type: categorical, categories: [retail, business]}
"#;

    #[test]
    fn a_view_parses_with_its_durations_in_seconds_and_round_trips() {
        let view = FeatureViewSpec::from_yaml(VIEW).unwrap();
        assert_eq!((view.ttl, view.max_clock_skew), (Some(30 * 86_400), 300));
        assert_eq!(view.key_columns().collect::<Vec<_>>(), ["customer_id", "event_ts"]);
        assert_eq!(FeatureViewSpec::from_json(&view.canonical_json()).unwrap(), view);
        assert_eq!(kind_of(VIEW).as_deref(), Some(FEATURE_VIEW_KIND));
        assert_eq!(kind_of("name: churn\n"), None);
        let forever = FeatureViewSpec::from_yaml(&VIEW.replace("ttl: 30d\n", "")).unwrap();
        assert_eq!(forever.ttl_ms(), i64::MAX);
    }

    #[test]
    fn a_bad_view_is_refused_naming_the_key() {
        let err = |yaml: &str| FeatureViewSpec::from_yaml(yaml).unwrap_err().to_string();
        assert!(err(&VIEW.replace("ttl: 30d", "ttl: 30w")).contains("unit \"w\""));
        assert!(err(&VIEW.replace("entities: [customer_id]", "entities: []")).contains("`entities`"));
        let keyed = |policy: &str| {
            VIEW.replace("entities: [customer_id]", &format!("entities: [customer_id]\nentity_pii: {policy}"))
        };
        assert!(err(&keyed("{pii: pseudonymise}")).contains("would hash the keys serving looks entities up by"));
        assert!(err(&keyed("{pii: allow}")).contains("`pii: allow` needs a `purpose`"));
        assert!(err(&keyed("{pii: forbid, purpose: x}")).contains("`purpose` goes with `pii: allow`"));
        let allowed = FeatureViewSpec::from_yaml(&keyed("{pii: allow, purpose: lookups by e-mail}")).unwrap();
        assert_eq!(allowed.entity_pii.map(|e| e.pii), Some(PiiPolicy::Allow));
        assert!(err(&VIEW.replace("event_ts", "customer_id")).contains("`customer_id` is declared twice"));
        assert!(err(&VIEW.replace("event_ts", "spend_30d")).contains("`spend_30d` is declared twice"));
        assert!(err(&VIEW.replace("kind: feature_view", "kind: pipeline")).contains("`kind`"));
        assert!(err(&VIEW.replace(", categories: [retail, business]", "")).contains("needs `categories`"));
        assert!(err(&VIEW.replace("min: 0", "min: 5, max: 1")).contains("greater than `max`"));
        assert!(err(&format!("{VIEW}colour: blue\n")).contains("colour"));
    }

    #[test]
    fn durations_read_in_every_unit() {
        assert_eq!(parse_duration("45"), Ok(45));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("d").is_err() && parse_duration("-3s").is_err());
    }
}
