//! Plain-text tables for people: dataset catalogs, profiles and anomaly reports.

use std::fmt::Write as _;

use mlops_proto as pb;
pub use mlops_shared::describe::age;

/// One line per dataset version.
pub fn datasets(list: &[pb::Dataset]) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:<8} {:<9} {:<9} {:<9} {:>9} {:>11}  SOURCE\n",
        "DATASET", "PIPELINE", "FORMAT", "ENV", "ORIGIN", "VERDICT", "ROWS", "BYTES"
    );
    for d in list {
        let _ = writeln!(
            out,
            "{:<14} {:<12} {:<8} {:<9} {:<9} {:<9} {:>9} {:>11}  {}",
            &d.dataset_id[..12.min(d.dataset_id.len())],
            d.pipeline,
            d.format,
            d.environment,
            d.origin,
            if d.erased.is_some() { "erased" } else { &d.verdict },
            d.rows,
            d.size_bytes,
            d.source
        );
    }
    out
}

/// What one erasure did: its audit record, then a line per version it erased.
pub fn erasure(e: &pb::DataErased) -> String {
    let rows: u64 = e.versions.iter().map(|v| v.rows_removed).sum();
    let mut out = format!(
        "erasure {} of `{}`: {rows} row(s) with that `{}` removed from {} of {} version(s)\n\
         subject hash {} (HMAC-SHA256 under MLOPS_PII_KEY; the value is not kept)\n\
         reason {:?}, by {}\n",
        e.erasure_id,
        e.pipeline,
        e.column,
        e.versions.len(),
        e.versions_scanned,
        e.subject_hash,
        e.reason,
        if e.requested_by.is_empty() { "(not said)" } else { &e.requested_by },
    );
    let _ =
        writeln!(out, "{:<14} {:<9} {:>8} {:>8}  {:<14} OLD CONTENT", "ERASED", "ENV", "REMOVED", "KEPT", "SUCCESSOR");
    for v in &e.versions {
        let successor = if v.successor_id.is_empty() { "-" } else { mlops_shared::ids::short(&v.successor_id) };
        let content = if v.content_deleted { "deleted".to_owned() } else { format!("kept: {}", v.kept_because) };
        let _ = writeln!(
            out,
            "{:<14} {:<9} {:>8} {:>8}  {:<14} {content}",
            mlops_shared::ids::short(&v.dataset_id),
            v.environment,
            v.rows_removed,
            v.rows_kept,
            successor
        );
    }
    for (what, files) in [("archive", &e.archive_files), ("offline", &e.feature_files)] {
        for f in files {
            let _ = writeln!(out, "{what} file {}: {} row(s) removed, {} kept", f.name, f.rows_removed, f.rows_kept);
        }
    }
    if e.online_entries_deleted > 0 {
        let _ = writeln!(out, "online store: {} entity entr(ies) deleted", e.online_entries_deleted);
    }
    out
}

/// Past erasures, a line each.
pub fn erasures(list: &[pb::DataErased]) -> String {
    let mut out = format!(
        "{:<32} {:<12} {:<12} {:>8} {:>6}  {:<14} REASON\n",
        "ERASURE", "PIPELINE", "COLUMN", "VERSIONS", "ROWS", "SUBJECT"
    );
    for e in list {
        let rows: u64 = e.versions.iter().map(|v| v.rows_removed).sum();
        let _ = writeln!(
            out,
            "{:<32} {:<12} {:<12} {:>8} {:>6}  {:<14} {}",
            e.erasure_id,
            e.pipeline,
            e.column,
            e.versions.len(),
            rows,
            mlops_shared::ids::short(&e.subject_hash),
            e.reason
        );
    }
    out
}

