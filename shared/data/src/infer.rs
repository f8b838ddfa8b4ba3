//! Schema inference: reads a dataset and proposes a pipeline spec — the features' types, bounds,
//! categories and nullability, id-like columns to check but never train on, and the target's
//! classes as the file writes them — for a person to review. The proposal accepts the file it was
//! inferred from; the declared schema always wins: inference only writes a starting point.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use mlops_shared::pii::{BUILT_IN, Detector};
use mlops_shared::spec::DEFAULT_MIN_SHARE;

use crate::cell::{Cell, view};
use crate::read::{Batches, DataError};

/// Most distinct values a text column may have to be proposed as categorical.
pub const MAX_CATEGORIES: usize = 50;
/// Rows over which a column whose every value differs is taken for an id whatever its name (fewer
/// rows prove little: three distinct ages in three rows are not ids); integers must also lie
/// within ten times as many values as there are rows.
const MIN_ID_ROWS: u64 = 100;
/// Most values remembered to tell whether a column's values are all distinct; a longer column is
/// not proposed as an id (its memory stays bounded: 8 bytes a value).
const MAX_ID_ROWS: usize = 5_000_000;

/// What inference learned about one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Inferred {
    Numeric {
        min: f64,
        max: f64,
        nullable: bool,
        /// The distinct values as the file writes them, when there are at most `MAX_CATEGORIES`.
        written: Vec<String>,
    },
    Categorical {
        categories: Vec<String>,
        nullable: bool,
    },
    /// A different value in every row, none empty: integers or text that identify a row.
    Id {
        numeric: bool,
        rows: u64,
    },
    /// Text with too many distinct values to be a category (free text, or ids that repeat).
    Text {
        distinct_over: usize,
    },
    /// Personal data ([`mlops_shared::pii`]): one kind in at least the default share of the
    /// values. Proposed as a checked column with `pii: forbid`, never with its values.
    Personal {
        kind: &'static str,
        share: f64,
    },
    /// Every cell was empty.
    Empty,
}

/// What one column's cells have shown so far.
struct Acc {
    nulls: u64,
    rows: u64,
    numeric: bool,
    integral: bool,
    min: f64,
    max: f64,
    values: BTreeSet<String>,
    too_many: bool,
    /// Hashes of every value while all differ; `None` once two are equal (or too many to keep).
    distinct: Option<HashSet<u64>>,
    /// Values of each built-in kind of personal data.
    personal: [u64; BUILT_IN.len()],
}

impl Default for Acc {
    fn default() -> Self {
        Self {
            nulls: 0,
            rows: 0,
            numeric: true,
            integral: true,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            values: BTreeSet::new(),
            too_many: false,
            distinct: Some(HashSet::new()),
            personal: [0; BUILT_IN.len()],
        }
    }
}

impl Acc {
    fn add(&mut self, cell: Cell<'_>, detector: &Detector) {
        let (text, number) = match cell {
            Cell::Null => (None, None),
            Cell::Str(s) if s.trim().is_empty() => (None, None),
            Cell::Str(s) => (Some(s.trim().to_owned()), s.trim().parse::<f64>().ok().filter(|v| v.is_finite())),
            Cell::Num(v) => (Some(v.to_string()), Some(v)),
            Cell::Bool(b) => (Some(b.to_string()), None),
            Cell::Other(t) => (Some(t.to_owned()), None),
        };
        let Some(text) = text else {
            self.nulls += 1;
            return;
        };
        self.rows += 1;
        if let Some(kind) = detector.classify(&text) {
            self.personal[kind] += 1;
        }
        match number {
            Some(v) => {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                self.integral &= v.fract() == 0.0;
            }
            None => self.numeric = false,
        }
        self.note_distinct(&text, number);
        if !self.too_many {
            self.values.insert(text);
            self.too_many = self.values.len() > MAX_CATEGORIES;
        }
    }

    /// Remembers a value's hash while every value so far differed (numbers by value, so `7` and
    /// `7.0` are one).
    fn note_distinct(&mut self, text: &str, number: Option<f64>) {
        let Some(seen) = &mut self.distinct else { return };
        let mut h = DefaultHasher::new();
        match number {
            Some(v) => v.to_bits().hash(&mut h),
            None => text.hash(&mut h),
        }
        if !seen.insert(h.finish()) || seen.len() > MAX_ID_ROWS {
            self.distinct = None;
        }
    }

