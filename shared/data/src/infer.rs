//! Schema inference: reads a dataset and proposes the `features` (and `target`) of a pipeline spec —
//! types, bounds, categories, nullability — for a person to review and paste. The declared schema
//! always wins: inference only writes a starting point.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::cell::{Cell, view};
use crate::read::{Batches, DataError};

/// Most distinct values a text column may have to be proposed as categorical.
pub const MAX_CATEGORIES: usize = 50;

/// What inference learned about one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Inferred {
    Numeric {
        min: f64,
        max: f64,
        nullable: bool,
    },
    Categorical {
        categories: Vec<String>,
        nullable: bool,
    },
    /// Text with too many distinct values to be a category (ids, free text).
    Text {
        distinct_over: usize,
    },
    /// Every cell was empty.
    Empty,
}

#[derive(Default)]
struct Acc {
    nulls: u64,
    numeric: bool,
    min: f64,
    max: f64,
    seen_value: bool,
    values: BTreeSet<String>,
    too_many: bool,
}

/// Infers every column of `batches`, in file order.
pub fn infer(batches: Batches) -> Result<Vec<(String, Inferred)>, DataError> {
    let names: Vec<String> = batches.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut acc: Vec<Acc> = names
        .iter()
        .map(|_| Acc { numeric: true, min: f64::INFINITY, max: f64::NEG_INFINITY, ..Acc::default() })
        .collect();
    for batch in batches {
        let batch = batch?;
        for (a, array) in acc.iter_mut().zip(batch.columns()) {
            let column = view(array);
            for row in 0..batch.num_rows() {
                let text = match column.get(row) {
                    Cell::Null => None,
                    Cell::Str(s) if s.trim().is_empty() => None,
                    Cell::Str(s) => {
                        let s = s.trim();
                        match s.parse::<f64>() {
                            Ok(v) if v.is_finite() => {
                                a.min = a.min.min(v);
                                a.max = a.max.max(v);
                            }
                            _ => a.numeric = false,
                        }
                        Some(s.to_owned())
                    }
                    Cell::Num(v) => {
                        a.min = a.min.min(v);
                        a.max = a.max.max(v);
                        Some(v.to_string())
                    }
                    Cell::Bool(b) => {
                        a.numeric = false;
                        Some(b.to_string())
                    }
                    Cell::Other(t) => {
                        a.numeric = false;
                        Some(t.to_owned())
                    }
                };
                match text {
                    None => a.nulls += 1,
                    Some(t) => {
                        a.seen_value = true;
                        if !a.too_many {
                            a.values.insert(t);
                            a.too_many = a.values.len() > MAX_CATEGORIES;
                        }
                    }
                }
            }
        }
    }
    Ok(names
        .into_iter()
        .zip(acc)
        .map(|(name, a)| {
            let nullable = a.nulls > 0;
            let inferred = if !a.seen_value {
                Inferred::Empty
            } else if a.numeric {
                Inferred::Numeric { min: a.min, max: a.max, nullable }
            } else if a.too_many {
                Inferred::Text { distinct_over: MAX_CATEGORIES }
            } else {
                Inferred::Categorical { categories: a.values.into_iter().collect(), nullable }
            };
            (name, inferred)
        })
        .collect())
}

