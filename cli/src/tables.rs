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
}