    fn finish(self, name: &str) -> Inferred {
        let nullable = self.nulls > 0;
        let all_distinct = self.distinct.is_some() && !nullable && self.rows > 1;
        // Integers named like anything else must also be dense, as ids counted out are (amounts
        // in cents or epoch seconds are all distinct too, and are not ids).
        let dense = !self.numeric || self.max - self.min < (10 * self.rows) as f64;
        let id_like = all_distinct
            && (!self.numeric || self.integral)
            && (looks_like_id(name) || (self.rows >= MIN_ID_ROWS && dense));
        let (kind, most) = self.personal.iter().enumerate().max_by_key(|(_, n)| **n).map_or((0, 0), |(k, n)| (k, *n));
        let share = most as f64 / self.rows.max(1) as f64;
        if self.rows == 0 {
            Inferred::Empty
        } else if most > 0 && share >= DEFAULT_MIN_SHARE {
            Inferred::Personal { kind: BUILT_IN[kind], share }
        } else if id_like {
            Inferred::Id { numeric: self.numeric, rows: self.rows }
        } else if self.numeric {
            let written = if self.too_many { Vec::new() } else { self.values.into_iter().collect() };
            Inferred::Numeric { min: self.min, max: self.max, nullable, written }
        } else if self.too_many {
            Inferred::Text { distinct_over: MAX_CATEGORIES }
        } else {
            Inferred::Categorical { categories: self.values.into_iter().collect(), nullable }
        }
    }
}

/// Whether a column's name says it identifies rows: `id`, `user_id`, `customerID`, `order-id`.
fn looks_like_id(name: &str) -> bool {
    let lower = name.trim().to_lowercase();
    lower == "id"
        || ["_id", "-id", " id"].iter().any(|s| lower.ends_with(s))
        || name.ends_with("ID")
        || name.ends_with("Id")
}

/// Infers every column of `batches`, in file order.
pub fn infer(batches: Batches) -> Result<Vec<(String, Inferred)>, DataError> {
    let names: Vec<String> = batches.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut acc: Vec<Acc> = names.iter().map(|_| Acc::default()).collect();
    let detector = Detector::default();
    for batch in batches {
        let batch = batch?;
        for (a, array) in acc.iter_mut().zip(batch.columns()) {
            let column = view(array);
            for row in 0..batch.num_rows() {
                a.add(column.get(row), &detector);
            }
        }
    }
    Ok(names
        .into_iter()
        .zip(acc)
        .map(|(name, a)| {
            let inferred = a.finish(&name);
            (name, inferred)
        })
        .collect())
}

/// Renders inferred columns as a pipeline spec; `target` names the label column, if any, and
/// `name` the pipeline (a placeholder to change when absent).
pub fn spec_fragment(columns: &[(String, Inferred)], target: Option<&str>, name: Option<&str>) -> String {
    let mut out = String::from("# Inferred from the data: review the bounds and categories before applying.\n");
    match name {
        Some(name) => {
            let _ = writeln!(out, "name: {}", yaml_scalar(name));
        }
        None => out.push_str("name: my-pipeline  # a name of your own: a-z, 0-9, '-' and '_', a letter first\n"),
    }
    out.push_str("features:\n");
    let mut label = None;
    let mut checked = Vec::new();
    for (column, inferred) in columns {
        if Some(column.as_str()) == target {
            label = Some(inferred);
            continue;
        }
        let null = |n: bool| if n { ", nullable: true" } else { "" };
        let key = yaml_scalar(column);
        let _ = match inferred {
            Inferred::Numeric { min, max, nullable, .. } => {
                writeln!(out, "  - {{name: {key}, type: numeric, min: {min}, max: {max}{}}}", null(*nullable))
            }
            Inferred::Categorical { categories, nullable } => {
                let cats: Vec<String> = categories.iter().map(|c| yaml_scalar(c)).collect();
                writeln!(
                    out,
                    "  - {{name: {key}, type: categorical, categories: [{}]{}}}",
                    cats.join(", "),
                    null(*nullable)
                )
            }
            Inferred::Id { .. } | Inferred::Text { .. } | Inferred::Personal { .. } => {
                checked.push((key, inferred));
                Ok(())
            }
            Inferred::Empty => writeln!(out, "  # {column}: every value is empty; not a feature"),
        };
    }
    write_checked(&mut out, &checked);
    if let Some(t) = target {
        write_target(&mut out, t, label);
    }
    out
}

