//! Measuring models on rows: the metrics of both models on the same rows, the holdout's slices,
//! and which holdout rows came from one dataset.

use mlops_proto as pb;
use mlops_shared::decision;
use mlops_shared::model::Manifest;
use mlops_shared::scoring;
use mlops_shared::spec::{BUSINESS_VALUE, PipelineSpec, Task, ValueMatrix};
use mlops_shared::table::{Column, Frame};

use crate::gate::{Scored, Slice};

/// The name a slice of missing values goes by.
pub const MISSING: &str = "(missing)";

/// How rows are measured: the task's metrics and, when the spec prices decisions, each model's
/// `business_value` at its own decision threshold (a model trained before the matrix decides at
/// 0.5), so that the gate compares what each model's decisions would be worth.
#[derive(Debug, Clone, Copy)]
pub struct Measures {
    pub task: Task,
    pub value: Option<ValueMatrix>,
    pub candidate_threshold: f64,
    pub production_threshold: f64,
}

impl Measures {
    pub fn new(spec: &PipelineSpec, candidate: &Manifest, production: Option<&Manifest>) -> Self {
        Self {
            task: spec.target.task,
            // A spec prices decisions only for a classifier (its check refuses the rest).
            value: spec.business.as_ref().map(|b| b.value),
            candidate_threshold: candidate.threshold(),
            production_threshold: production.map_or(decision::DEFAULT_THRESHOLD, Manifest::threshold),
        }
    }

    /// The candidate's and, when there is one, the production model's metrics on the same rows
    /// (`amounts`: each row's, with `business.amount`).
    pub fn score(
        &self,
        labels: &[f64],
        candidate: &[f64],
        production: Option<&[f64]>,
        amounts: Option<&[f64]>,
    ) -> Scored {
        let metrics = |scores: &[f64], threshold: f64| {
            let mut m = scoring::for_task(self.task, labels, scores);
            if let Some(value) = &self.value {
                m.insert(BUSINESS_VALUE.to_owned(), decision::mean_value(value, labels, scores, threshold, amounts));
            }
            m
        };
        Scored {
            rows: labels.len(),
            candidate: metrics(candidate, self.candidate_threshold),
            production: production.map(|p| metrics(p, self.production_threshold)),
        }
    }
}

/// The metrics of every slice of `rows`: one per value of each `evaluation.slices` feature (and
/// one for missing values when there are some), in the spec's order of features and categories.
pub fn slices(
    measures: &Measures,
    spec: &PipelineSpec,
    rows: &Frame,
    labels: &[f64],
    candidate: &[f64],
    production: Option<&[f64]>,
    amounts: Option<&[f64]>,
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
            let (production, amounts) = (production.map(pick), amounts.map(pick));
            out.push(Slice {
                feature: name.clone(),
                value,
                scored: measures.score(&pick(labels), &pick(candidate), production.as_deref(), amounts.as_deref()),
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

    /// Ten positives among a hundred rows; a miss costs 100, a false alarm 20. The production
    /// model ranks twenty negatives above every positive, the candidate ranks better overall
    /// (higher AUC) but three positives below most negatives: each model at the threshold that
    /// is best for it, the candidate's decisions are worth less, and the gate on `business_value`
    /// keeps it out though its AUC passes.
    #[test]
    fn a_candidate_with_a_better_auc_but_decisions_worth_less_is_not_promoted() {
        let matrix = ValueMatrix { tp: 100.0, fp: -20.0, fn_: -100.0, tn: 0.0 };
        let labels: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i < 10))).collect();
        let production: Vec<f64> = (0..100)
            .map(|i| {
                if i < 10 {
                    0.6
                } else if i < 30 {
                    0.7
                } else {
                    0.1
                }
            })
            .collect();
        let candidate: Vec<f64> = (0..100)
            .map(|i| match i {
                0..7 => 0.9,
                7..10 => 0.05,
                10..70 => 0.2,
                _ => 0.01,
            })
            .collect();
        let thresholds = |scores: &[f64]| decision::best(&matrix, &labels, scores, None).unwrap().threshold;
        let measures = Measures {
            task: Task::BinaryClassification,
            value: Some(matrix),
            candidate_threshold: thresholds(&candidate),
            production_threshold: thresholds(&production),
        };
        let holdout = measures.score(&labels, &candidate, Some(&production), None);
        let (c, p) = (&holdout.candidate, holdout.production.as_ref().unwrap());
        assert!(c["roc_auc"] > p["roc_auc"], "{c:?} {p:?}");
        assert_eq!((c[BUSINESS_VALUE], p[BUSINESS_VALUE]), (4.0, 6.0));
        let gate = |json: &str| serde_json::from_str::<mlops_shared::spec::GateSpec>(json).unwrap();
        let measured = crate::gate::Measured { holdout, ..Default::default() };
        let auc = gate(r#"{"metric": "roc_auc", "min": 0.7, "max_drop": 0.01}"#);
        assert!(crate::gate::judge(Task::BinaryClassification, std::slice::from_ref(&auc), &measured).0);
        let value = gate(r#"{"metric": "business_value", "max_drop": 0.5}"#);
        let (passed, checks) = crate::gate::judge(Task::BinaryClassification, &[auc, value], &measured);
        assert!(!passed);
        let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.detail.as_str()).collect();
        assert_eq!(failed, ["candidate 4.0000, production 6.0000 on the same 100 rows, drop 2.0000 (33.33 %)"]);
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
        let measures =
            Measures { task: spec.target.task, value: None, candidate_threshold: 0.5, production_threshold: 0.5 };
        let s = slices(&measures, &spec, &rows, &labels, &scores, None, None);
        let got: Vec<(&str, usize)> = s.iter().map(|s| (s.value.as_str(), s.scored.rows)).collect();
        assert_eq!(got, [("a", 3), ("b", 2), (MISSING, 1)]);
        // Slice a: labels 0,1,0 with scores 0.2,0.8,0.3 rank perfectly.
        assert_eq!(s[0].scored.candidate["roc_auc"], 1.0);
        assert!(s[0].scored.production.is_none());
        let s = slices(&measures, &spec, &rows, &labels, &scores, Some(&[0.5; 6]), None);
        assert_eq!(s[1].scored.production.as_ref().unwrap()["roc_auc"], 0.5);
    }
}
