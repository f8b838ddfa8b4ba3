//! `PIPELINE@VERSION`, the way commands name one model version (`models show churn@2`,
//! `deploy churn@3`, `reproduce churn@2`). Clap parses it through `FromStr`, so a malformed
//! argument is refused before anything connects, with a message naming what is wrong.

use std::fmt;
use std::str::FromStr;

/// One model version of a pipeline, written `PIPELINE@VERSION` (e.g. `churn@3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The pipeline's name, as given (the registry says whether it exists).
    pub pipeline: String,
    /// The version number; the registry numbers versions from 1.
    pub version: u64,
}

/// Why an argument is not `PIPELINE@VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRefError {
    /// There is no `@` between pipeline and version.
    MissingAt,
    /// Nothing comes before the `@`.
    EmptyPipeline,
    /// What follows the `@` is not a positive whole number.
    BadVersion(String),
}

impl fmt::Display for ModelRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Clap prints the rejected value and the argument's name before this, so the message
        // names only the problem.
        match self {
            Self::MissingAt => write!(f, "expected PIPELINE@VERSION, e.g. churn@3"),
            Self::EmptyPipeline => {
                write!(f, "the pipeline before the `@` is empty: expected PIPELINE@VERSION, e.g. churn@3")
            }
            Self::BadVersion(v) => {
                write!(f, "the version {v:?} must be a number from 1 up (a version, not an alias), e.g. churn@3")
            }
        }
    }
}

impl std::error::Error for ModelRefError {}

impl FromStr for ModelRef {
    type Err = ModelRefError;

    /// Splits at the first `@`; the version is what `u64` parses (so `+3` and `03` are 3), but 0 is
    /// refused, since no version has that number.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (pipeline, version) = text.split_once('@').ok_or(ModelRefError::MissingAt)?;
        if pipeline.is_empty() {
            return Err(ModelRefError::EmptyPipeline);
        }
        match version.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Self { pipeline: pipeline.to_owned(), version: n }),
            _ => Err(ModelRefError::BadVersion(version.to_owned())),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.pipeline, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelRef, ModelRefError> {
        text.parse()
    }

    #[test]
    fn pipeline_and_version_are_read() {
        assert_eq!(parse("churn@3"), Ok(ModelRef { pipeline: "churn".into(), version: 3 }));
        assert_eq!(parse("fraud-eu@12").unwrap().to_string(), "fraud-eu@12");
        // Forms the parser has always taken, since `u64` parses them.
        assert_eq!(parse("churn@03").unwrap().version, 3);
        assert_eq!(parse("churn@+3").unwrap().version, 3);
        assert_eq!(parse(&format!("churn@{}", u64::MAX)).unwrap().version, u64::MAX);
    }

    #[test]
    fn a_missing_at_is_named() {
        for text in ["churn", "churn3", ""] {
            let e = parse(text).unwrap_err();
            assert_eq!(e, ModelRefError::MissingAt, "{text:?}");
            assert!(e.to_string().contains("PIPELINE@VERSION"), "{e}");
        }
    }

    #[test]
    fn an_empty_pipeline_is_named() {
        for text in ["@3", "@"] {
            let e = parse(text).unwrap_err();
            assert_eq!(e, ModelRefError::EmptyPipeline, "{text:?}");
            assert!(e.to_string().contains("pipeline before the `@` is empty"), "{e}");
        }
    }

    #[test]
    fn a_version_that_is_not_a_positive_number_is_named() {
        for version in ["", "x", "0", "-1", "1.5", " 3", "3 ", "production", "2@3", "18446744073709551616"] {
            let e = parse(&format!("churn@{version}")).unwrap_err();
            assert_eq!(e, ModelRefError::BadVersion(version.into()), "{version:?}");
            assert!(e.to_string().contains("must be a number from 1 up"), "{e}");
            assert!(e.to_string().contains(&format!("{version:?}")), "{e}");
        }
    }

    #[test]
    fn clap_refuses_a_bad_argument_with_the_reason() {
        #[derive(clap::Parser, Debug)]
        struct Args {
            target: ModelRef,
        }
        let args = <Args as clap::Parser>::try_parse_from(["mlops", "churn@2"]).unwrap();
        assert_eq!(args.target, ModelRef { pipeline: "churn".into(), version: 2 });
        let e = <Args as clap::Parser>::try_parse_from(["mlops", "churn"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("expected PIPELINE@VERSION"), "{e}");
    }
}