/// The `columns:` section: columns checked on every upload but never trained on.
fn write_checked(out: &mut String, checked: &[(String, &Inferred)]) {
    if checked.is_empty() {
        return;
    }
    out.push_str("columns:\n");
    for (key, inferred) in checked {
        let _ = match inferred {
            Inferred::Id { numeric, rows } => writeln!(
                out,
                "  - {{name: {key}, type: {}, unique: true}}  # a different value in each of {rows} rows: an id, \
                 checked unique, not a feature (it would teach the model nothing that holds for a new row)",
                if *numeric { "numeric" } else { "categorical" }
            ),
            Inferred::Personal { kind, share } => writeln!(
                out,
                "  - {{name: {key}, type: categorical, pii: forbid}}  # personal data ({kind} in {:.0}% of the values): \
                 forbid rejects data holding it and deletes it; leave the column out of the data, or say why it \
                 is processed with `pii: allow, purpose: …`",
                share * 100.0
            ),
            _ => writeln!(
                out,
                "  - {{name: {key}, type: categorical}}  # over {MAX_CATEGORIES} distinct values: free text or ids, \
                 not a feature"
            ),
        };
    }
}

/// The `target:` line, with the classes as the file writes them when there are two.
fn write_target(out: &mut String, t: &str, label: Option<&Inferred>) {
    let key = yaml_scalar(t);
    match label.and_then(two_classes) {
        Some((negative, positive)) => {
            let _ = writeln!(
                out,
                "target: {{name: {key}, positive: {}, negative: {}}}  # the second value in order is taken as positive",
                yaml_quoted(&positive),
                yaml_quoted(&negative)
            );
            out.push_str(
                "monitoring:\n  # Delayed labels (labels.arrived) measure the serving model on its newest 200; a fall \
                 under the floor\n  # retrains. Raise the floor to what your model should keep.\n  performance: \
                 {metric: roc_auc, min: 0.6, window: 200}\n",
            );
        }
        None => {
            let _ = writeln!(out, "target: {{name: {key}}}  # not two classes: set positive and negative by hand");
        }
    }
}