/// Renders inferred columns as a spec fragment; `target` names the label column, if any.
pub fn spec_fragment(columns: &[(String, Inferred)], target: Option<&str>) -> String {
    let mut out =
        String::from("# Inferred from the data: review the bounds and categories before applying.\nfeatures:\n");
    let mut label = None;
    let mut checked = Vec::new();
    for (name, inferred) in columns {
        if Some(name.as_str()) == target {
            label = Some(inferred);
            continue;
        }
        let null = |n: bool| if n { ", nullable: true" } else { "" };
        let _ = match inferred {
            Inferred::Numeric { min, max, nullable } => {
                writeln!(out, "  - {{name: {name}, type: numeric, min: {min}, max: {max}{}}}", null(*nullable))
            }
            Inferred::Categorical { categories, nullable } => {
                let cats: Vec<String> = categories.iter().map(|c| yaml_scalar(c)).collect();
                writeln!(
                    out,
                    "  - {{name: {name}, type: categorical, categories: [{}]{}}}",
                    cats.join(", "),
                    null(*nullable)
                )
            }
            Inferred::Text { distinct_over } => {
                checked.push((name, *distinct_over));
                Ok(())
            }
            Inferred::Empty => writeln!(out, "  # {name}: every value is empty; not a feature"),
        };
    }
    if !checked.is_empty() {
        // Too many values to be a feature: checked (present, non-empty), never trained on.
        out.push_str("columns:\n");
        for (name, over) in checked {
            let _ = writeln!(
                out,
                "  - {{name: {name}, type: categorical}}  # over {over} distinct values: an id or free text"
            );
        }
    }
    if let Some(t) = target {
        // Two classes: the second in sort order is taken as positive (1 over 0, yes over no).
        let classes = match label {
            Some(Inferred::Categorical { categories: c, .. }) if c.len() == 2 => Some((c[0].clone(), c[1].clone())),
            Some(Inferred::Numeric { min, max, .. }) if *min == 0.0 && *max == 1.0 => Some(("0".into(), "1".into())),
            _ => None,
        };
        match classes {
            Some((neg, pos)) => {
                let _ = writeln!(
                    out,
                    "target: {{name: {t}, positive: {}, negative: {}}}",
                    yaml_scalar(&pos),
                    yaml_scalar(&neg)
                );
            }
            None => {
                let _ = writeln!(out, "target: {{name: {t}}}  # not two classes: set positive and negative by hand");
            }
        }
    }
    out
}

/// A YAML plain scalar when safe, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
        && !s.starts_with([' ', '-'])
        && !s.ends_with(' ')
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "null" | "on" | "off" | "~");
    if plain && s.parse::<f64>().is_err() { s.to_owned() } else { format!("{s:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Limits, Source, open};

    #[test]
    fn proposes_types_bounds_categories_and_the_target() {
        let csv = "id,age,plan,score,churned\nu1,30,basic,,1\nu2,41,pro,0.5,0\nu3,,basic,1.5,0\n";
        let batches = open(Source::Bytes(csv.as_bytes().to_vec().into()), "", &Limits::default()).unwrap();
        let cols = infer(batches).unwrap();
        assert_eq!(cols[1].1, Inferred::Numeric { min: 30.0, max: 41.0, nullable: true });
        assert_eq!(
            cols[2].1,
            Inferred::Categorical { categories: vec!["basic".into(), "pro".into()], nullable: false }
        );
        let text = spec_fragment(&cols, Some("churned"));
        assert!(text.contains("{name: age, type: numeric, min: 30, max: 41, nullable: true}"), "{text}");
        assert!(text.contains("{name: plan, type: categorical, categories: [basic, pro]}"), "{text}");
        assert!(text.contains("target: {name: churned, positive: \"1\", negative: \"0\"}"), "{text}");
        // The fragment, completed with a name, is a valid spec.
        let spec = mlops_shared::spec::PipelineSpec::from_yaml(&format!("name: x\n{text}")).unwrap();
        assert_eq!(spec.features.len(), 4);

        let many: String =
            std::iter::once("id,y\n".to_owned()).chain((0..60).map(|i| format!("user-{i},{}\n", i % 2))).collect();
        let batches = open(Source::Bytes(many.into_bytes().into()), "", &Limits::default()).unwrap();
        let cols = infer(batches).unwrap();
        assert_eq!(cols[0].1, Inferred::Text { distinct_over: MAX_CATEGORIES });
        // An id is proposed as a checked column, not a feature; the fragment still parses.
        let text = spec_fragment(&cols, Some("y"));
        assert!(text.contains("columns:\n  - {name: id, type: categorical}"), "{text}");
        let with_feature = text.replace("features:\n", "features:\n  - {name: f, type: numeric}\n");
        let spec = mlops_shared::spec::PipelineSpec::from_yaml(&format!("name: x\n{with_feature}")).unwrap();
        assert_eq!(spec.columns[0].name, "id");
    }
}
