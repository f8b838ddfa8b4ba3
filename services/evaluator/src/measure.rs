//! Measuring models on rows: the metrics of both models on the same rows, the holdout's slices,
//! and which holdout rows came from one dataset.

use mlops_proto as pb;
use mlops_shared::scoring;
use mlops_shared::spec::{PipelineSpec, Task};
use mlops_shared::table::{Column, Frame};

use crate::gate::{Scored, Slice};

/// The name a slice of missing values goes by.
pub const MISSING: &str = "(missing)";

/// The candidate's and, when there is one, the production model's metrics on the same rows.
pub fn score(task: Task, labels: &[f64], candidate: &[f64], production: Option<&[f64]>) -> Scored {
    Scored {
        rows: labels.len(),
        candidate: scoring::for_task(task, labels, candidate),
        production: production.map(|p| scoring::for_task(task, labels, p)),
    }
}

/// The metrics of every slice of `rows`: one per value of each `evaluation.slices` feature (and
/// one for missing values when there are some), in the spec's order of features and categories.
pub fn slices(
    spec: &PipelineSpec,
    rows: &Frame,
    labels: &[f64],
    candidate: &[f64],
    production: Option<&[f64]>,
) -> Vec<Slice> {
    let mut out = Vec::new();
    for name in &spec.evaluation.slices {
        let Some(at) = spec.features.iter().position(|f| &f.name == name) else { continue };
        let Some(Column::Categorical(values)) = rows.columns.get(at) else { continue };
        let mut names: Vec<String> = spec.features[at].categories.clone();
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        for (row, value) in values.iter().enumerate() {
            let value = value.as_deref().unwrap_or(MISSING);
            let k = match names.iter().position(|n| n == value) {
                Some(k) => k,
                None => {
                    names.push(value.to_owned());
                    groups.push(Vec::new());
                    names.len() - 1
                }
            };
            groups[k].push(row);
        }
        for (value, idx) in names.into_iter().zip(groups) {
            if idx.is_empty() {
                continue;
            }
            let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
            let production = production.map(pick);
            out.push(Slice {
                feature: name.clone(),
                value,
                scored: score(spec.target.task, &pick(labels), &pick(candidate), production.as_deref()),
            });
        }
    }
    out
}

/// Positions within the holdout (`holdout` lists frame rows) of the rows that came from dataset
/// `k`, when the frame concatenates datasets of `counts` rows each.
pub fn rows_of(holdout: &[usize], counts: &[usize], k: usize) -> Vec<usize> {
    let start: usize = counts[..k].iter().sum();
    let end = start + counts[k];
    holdout.iter().enumerate().filter(|(_, r)| (start..end).contains(*r)).map(|(pos, _)| pos).collect()
}

/// The rows of dataset `k` (numbered within it) that fell in the holdout.
pub fn dataset_rows_in_holdout(holdout: &[usize], counts: &[usize], k: usize) -> Vec<usize> {
    let start: usize = counts[..k].iter().sum();
    let end = start + counts[k];
    let mut rows: Vec<usize> = holdout.iter().filter(|r| (start..end).contains(*r)).map(|r| r - start).collect();
    rows.sort_unstable();
    rows
}

/// A slice as the events carry it (finite metrics only).
pub fn slice_proto(s: &Slice) -> pb::SliceMetrics {
    let finite =
        |m: &crate::gate::Metrics| m.iter().filter(|(_, v)| v.is_finite()).map(|(k, v)| (k.clone(), *v)).collect();
    pb::SliceMetrics {
        feature: s.feature.clone(),
        value: s.value.clone(),
        rows: s.scored.rows as u64,
        candidate: finite(&s.scored.candidate),
        production: s.scored.production.as_ref().map(finite).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_rows_of_one_dataset() {
        // Datasets of 3, 4 and 2 rows: rows 3..7 are the second one.
        let holdout = [8, 3, 0, 6, 5];
        assert_eq!(rows_of(&holdout, &[3, 4, 2], 1), vec![1, 3, 4]);
        assert_eq!(rows_of(&holdout, &[3, 4, 2], 2), vec![0]);
        assert_eq!(rows_of(&holdout, &[3, 4, 2], 0), vec![2]);
        assert_eq!(dataset_rows_in_holdout(&holdout, &[3, 4, 2], 1), vec![0, 2, 3]);
        assert_eq!(dataset_rows_in_holdout(&holdout, &[3, 4, 2], 2), vec![1]);
    }

    #[test]
    fn slices_follow_the_categories_and_keep_missing_values_apart() {
        let spec = PipelineSpec::from_yaml(
            "name: s\nfeatures:\n  - {name: x, type: numeric}\n  - {name: c, type: categorical, categories: [a, b, z]}\n\
             target: {name: y}\nevaluation: {slices: [c]}\n",
        )
        .unwrap();
        let cat = |v: Option<&str>| v.map(str::to_owned);
        let rows = Frame {
            columns: vec![
                Column::Numeric(vec![Some(1.0); 6]),
                Column::Categorical(vec![
                    cat(Some("b")),
                    cat(Some("a")),
                    None,
                    cat(Some("b")),
                    cat(Some("a")),
                    cat(Some("a")),
                ]),
            ],
            target: None,
            rows: 6,
        };
        let labels = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let scores = [0.9, 0.2, 0.6, 0.1, 0.8, 0.3];
        let s = slices(&spec, &rows, &labels, &scores, None);
        let got: Vec<(&str, usize)> = s.iter().map(|s| (s.value.as_str(), s.scored.rows)).collect();
        assert_eq!(got, [("a", 3), ("b", 2), (MISSING, 1)]);
        // Slice a: labels 0,1,0 with scores 0.2,0.8,0.3 rank perfectly.
        assert_eq!(s[0].scored.candidate["roc_auc"], 1.0);
        assert!(s[0].scored.production.is_none());
        let s = slices(&spec, &rows, &labels, &scores, Some(&[0.5; 6]));
        assert_eq!(s[1].scored.production.as_ref().unwrap()["roc_auc"], 0.5);
    }
}
