//! Recognising a dataset's format and compression from its first bytes (magic numbers first, the
//! name only when the bytes cannot tell). Ingest records it; the readers in `mlops-data` act on it.

/// A dataset's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
    JsonLines,
}

impl Format {
    /// The name used in catalogs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::JsonLines => "jsonl",
        }
    }

    /// Parses a format name (`csv`, `parquet`, `jsonl`/`ndjson`/`json`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "parquet" | "pq" => Some(Self::Parquet),
            "jsonl" | "ndjson" | "json" => Some(Self::JsonLines),
            _ => None,
        }
    }
}

/// How the bytes are compressed (Parquet compresses inside the file, so it is always `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Recognises `head` (the first bytes of the data), using `name` (a file or object name, may be
/// empty) to tell the format inside a compressed stream.
pub fn detect(name: &str, head: &[u8]) -> (Format, Compression) {
    let lower = name.to_ascii_lowercase();
    let inner =
        lower.trim_end_matches(".gz").trim_end_matches(".gzip").trim_end_matches(".zst").trim_end_matches(".zstd");
    let by_name = inner.rsplit('.').next().and_then(Format::parse).filter(|_| inner.contains('.'));
    if head.starts_with(b"PAR1") {
        return (Format::Parquet, Compression::None);
    }
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    if compression != Compression::None {
        return (by_name.unwrap_or(Format::Csv), compression);
    }
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    let format = match (by_name, first) {
        (Some(f), _) => f,
        (None, Some(b'{')) => Format::JsonLines,
        _ => Format::Csv,
    };
    (format, Compression::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_win_and_names_tell_what_is_inside_compression() {
        assert_eq!(detect("x.csv", b"PAR1...."), (Format::Parquet, Compression::None));
        assert_eq!(detect("x.jsonl.gz", &[0x1f, 0x8b, 8]), (Format::JsonLines, Compression::Gzip));
        assert_eq!(detect("", &[0x28, 0xb5, 0x2f, 0xfd]), (Format::Csv, Compression::Zstd));
        assert_eq!(detect("drop", b"  {\"a\": 1}"), (Format::JsonLines, Compression::None));
        assert_eq!(detect("data.ndjson", b"{}"), (Format::JsonLines, Compression::None));
        assert_eq!(detect("", b"a,b\n1,2"), (Format::Csv, Compression::None));
    }
}