/// The columns of a dataset version as read: name, Arrow type, role.
pub fn schema(fields: &[pb::SchemaField]) -> String {
    let mut out = format!("{:<18} {:<12} ROLE\n", "COLUMN", "TYPE");
    for f in fields {
        let _ = writeln!(out, "{:<18} {:<12} {}", f.name, f.r#type, f.role);
    }
    out
}

/// A dataset's profile, one line per column.
pub fn profile(p: &pb::DatasetProfile) -> String {
    let mut out = format!(
        "{} rows\n{:<18} {:<11} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}  TOP / QUANTILES (p5 p50 p95)\n",
        p.rows, "COLUMN", "KIND", "COUNT", "NULLS", "MIN", "MAX", "MEAN", "STD", "DISTINCT"
    );
    for c in &p.columns {
        if c.kind == "numeric" {
            let q = |i: usize| c.quantiles.get(i).map_or("-".into(), |v| format!("{v:.4}"));
            let _ = writeln!(
                out,
                "{:<18} {:<11} {:>8} {:>6} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>10}  {} {} {}",
                c.name,
                c.kind,
                c.count,
                c.nulls,
                c.min,
                c.max,
                c.mean,
                c.std,
                "-",
                q(1),
                q(3),
                q(5)
            );
        } else {
            let top: Vec<String> =
                c.top_categories.iter().take(4).map(|t| format!("{} {}", t.value, t.count)).collect();
            let _ = writeln!(
                out,
                "{:<18} {:<11} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}  {}",
                c.name,
                c.kind,
                c.count,
                c.nulls,
                "-",
                "-",
                "-",
                "-",
                c.distinct,
                top.join(", ")
            );
        }
    }
    out.push_str(&power(&p.columns));
    out
}

/// Each feature's predictive power alone and its mutual information with the label, strongest
/// first; empty when the data had no labels.
pub fn power(columns: &[pb::ColumnProfile]) -> String {
    let mut measured: Vec<(&str, f64, f64)> = columns
        .iter()
        .filter_map(|c| Some((c.name.as_str(), c.power?, c.mutual_information.unwrap_or(f64::NAN))))
        .collect();
    if measured.is_empty() {
        return String::new();
    }
    measured.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = format!(
        "\npredictive power of each feature alone (|2·AUC − 1| for classes, R² for values; 0 is none)\n{:<18} {:>8} {:>10}\n",
        "FEATURE", "POWER", "MI (BITS)"
    );
    for (name, power, mi) in measured {
        let _ = writeln!(out, "{name:<18} {power:>8.4} {mi:>10.4}");
    }
    out
}

/// Every anomaly, one line each: column, kind, blocking or not, rows affected, examples, message.
pub fn anomalies(columns: &[pb::ColumnReport]) -> String {
    if columns.iter().all(|c| c.anomalies.is_empty()) {
        return "no anomalies\n".into();
    }
    let mut out =
        format!("{:<18} {:<18} {:<8} {:>7}  {:<16} MESSAGE\n", "COLUMN", "ANOMALY", "SEVERITY", "ROWS", "EXAMPLE ROWS");
    for c in columns {
        for a in &c.anomalies {
            let examples: Vec<String> = a.example_rows.iter().map(u64::to_string).collect();
            let column = if c.column.is_empty() { "(dataset)" } else { c.column.as_str() };
            let _ = writeln!(
                out,
                "{:<18} {:<18} {:<8} {:>7}  {:<16} {}",
                column,
                a.kind,
                if a.blocking { "block" } else { "warn" },
                a.count,
                examples.join(","),
                a.message
            );
        }
    }
    out
}

/// Where a feedback version's rows came from, in one line.
pub fn feedback_origin(f: &pb::FeedbackOrigin) -> String {
    let versions: Vec<String> = f.model_versions.iter().map(|v| format!("v{v}")).collect();
    format!(
        "feedback version {}: {} labelled production predictions made {} to {} by {}",
        f.sequence,
        f.rows,
        time(f.first_predicted_unix_ms),
        time(f.last_predicted_unix_ms),
        versions.join(", ")
    )
}

/// A staleness report: one line per production version, youngest first, and the cadence.
pub fn staleness(r: &pb::StalenessReported) -> String {
    let mut out = format!(
        "{} on the newest dataset {} ({} rows no version compared trained on), {}, tolerance {:.1} %\n\n",
        r.pipeline,
        &r.dataset_id[..12.min(r.dataset_id.len())],
        r.rows,
        r.metric,
        r.tolerance * 100.0
    );
    let _ = writeln!(out, "{:<8} {:>10} {:>10} {:>9}  WITHIN", "VERSION", "AGE", r.metric.to_uppercase(), "LOSS");
    for row in &r.rows_by_age {
        let _ = writeln!(
            out,
            "{:<8} {:>10} {:>10.4} {:>8.2}%  {}",
            row.version,
            age(row.age_secs),
            row.value,
            row.loss * 100.0,
            if row.within_tolerance { "yes" } else { "no" }
        );
    }
    let _ = writeln!(
        out,
        "\nRecommended retraining cadence: every {}{} (the largest age whose quality loss stays within {:.1} %)",
        age(r.recommended_cadence_secs),
        if r.cadence_is_lower_bound { " or less often: no version compared lost more" } else { "" },
        r.tolerance * 100.0
    );
    out
}

fn drift_cell(f: &pb::FeatureDrift) -> String {
    let test = if f.method == "ks" || f.method == "chi_square" { "p" } else { "d" };
    format!("{}{} {}={:.3}", if f.drifted { "✗ " } else { "" }, f.method, test, f.score)
}

/// The monitor's report as text: label quality, the alert history, then the newest windows with
/// each feature's test and score (✗ marks drift).
pub fn monitor_report(r: &pb::ReportResponse) -> String {
    let mut out = String::new();
    match &r.performance {
        Some(p) => out.push_str(&format!(
            "quality of v{} on labels: {} {:.4} ({} labelled; {} {})\n",
            p.version,
            p.metric,
            p.value,
            p.labelled,
            if p.higher_is_better { "floor" } else { "ceiling" },
            p.threshold
        )),
        None => out.push_str("quality on labels: not measured yet (no `monitoring.performance`, or too few labels)\n"),
    }
    if let Some(f) = &r.feedback {
        out.push_str(&feedback_report(f));
    }
    out.push_str(&format!("\nALERTS ({})\n", r.alert_history.len()));
    for a in &r.alert_history {
        out.push_str(&format!(
            "{}  {:<11} v{:<4} {}  {}\n",
            time(a.time_unix_ms),
            a.kind,
            a.version,
            a.alert_id,
            a.detail
        ));
    }
    out.push_str(&format!("\nWINDOWS ({} shown, {} raised alerts)\n", r.windows.len(), r.alerts));
    for w in &r.windows {
        let features: Vec<String> = w.features.iter().map(|f| format!("{} {}", f.feature, drift_cell(f))).collect();
        let prediction = w.prediction.as_ref().map_or(String::new(), |p| format!("; prediction {}", drift_cell(p)));
        out.push_str(&format!(
            "{}  v{:<4} {:>6} rows  drifted {:>5.1} %  {}{}{}\n",
            time(w.closed_unix_ms),
            w.version,
            w.rows,
            w.drifted_share * 100.0,
            features.join(", "),
            prediction,
            if w.alert_id.is_empty() { String::new() } else { format!("  → alert {}", w.alert_id) }
        ));
    }
    out
}

/// Labelled rows waiting for the next feedback version, and the versions written.
fn feedback_report(f: &pb::FeedbackReport) -> String {
    if f.min_rows == 0 {
        return format!("feedback: no longer asked for by the spec; {} version(s) written\n", f.versions);
    }
    let oldest =
        if f.oldest_unix_ms > 0 { format!(", oldest labelled {}", time(f.oldest_unix_ms)) } else { String::new() };
    let mut out = format!(
        "feedback: {} labelled rows waiting for the next version (written at {} rows or after {} h{oldest}); {} \
         version(s) written",
        f.waiting, f.min_rows, f.max_age_hours, f.versions
    );
    if !f.last_dataset_id.is_empty() {
        out += &format!(", newest {}", &f.last_dataset_id[..12.min(f.last_dataset_id.len())]);
    }
    if f.late > 0 {
        out += &format!("; {} label(s) came after `max_age_hours` and were left out", f.late);
    }
    out + "\n"
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The monitor's report as JSON.
pub fn monitor_report_json(r: &pb::ReportResponse) -> serde_json::Value {
    let drift = |f: &pb::FeatureDrift| serde_json::json!({"feature": f.feature, "method": f.method, "score": f.score, "threshold": f.threshold, "drifted": f.drifted});
    serde_json::json!({
        "pipeline": r.pipeline,
        "performance": r.performance.as_ref().map(|p| serde_json::json!({
            "version": p.version, "metric": p.metric, "value": p.value, "labelled": p.labelled,
            "threshold": p.threshold, "higher_is_better": p.higher_is_better, "at_unix_ms": p.at_unix_ms,
        })),
        "feedback": r.feedback.as_ref().map(|f| serde_json::json!({
            "waiting": f.waiting, "min_rows": f.min_rows, "oldest_unix_ms": f.oldest_unix_ms,
            "max_age_hours": f.max_age_hours, "versions": f.versions, "last_dataset_id": f.last_dataset_id,
            "late": f.late,
        })),
        "alerts": r.alert_history.iter().map(|a| serde_json::json!({
            "alert_id": a.alert_id, "kind": a.kind, "version": a.version, "time_unix_ms": a.time_unix_ms, "detail": a.detail,
        })).collect::<Vec<_>>(),
        "windows": r.windows.iter().map(|w| serde_json::json!({
            "version": w.version, "rows": w.rows, "drifted_share": w.drifted_share, "closed_unix_ms": w.closed_unix_ms,
            "alert_id": w.alert_id, "features": w.features.iter().map(drift).collect::<Vec<_>>(),
            "prediction": w.prediction.as_ref().map(drift),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomaly_table_lists_each_finding() {
        let report = vec![pb::ColumnReport {
            column: "age".into(),
            anomalies: vec![pb::Anomaly {
                kind: "out_of_range".into(),
                message: "200 is outside [18, 120]".into(),
                count: 2,
                example_rows: vec![4, 9],
                blocking: true,
            }],
        }];
        let t = anomalies(&report);
        let line = t.lines().nth(1).unwrap();
        for part in ["age", "out_of_range", "block", "2", "4,9", "200 is outside [18, 120]"] {
            assert!(line.contains(part), "{line}");
        }
        assert_eq!(anomalies(&[]), "no anomalies\n");
    }

    #[test]
    fn ages_read_like_people_say_them() {
        assert_eq!(super::age(45.4), "45s");
        assert_eq!(super::age(725.0), "12m 5s");
        assert_eq!(super::age(12_000.0), "3h 20m");
        assert_eq!(super::age(187_200.0), "2d 4h");
        assert_eq!(super::age(-3.0), "0s");
    }
}
