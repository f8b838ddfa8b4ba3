//! Plain-text tables for people: dataset catalogs, profiles and anomaly reports.

use std::fmt::Write as _;

use mlops_proto as pb;

/// One line per dataset version.
pub fn datasets(list: &[pb::Dataset]) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:<8} {:<9} {:<9} {:>9} {:>11}  SOURCE\n",
        "DATASET", "PIPELINE", "FORMAT", "ENV", "VERDICT", "ROWS", "BYTES"
    );
    for d in list {
        let _ = writeln!(
            out,
            "{:<14} {:<12} {:<8} {:<9} {:<9} {:>9} {:>11}  {}",
            &d.dataset_id[..12.min(d.dataset_id.len())],
            d.pipeline,
            d.format,
            d.environment,
            d.verdict,
            d.rows,
            d.size_bytes,
            d.source
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

/// A duration in seconds as people read it: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
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
