//! `mlops models card`: a model card from the registry alone — what the model is for, its
//! metrics (holdout, newest data, slices), the gate decision and who overrode it, its lineage, and
//! a summary of the data it trained on. One document, rendered as Markdown or HTML.

use std::fmt::Write as _;

use mlops_proto as pb;
use mlops_shared::spec::{BUSINESS_VALUE, PipelineSpec};

/// What a card is made from.
pub struct CardInput {
    pub version: pb::ModelVersion,
    /// The spec the model was trained with (by its lineage's hash).
    pub spec: PipelineSpec,
    /// The datasets of its lineage, from the catalog, oldest first.
    pub datasets: Vec<pb::Dataset>,
    /// The newest validated dataset it was judged on, from the catalog, when it was.
    pub newest: Option<pb::Dataset>,
}

/// A block of a section.
enum Block {
    Text(String),
    /// Label and value pairs.
    Facts(Vec<(String, String)>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A chart: drawn as SVG in HTML, given as `fallback`'s table in Markdown.
    Chart {
        svg: String,
        fallback: Box<Block>,
    },
}

struct Section {
    heading: String,
    blocks: Vec<Block>,
}

/// The card as a document, before rendering.
pub struct Card {
    title: String,
    sections: Vec<Section>,
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn num(v: Option<&f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.4}"))
}

fn strings<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.into_iter().map(str::to_owned).collect()
}

impl Card {
    /// Lays the card out.
    pub fn new(input: &CardInput) -> Self {
        let v = &input.version;
        let sections = [
            Some(details(input)),
            Some(metrics(input)),
            business(input),
            importance(input),
            slices(input),
            Some(gate_decision(v)),
            Some(lineage(input)),
            Some(training_data(input)),
        ];
        Self {
            title: format!("Model card: {} v{}", v.pipeline, v.version),
            sections: sections.into_iter().flatten().collect(),
        }
    }