/// A label column's two classes (negative, positive), spelled as in the file: numbers in value
/// order (`0.0` before `1.0`), text in sort order (`no` before `yes`, `False` before `True`).
fn two_classes(label: &Inferred) -> Option<(String, String)> {
    match label {
        Inferred::Categorical { categories: c, .. } if c.len() == 2 => Some((c[0].clone(), c[1].clone())),
        Inferred::Numeric { written, .. } => {
            let mut by_value: Vec<(f64, &String)> =
                written.iter().filter_map(|w| w.parse::<f64>().ok().map(|v| (v, w))).collect();
            by_value.sort_by(|a, b| a.0.total_cmp(&b.0));
            by_value.dedup_by(|a, b| a.0 == b.0);
            match by_value.as_slice() {
                [(_, negative), (_, positive)] => Some(((*negative).clone(), (*positive).clone())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A YAML plain scalar when safe, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
        && !s.starts_with([' ', '-'])
        && !s.ends_with(' ')
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "null" | "on" | "off" | "~");
    if plain && s.parse::<f64>().is_err() { s.to_owned() } else { yaml_quoted(s) }
}

/// A YAML double-quoted scalar: quotes and backslashes escaped, control characters as `\uXXXX`,
/// everything else (accents, `€`) as it is.
fn yaml_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Limits, Source, open};

    fn infer_csv(csv: &str) -> Vec<(String, Inferred)> {
        infer(open(Source::Bytes(csv.as_bytes().to_vec().into()), "", &Limits::default()).unwrap()).unwrap()
    }

    fn parse(text: &str) -> mlops_shared::spec::PipelineSpec {
        mlops_shared::spec::PipelineSpec::from_yaml(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn proposes_types_bounds_categories_and_the_target() {
        let cols = infer_csv("id,age,plan,score,churned\nu1,30,basic,,1\nu2,41,pro,0.5,0\nu3,,basic,1.5,0\n");
        assert_eq!(cols[0].1, Inferred::Id { numeric: false, rows: 3 });
        let written = vec!["30".to_owned(), "41".to_owned()];
        assert_eq!(cols[1].1, Inferred::Numeric { min: 30.0, max: 41.0, nullable: true, written });
        assert_eq!(
            cols[2].1,
            Inferred::Categorical { categories: vec!["basic".into(), "pro".into()], nullable: false }
        );
        let text = spec_fragment(&cols, Some("churned"), Some("x"));
        assert!(text.contains("{name: age, type: numeric, min: 30, max: 41, nullable: true}"), "{text}");
        assert!(text.contains("{name: plan, type: categorical, categories: [basic, pro]}"), "{text}");
        assert!(text.contains("target: {name: churned, positive: \"1\", negative: \"0\"}"), "{text}");
        assert!(text.contains("columns:\n  - {name: id, type: categorical, unique: true}"), "{text}");
        let spec = parse(&text);
        assert_eq!((spec.name.as_str(), spec.features.len(), spec.columns.len()), ("x", 3, 1));
        assert_eq!(spec.monitoring.performance.map(|p| p.metric), Some("roc_auc".to_owned()));
    }

    #[test]
    fn labels_keep_their_spelling_and_booleans_and_symbols_are_quoted() {
        let mut csv = String::from("id,paid,income,default\n");
        for i in 0..120 {
            let income = ["40K - 60K €", "< 40K €", "a \"quoted\" band"][i % 3];
            let _ = writeln!(
                csv,
                "{},{},\"{}\",{}",
                1000 + i,
                ["True", "False"][i % 2],
                income.replace('"', "\"\""),
                ["1.0", "0.0"][i % 2]
            );
        }
        let cols = infer_csv(&csv);
        assert_eq!(cols[0].1, Inferred::Id { numeric: true, rows: 120 });
        let text = spec_fragment(&cols, Some("default"), Some("credit"));
        assert!(text.contains("target: {name: default, positive: \"1.0\", negative: \"0.0\"}"), "{text}");
        assert!(text.contains("{name: id, type: numeric, unique: true}"), "{text}");
        let spec = parse(&text);
        assert_eq!(spec.columns[0].name, "id");
        assert!(spec.columns[0].unique);
        let paid = spec.feature("paid").unwrap();
        assert_eq!(paid.categories, ["False", "True"]);
        let income = spec.feature("income").unwrap();
        assert!(income.categories.contains(&"40K - 60K €".to_owned()), "{income:?}");
        assert!(income.categories.contains(&"a \"quoted\" band".to_owned()), "{income:?}");
        assert_eq!(spec.target.read_label("1"), Some(1.0));
    }

    #[test]
    fn personal_data_is_proposed_as_forbidden_and_never_written_out() {
        let mut csv = String::from("email,card,plan,y\n");
        for i in 0..40 {
            let _ = writeln!(csv, "user{i}@example.org,4111111111111111,{},{}", ["basic", "pro"][i % 2], i % 2);
        }
        let cols = infer_csv(&csv);
        assert_eq!(cols[0].1, Inferred::Personal { kind: "email", share: 1.0 });
        assert_eq!(cols[1].1, Inferred::Personal { kind: "payment_card", share: 1.0 });
        let text = spec_fragment(&cols, Some("y"), Some("x"));
        assert!(
            text.contains("{name: email, type: categorical, pii: forbid}  # personal data (email in 100%"),
            "{text}"
        );
        assert!(!text.contains("example.org") && !text.contains("4111"), "{text}");
        let spec = parse(&text);
        assert_eq!(
            spec.columns.iter().map(|c| c.pii).collect::<Vec<_>>(),
            [Some(mlops_shared::spec::PiiPolicy::Forbid); 2]
        );
    }

    #[test]
    fn a_few_distinct_values_are_not_an_id_unless_named_so_and_repeats_never_are() {
        // Three distinct integers in three rows prove little; a name ending in `_id` does.
        let cols = infer_csv("age,user_id,y\n30,7,1\n41,8,0\n52,9,0\n");
        assert!(matches!(cols[0].1, Inferred::Numeric { .. }), "{:?}", cols[0].1);
        assert_eq!(cols[1].1, Inferred::Id { numeric: true, rows: 3 });
        // All-distinct amounts spread wide are not ids, whatever the rows.
        let cents: String = std::iter::once("amount,y\n".to_owned())
            .chain((0..150).map(|i| format!("{},{}\n", i * 997, i % 2)))
            .collect();
        assert!(matches!(infer_csv(&cents)[0].1, Inferred::Numeric { .. }));
        // A repeated value (7 and 7.0 are one), a gap, or a fraction: not an id.
        let cols = infer_csv("id,key,ratio\n7,a,0.5\n7.0,,1.5\n8,b,2.5\n");
        assert!(matches!(cols[0].1, Inferred::Numeric { .. }), "{:?}", cols[0].1);
        assert!(matches!(cols[1].1, Inferred::Categorical { nullable: true, .. }), "{:?}", cols[1].1);
        let many: String = std::iter::once("ref,y\n".to_owned())
            .chain((0..60).map(|i| format!("user-{},{}\n", i % 55, i % 2)))
            .collect();
        let cols = infer_csv(&many);
        assert_eq!(cols[0].1, Inferred::Text { distinct_over: MAX_CATEGORIES });
        let text = spec_fragment(&cols, Some("y"), None);
        assert!(text.contains("columns:\n  - {name: ref, type: categorical}"), "{text}");
    }
}
