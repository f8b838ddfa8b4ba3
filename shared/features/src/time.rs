//! Event and write times as Unix milliseconds, from the forms files hold them in.

/// Parses a time cell: RFC 3339 (`2026-05-01T12:00:00Z`, any offset), `YYYY-MM-DD HH:MM:SS[.fff]`
/// or `YYYY-MM-DD` read as UTC, or a number of Unix seconds.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return secs_to_ms(secs);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis()));
    }
    Err(format!("{text:?} is not a time (RFC 3339, `YYYY-MM-DD HH:MM:SS` in UTC, or Unix seconds)"))
}

/// Unix seconds (possibly fractional) as milliseconds.
pub fn secs_to_ms(secs: f64) -> Result<i64, String> {
    // Years 1970 to 9999: anything else is a unit mistaken (milliseconds given as seconds).
    if !(0.0..=253_402_300_799.0).contains(&secs) {
        return Err(format!("{secs} is not a time in Unix seconds between 1970 and 9999"));
    }
    Ok((secs * 1000.0).round() as i64)
}

pub use mlops_shared::format_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_every_form_files_use() {
        let noon = 1_777_636_800_000; // 2026-05-01T12:00:00Z
        assert_eq!(parse_ms("2026-05-01T12:00:00Z"), Ok(noon));
        assert_eq!(parse_ms("2026-05-01T14:00:00+02:00"), Ok(noon));
        assert_eq!(parse_ms("2026-05-01 12:00:00"), Ok(noon));
        assert_eq!(parse_ms("2026-05-01 12:00:00.250"), Ok(noon + 250));
        assert_eq!(parse_ms("1777636800"), Ok(noon));
        assert_eq!(parse_ms("2026-05-01"), Ok(noon - 12 * 3_600_000));
        assert_eq!(format_ms(noon), "2026-05-01T12:00:00.000Z");
        assert!(parse_ms("yesterday").unwrap_err().contains("is not a time"));
        // Milliseconds written where seconds are expected land in the year 58,000: refused.
        assert!(parse_ms("1777636800000").unwrap_err().contains("Unix seconds"));
    }
}