    /// The card as Markdown.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = format!("# {}\n", self.title);
        for s in &self.sections {
            let _ = write!(out, "\n## {}\n", s.heading);
            for b in &s.blocks {
                let b = match b {
                    Block::Chart { fallback, .. } => fallback,
                    b => b,
                };
                match b {
                    Block::Chart { .. } => {}
                    Block::Text(t) => {
                        let _ = write!(out, "\n{t}\n");
                    }
                    Block::Facts(facts) => {
                        out.push('\n');
                        for (k, v) in facts {
                            let _ = writeln!(out, "- **{k}:** {v}");
                        }
                    }
                    Block::Table { header, rows } => {
                        let _ =
                            write!(out, "\n| {} |\n|", header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "));
                        out.push_str(&"---|".repeat(header.len()));
                        out.push('\n');
                        for r in rows {
                            let _ = writeln!(out, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
                        }
                    }
                }
            }
        }
        out
    }

    /// The card as one self-contained HTML page.
    pub fn html(&self) -> String {
        let mut out = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
             body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
             table{{border-collapse:collapse;margin:.5rem 0}}th,td{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}\
             th{{background:#f3f3f3}}td.FAIL{{color:#b00;font-weight:bold}}</style></head><body>\n<h1>{t}</h1>\n",
            t = escape(&self.title)
        );
        for s in &self.sections {
            let _ = writeln!(out, "<h2>{}</h2>", escape(&s.heading));
            for b in &s.blocks {
                match b {
                    Block::Chart { svg, .. } => out.push_str(svg),
                    Block::Text(t) => {
                        let _ = writeln!(out, "<p>{}</p>", bold(&escape(t)));
                    }
                    Block::Facts(facts) => {
                        out.push_str("<ul>\n");
                        for (k, v) in facts {
                            let _ = writeln!(out, "<li><b>{}:</b> {}</li>", escape(k), escape(v));
                        }
                        out.push_str("</ul>\n");
                    }
                    Block::Table { header, rows } => {
                        out.push_str("<table><tr>");
                        for h in header {
                            let _ = write!(out, "<th>{}</th>", escape(h));
                        }
                        out.push_str("</tr>\n");
                        for r in rows {
                            out.push_str("<tr>");
                            for c in r {
                                let _ = write!(
                                    out,
                                    "<td class=\"{}\">{}</td>",
                                    if c == "FAIL" { "FAIL" } else { "" },
                                    escape(c)
                                );
                            }
                            out.push_str("</tr>\n");
                        }
                        out.push_str("</table>\n");
                    }
                }
            }
        }
        out.push_str("</body></html>\n");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `**x**` as `<b>x</b>` (the Markdown emphasis the texts use).
fn bold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s.split("**").enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<b>{part}</b>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// What the model is, which version, and what the team said of it.
fn details(input: &CardInput) -> Section {
    let (v, spec) = (&input.version, &input.spec);
    let task = spec.target.task;
    let mut facts = vec![
        ("Pipeline".to_owned(), v.pipeline.clone()),
        ("Version".to_owned(), v.version.to_string()),
        ("Task".to_owned(), format!("{} of `{}`", task.as_str(), spec.target.name)),
        ("Algorithm".to_owned(), v.algorithm.clone()),
        ("Created".to_owned(), time(v.created_unix_ms)),
        ("Aliases".to_owned(), if v.aliases.is_empty() { "none".into() } else { v.aliases.join(", ") }),
        ("Artifact".to_owned(), format!("sha256 {} ({} bytes)", v.artifact_sha256, v.artifact_size)),
    ];
    if v.promoted_unix_ms > 0 {
        facts.push(("Last promoted".into(), time(v.promoted_unix_ms)));
    }
    let mut tags: Vec<String> = v.tags.iter().map(|(k, val)| format!("{k}={val}")).collect();
    tags.sort();
    if !tags.is_empty() {
        facts.push(("Tags".into(), tags.join(", ")));
    }
    let mut blocks = Vec::new();
    for text in [&spec.description, &v.description] {
        if !text.is_empty() {
            blocks.push(Block::Text(text.clone()));
        }
    }
    blocks.push(Block::Facts(facts));
    Section { heading: "Model details".into(), blocks }
}

/// The candidate on the holdout, the production model of the day on the same rows, and the
/// candidate on the newest validated data.
fn metrics(input: &CardInput) -> Section {
    let (v, spec) = (&input.version, &input.spec);
    let task = spec.target.task;
    let holdout = v.holdout_metrics.clone().unwrap_or_default();
    let production = v.production_metrics.clone();
    let newest = v.newest_metrics.clone();
    let mut header = strings(["Metric", "Holdout"]);
    if production.is_some() {
        header.push(format!("Production v{} (same rows)", v.compared_with_version));
    }
    if newest.is_some() {
        header.push("Newest data".into());
    }
    let rows = task
        .metrics()
        .iter()
        .map(|(m, higher)| {
            let mut row = vec![format!("{m} ({})", if *higher { "higher is better" } else { "lower is better" })];
            row.push(num(holdout.values.get(*m)));
            if let Some(p) = &production {
                row.push(num(p.values.get(*m)));
            }
            if let Some(n) = &newest {
                row.push(num(n.values.get(*m)));
            }
            row
        })
        .collect();
    let mut blocks =
        vec![Block::Text(format!("Holdout: {} rows (a seeded split of the training data).", holdout.rows))];
    if let Some(n) = &newest {
        let feedback = input.newest.as_ref().and_then(|d| d.feedback.as_ref());
        blocks.push(Block::Text(match feedback {
            Some(f) => format!(
                "Newest data: {} rows of dataset {} that the model did not train on — {}, labelled since. The \
                 candidate was judged beside production on the world as it is now.",
                n.rows,
                v.newest_dataset_id,
                crate::tables::feedback_origin(f)
            ),
            None => format!(
                "Newest data: {} rows of dataset {} that the model did not train on.",
                n.rows, v.newest_dataset_id
            ),
        }));
    }
    blocks.push(Block::Table { header, rows });
    Section { heading: "Metrics".into(), blocks }
}

/// What the model's decisions are worth, when the spec prices them: the threshold the trainer
/// chose, the mean value of a decision there beside production's on the same rows, and the value
/// over every threshold.
fn business(input: &CardInput) -> Option<Section> {
    let (v, b) = (&input.version, input.version.business.as_ref()?);
    let value = |m: &Option<pb::Metrics>| m.as_ref().and_then(|m| m.values.get(BUSINESS_VALUE)).copied();
    let t = &input.spec.target;
    let mut facts = Vec::new();
    if let Some(priced) = &input.spec.business {
        let m = &priced.value;
        let per = priced.amount.as_ref().map(|a| format!(", each times the row's `{a}`")).unwrap_or_default();
        facts.push((
            "Value of a decision".to_owned(),
            format!("tp {}, fp {}, fn {}, tn {}{per}", m.tp, m.fp, m.fn_, m.tn),
        ));
    }
    facts.push((
        "Decision threshold".to_owned(),
        format!("{:.4}: a score at or above it is labelled `{}`, below it `{}`", b.threshold, t.positive, t.negative),
    ));
    facts.push(("Mean value per decision, holdout".to_owned(), format!("{:.4}", b.value)));
    if let Some(p) = value(&v.production_metrics) {
        facts.push((format!("Production v{} on the same rows", v.compared_with_version), format!("{p:.4}")));
    }
    if let Some(n) = value(&v.newest_metrics) {
        facts.push(("Newest data".to_owned(), format!("{n:.4}")));
    }
    let steps = mlops_shared::decision::STEPS;
    let every_tenth = b.curve.iter().enumerate().filter(|(k, _)| k % (steps / 10) == 0);
    let rows = every_tenth.map(|(k, v)| vec![format!("{:.1}", k as f64 / steps as f64), format!("{v:.4}")]).collect();
    let fallback = Block::Table { header: strings(["Threshold", "Mean value per decision"]), rows };
    let blocks = vec![
        Block::Facts(facts),
        Block::Text("The mean value of a decision on the holdout at each threshold:".into()),
        Block::Chart { svg: value_chart(&b.curve, b.threshold), fallback: Box::new(fallback) },
    ];
    Some(Section { heading: "Business value".into(), blocks })
}

/// How much each feature matters to the model (permutation importance on the holdout) beside
/// production, strongest first, and the evaluator's warnings.
fn importance(input: &CardInput) -> Option<Section> {
    let v = &input.version;
    if v.importance.is_empty() {
        return None;
    }
    let metric = input.spec.target.task.default_metric();
    let mut order: Vec<&pb::FeatureImportance> = v.importance.iter().collect();
    order.sort_by(|a, b| b.candidate.total_cmp(&a.candidate));
    let mut header = strings(["Feature", "This model"]);
    let production = v.importance.iter().any(|i| i.production.is_some());
    if production {
        header.push(format!("Production v{}", v.compared_with_version));
    }
    let rows = order
        .iter()
        .map(|i| {
            let mut row = vec![i.feature.clone(), format!("{:.4}", i.candidate)];
            if production {
                row.push(i.production.map_or_else(|| "–".to_owned(), |p| format!("{p:.4}")));
            }
            row
        })
        .collect();
    let mut blocks = vec![Block::Text(format!(
        "How much `{metric}` on the holdout worsens when a feature's values are shuffled among the rows: the more, \
         the more the model relies on the feature."
    ))];
    blocks.push(Block::Table { header, rows });
    blocks.extend(v.evaluation_warnings.iter().map(|w| Block::Text(format!("**Warning:** {w}"))));
    Some(Section { heading: "Feature importance".into(), blocks })
}

/// The value curve (`curve[k]` at threshold `k / (len - 1)`) as an SVG line chart, the chosen
/// threshold marked.
fn value_chart(curve: &[f64], chosen: f64) -> String {
    const W: f64 = 480.0;
    const H: f64 = 240.0;
    const PAD: f64 = 48.0;
    let finite = || curve.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = (finite().fold(0.0_f64, f64::min), finite().fold(0.0_f64, f64::max));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let steps = curve.len().saturating_sub(1).max(1) as f64;
    let x = |t: f64| PAD + t.clamp(0.0, 1.0) * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD + (lo - v) / span * (H - 2.0 * PAD);
    let points: Vec<String> = curve
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, &v)| format!("{:.1},{:.1}", x(k as f64 / steps), y(v)))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         role=\"img\" aria-label=\"mean value per decision by threshold\" font-size=\"11\">\n"
    );
    let (left, right, top, bottom) = (x(0.0), x(1.0), y(hi), y(lo));
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#ccc\"/>",
        right - left,
        bottom - top
    );
    if lo < 0.0 && hi > 0.0 {
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{right}\" y2=\"{0:.1}\" stroke=\"#999\" stroke-dasharray=\"2 2\"/>",
            y(0.0)
        );
    }
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"{}\"/>",
        points.join(" ")
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{0:.1}\" y1=\"{top:.1}\" x2=\"{0:.1}\" y2=\"{bottom:.1}\" stroke=\"#b00\"/>",
        x(chosen)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#b00\">threshold {chosen:.3}</text>",
        x(chosen) + 4.0,
        top + 12.0
    );
    for (t, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let _ =
            writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{t:.1}</text>", x(t), bottom + 14.0);
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">decision threshold</text>",
        x(0.5),
        H - 8.0
    );
    for v in [lo, hi] {
        let _ =
            writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>", left - 4.0, y(v) + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The holdout's metrics per slice, when the spec names slices.
fn slices(input: &CardInput) -> Option<Section> {
    let (v, spec) = (&input.version, &input.spec);
    let task = spec.target.task;
    if v.slices.is_empty() {
        return None;
    }
    let shown: Vec<&str> = spec.gates.iter().map(|g| g.metric.as_str()).chain([task.default_metric()]).collect();
    let mut shown: Vec<&str> = shown.into_iter().fold(Vec::new(), |mut acc, m| {
        if !acc.contains(&m) {
            acc.push(m);
        }
        acc
    });
    shown.truncate(3);
    let mut header = strings(["Feature", "Value", "Rows"]);
    for m in &shown {
        header.push((*m).to_owned());
        header.push(format!("{m} (production)"));
    }
    let rows = v
        .slices
        .iter()
        .map(|s| {
            let mut row = vec![s.feature.clone(), s.value.clone(), s.rows.to_string()];
            for m in &shown {
                row.push(num(s.candidate.get(*m)));
                row.push(num(s.production.get(*m)));
            }
            row
        })
        .collect();
    let min = spec.evaluation.min_slice_rows;
    Some(Section {
        heading: "Slices".into(),
        blocks: vec![
            Block::Text(format!("Holdout metrics per value; slices under {min} rows are reported but not gated.")),
            Block::Table { header, rows },
        ],
    })
}

/// The gate verdict, every check's numbers, and an operator's decision.
fn gate_decision(v: &pb::ModelVersion) -> Section {
    let verdict = match v.gate.as_str() {
        "" => "not judged yet".to_owned(),
        g => g.to_owned(),
    };
    let mut blocks = vec![Block::Text(format!("Gate verdict: **{verdict}**."))];
    if let Some(d) = &v.decision {
        blocks.push(Block::Text(format!(
            "Operator decision: **{}** by {} on {}: {}",
            d.action,
            d.by,
            time(d.time_unix_ms),
            d.reason
        )));
    }
    if !v.gate_checks.is_empty() {
        let rows = v
            .gate_checks
            .iter()
            .map(|c| vec![c.name.clone(), if c.passed { "pass" } else { "FAIL" }.into(), c.detail.clone()])
            .collect();
        blocks.push(Block::Table { header: strings(["Check", "Result", "Numbers"]), rows });
    }
    Section { heading: "Gate decision".into(), blocks }
}

/// What made the model: the run, the spec, the seed, the code and the datasets.
fn lineage(input: &CardInput) -> Section {
    let v = &input.version;
    let lineage = v.lineage.clone().unwrap_or_default();
    let mut facts = vec![
        ("Reason".to_owned(), mlops_shared::runs::reason_name(lineage.reason)),
        ("Job".to_owned(), format!("{} (trainer {})", lineage.job_id, lineage.trainer_id)),
        ("Spec".to_owned(), lineage.spec_hash.clone()),
        ("Seed".to_owned(), lineage.seed.to_string()),
        ("Code version".to_owned(), lineage.code_version.clone()),
        ("Rebuild".to_owned(), format!("mlops reproduce {}@{}", v.pipeline, v.version)),
    ];
    if !lineage.spec_commit.is_empty() {
        facts.push(("Spec commit".to_owned(), lineage.spec_commit.clone()));
    }
    if !lineage.code_commit.is_empty() {
        facts.push(("Code commit".to_owned(), lineage.code_commit.clone()));
    }
    if !lineage.environment.is_empty() {
        facts.push(("Environment".to_owned(), lineage.environment.lines().collect::<Vec<_>>().join(", ")));
    }
    for (name, value) in &lineage.program_metrics {
        facts.push((format!("Program's {name}"), format!("{value:.4}")));
    }
    let rows = lineage
        .dataset_ids
        .iter()
        .map(|id| match input.datasets.iter().find(|d| &d.dataset_id == id) {
            Some(d) => {
                vec![id.clone(), d.rows.to_string(), time(d.arrived_unix_ms), d.origin.clone(), d.source.clone()]
            }
            None => vec![id.clone(), "–".into(), "–".into(), "–".into(), "not in the catalog".into()],
        })
        .collect();
    Section {
        heading: "Lineage".into(),
        blocks: vec![
            Block::Facts(facts),
            Block::Table { header: strings(["Dataset (sha256)", "Rows", "Arrived", "Origin", "Source"]), rows },
        ],
    }
}

/// The data it trained on: the newest training dataset's profile, one line per column.
fn training_data(input: &CardInput) -> Section {
    let (spec, lineage) = (&input.spec, input.version.lineage.clone().unwrap_or_default());
    let newest_profile =
        input.datasets.iter().rev().find_map(|d| d.profile.as_ref().map(|p| (d.dataset_id.clone(), p.clone())));
    let total: u64 = input.datasets.iter().map(|d| d.rows).sum();
    let mut blocks = vec![Block::Text(format!(
        "{} dataset(s), {total} rows in all, {} features.",
        lineage.dataset_ids.len(),
        spec.features.len()
    ))];
    if let Some((id, profile)) = newest_profile {
        blocks.push(Block::Text(format!(
            "Profile of the newest one, {} ({} rows):",
            &id[..12.min(id.len())],
            profile.rows
        )));
        let rows = profile
            .columns
            .iter()
            .map(|c| {
                let missing = if c.count + c.nulls == 0 { 0.0 } else { c.nulls as f64 / (c.count + c.nulls) as f64 };
                let summary = if c.kind == "numeric" {
                    format!("mean {:.3}, std {:.3}, min {:.3}, max {:.3}", c.mean, c.std, c.min, c.max)
                } else {
                    let top: Vec<String> =
                        c.top_categories.iter().take(4).map(|t| format!("{} {}", t.value, t.count)).collect();
                    format!("{} distinct: {}", c.distinct, top.join(", "))
                };
                let power = c.power.map_or_else(|| "–".to_owned(), |p| format!("{p:.3}"));
                vec![c.name.clone(), c.kind.clone(), format!("{:.1} %", missing * 100.0), power, summary]
            })
            .collect();
        blocks.push(Block::Table { header: strings(["Column", "Kind", "Missing", "Power alone", "Summary"]), rows });
    }
    Section { heading: "Training data".into(), blocks }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CardInput {
        let spec = PipelineSpec::from_yaml(crate::EXAMPLE_SPEC).unwrap();
        let version = pb::ModelVersion {
            pipeline: "churn".into(),
            version: 3,
            artifact_sha256: "a".repeat(64),
            algorithm: "logistic_regression".into(),
            holdout_metrics: Some(pb::Metrics { values: [("roc_auc".into(), 0.81)].into(), rows: 240 }),
            production_metrics: Some(pb::Metrics { values: [("roc_auc".into(), 0.79)].into(), rows: 240 }),
            compared_with_version: 2,
            gate: "failed".into(),
            gate_checks: vec![pb::GateCheck {
                name: "roc_auc >= 0.9 on every slice of contract".into(),
                passed: false,
                detail: "one-year 0.61 (80 rows) FAILS <b>".into(),
            }],
            slices: vec![pb::SliceMetrics {
                feature: "contract".into(),
                value: "one-year".into(),
                rows: 80,
                candidate: [("roc_auc".into(), 0.61)].into(),
                production: Default::default(),
            }],
            decision: Some(pb::OperatorDecision {
                action: "approved".into(),
                reason: "slice | small".into(),
                by: "ana".into(),
                time_unix_ms: 0,
            }),
            lineage: Some(pb::Lineage { dataset_ids: vec!["d".repeat(64)], seed: 42, ..Default::default() }),
            ..Default::default()
        };
        CardInput { version, spec, datasets: vec![], newest: None }
    }

    #[test]
    fn a_card_has_every_section_in_both_renderings() {
        let card = Card::new(&input());
        let md = card.markdown();
        for expected in [
            "# Model card: churn v3",
            "## Metrics",
            "| roc_auc (higher is better) | 0.8100 | 0.7900 |",
            "Production v2 (same rows)",
            "## Slices",
            "| contract | one-year | 80 | 0.6100 | – |",
            "Operator decision: **approved** by ana",
            "by ana on 1970-01-01 00:00:00 UTC: slice | small",
            "| roc_auc >= 0.9 on every slice of contract | FAIL |",
            "mlops reproduce churn@3",
        ] {
            assert!(md.contains(expected), "{expected:?} not in\n{md}");
        }
        assert!(md.contains(&format!("| {} | – | – | – | not in the catalog |", "d".repeat(64))), "{md}");
        let html = card.html();
        assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>\n"));
        assert!(html.contains("<td class=\"FAIL\">FAIL</td>") && html.contains("FAILS &lt;b&gt;"), "{html}");
        assert!(html.contains("Operator decision: <b>approved</b> by ana"), "{html}");
    }

    #[test]
    fn feature_importance_is_listed_strongest_first_with_the_warnings() {
        let mut input = input();
        let at = |feature: &str, candidate: f64, production: f64| pb::FeatureImportance {
            feature: feature.into(),
            candidate,
            production: Some(production),
        };
        input.version.importance =
            vec![at("age", 0.01, 0.01), at("tenure_months", 0.02, 0.2), at("contract", 0.12, 0.1)];
        input.version.evaluation_warnings = vec!["feature `tenure_months` matters much less".into()];
        let md = Card::new(&input).markdown();
        let table = md.find("| Feature | This model | Production v2 |").expect("an importance table");
        let (contract, tenure) =
            (md.find("| contract | 0.1200 | 0.1000 |").unwrap(), md.find("| tenure_months |").unwrap());
        assert!(table < contract && contract < tenure, "{md}");
        assert!(md.contains("**Warning:** feature `tenure_months` matters much less"), "{md}");
        assert!(md.contains("How much `roc_auc` on the holdout worsens"), "{md}");
    }

    #[test]
    fn a_priced_model_shows_its_threshold_value_and_curve() {
        let mut input = input();
        input.spec = PipelineSpec::from_yaml(&format!(
            "{}business: {{value: {{tp: 100, fp: -20, fn: -100, tn: 0}}, amount: monthly_charges}}\n",
            crate::EXAMPLE_SPEC
        ))
        .unwrap();
        let curve: Vec<f64> = (0..=100).map(|k| 0.0 - ((k as f64 - 30.0) / 10.0).powi(2)).collect();
        input.version.business = Some(pb::BusinessDecision { threshold: 0.3, value: 0.0, curve });
        input.version.production_metrics.as_mut().unwrap().values.insert(BUSINESS_VALUE.into(), -2.5);
        let card = Card::new(&input);
        let md = card.markdown();
        for expected in [
            "## Business value",
            "- **Value of a decision:** tp 100, fp -20, fn -100, tn 0, each times the row's `monthly_charges`",
            "- **Decision threshold:** 0.3000: a score at or above it is labelled `1`, below it `0`",
            "- **Production v2 on the same rows:** -2.5000",
            "| 0.3 | 0.0000 |",
            "| 1.0 | -49.0000 |",
        ] {
            assert!(md.contains(expected), "{expected:?} not in\n{md}");
        }
        assert!(!md.contains("<svg"), "{md}");
        let html = card.html();
        let svg = &html[html.find("<svg").expect("a chart")..html.find("</svg>").expect("a closed chart")];
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 101, "{svg}");
        assert!(svg.contains("threshold 0.300"), "{svg}");
    }

    #[test]
    fn a_candidate_judged_on_feedback_says_so() {
        let mut input = input();
        input.version.newest_metrics = Some(pb::Metrics { values: [("roc_auc".into(), 0.77)].into(), rows: 500 });
        input.version.newest_dataset_id = "f".repeat(64);
        input.newest = Some(pb::Dataset {
            origin: "feedback".into(),
            feedback: Some(pb::FeedbackOrigin {
                rows: 2_500,
                first_predicted_unix_ms: 0,
                last_predicted_unix_ms: 60_000,
                model_versions: vec![2, 3],
                sequence: 4,
                ..Default::default()
            }),
            ..Default::default()
        });
        let md = Card::new(&input).markdown();
        let expected = "feedback version 4: 2500 labelled production predictions made 1970-01-01 00:00:00 to \
                        1970-01-01 00:01:00 by v2, v3, labelled since";
        assert!(md.contains(expected), "{md}");
        assert!(md.contains("judged beside production on the world as it is now"), "{md}");
    }
}
