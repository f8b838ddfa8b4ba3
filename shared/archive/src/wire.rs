//! The prediction log's messages decoded for the archive without copying: the same wire format as
//! `mlops.v1.PredictionLogBatch` (a proto3 map is a repeated key/value entry on the wire), with
//! every text a slice of the message, so a prediction costs no allocation per feature.

use bytes::Bytes;
use prost::Message as _;

/// A `map<string, double>` entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Num {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(double, tag = "2")]
    pub value: f64,
}

/// A `map<string, string>` entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Cat {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `mlops.v1.PredictionLogged`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Logged {
    #[prost(bytes = "bytes", tag = "1")]
    pub pipeline: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub prediction_id: Bytes,
    #[prost(uint64, tag = "3")]
    pub version: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub artifact_sha256: Bytes,
    #[prost(message, repeated, tag = "5")]
    pub numeric: Vec<Num>,
    #[prost(message, repeated, tag = "6")]
    pub categorical: Vec<Cat>,
    #[prost(double, tag = "7")]
    pub score: f64,
    #[prost(bytes = "bytes", tag = "8")]
    pub label: Bytes,
    #[prost(int64, tag = "9")]
    pub time_unix_ms: i64,
}

/// `mlops.v1.PredictionLogBatch`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogBatch {
    #[prost(bytes = "bytes", tag = "1")]
    pub pipeline: Bytes,
    #[prost(message, repeated, tag = "2")]
    pub predictions: Vec<Logged>,
}

impl From<&mlops_proto::PredictionLogged> for Logged {
    /// The prediction as the stream would hold it (encoded and read back).
    fn from(p: &mlops_proto::PredictionLogged) -> Self {
        Self::decode(Bytes::from(p.encode_to_vec())).unwrap_or_default()
    }
}

/// Text of the log, checked to be UTF-8.
pub(crate) fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

impl LogBatch {
    /// A message of the prediction log: a batch (`ce-type` io.mlops.prediction.logged_batch.v1) or,
    /// under any other type, a single prediction as a batch of one. Refused unless its pipeline is
    /// a valid name, every prediction is of it, and every text but feature names is UTF-8.
    pub fn decode_message(ce_type: Option<&str>, payload: Bytes) -> Result<Self, String> {
        let batch_type = <mlops_proto::PredictionLogBatch as mlops_shared::events::Event>::CE_TYPE;
        let mut batch = if ce_type == Some(batch_type) {
            Self::decode(payload).map_err(|e| format!("not a prediction log batch: {e}"))?
        } else {
            let one = Logged::decode(payload).map_err(|e| format!("not a logged prediction: {e}"))?;
            Self { pipeline: one.pipeline.clone(), predictions: vec![one] }
        };
        let utf8 = |b: &Bytes, what: &str| std::str::from_utf8(b).map(drop).map_err(|_| format!("{what} is not UTF-8"));
        utf8(&batch.pipeline, "the pipeline")?;
        mlops_shared::ids::PipelineName::new(text(&batch.pipeline)).map_err(|e| e.to_string())?;
        for p in &mut batch.predictions {
            if p.pipeline.is_empty() {
                p.pipeline = batch.pipeline.clone();
            } else if p.pipeline != batch.pipeline {
                return Err(format!("a prediction of another pipeline in a batch of `{}`", text(&batch.pipeline)));
            }
            utf8(&p.prediction_id, "a prediction id")?;
            utf8(&p.artifact_sha256, "an artifact sha256")?;
            utf8(&p.label, "a label")?;
            // Feature names are not checked here: the archive writes them lossily (U+FFFD).
            for c in &p.categorical {
                utf8(&c.value, "a category")?;
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_decodes_as_the_platform_writes_it() {
        let p = mlops_proto::PredictionLogged {
            pipeline: "churn".into(),
            prediction_id: "id-1".into(),
            version: 3,
            artifact_sha256: "ab".into(),
            numeric: [("x".to_owned(), 1.5)].into(),
            categorical: [("c".to_owned(), "v".to_owned())].into(),
            score: 0.25,
            label: "yes".into(),
            time_unix_ms: 9,
        };
        let batch = mlops_proto::PredictionLogBatch { pipeline: "churn".into(), predictions: vec![p.clone()] };
        let batch_type = <mlops_proto::PredictionLogBatch as mlops_shared::events::Event>::CE_TYPE;
        let read = LogBatch::decode_message(Some(batch_type), batch.encode_to_vec().into()).unwrap();
        let one = LogBatch::decode_message(None, p.encode_to_vec().into()).unwrap();
        assert_eq!(read, one);
        let l = &read.predictions[0];
        assert_eq!(
            (text(&l.prediction_id), l.version, l.score, text(&l.label), l.time_unix_ms),
            ("id-1", 3, 0.25, "yes", 9)
        );
        assert_eq!((text(&l.numeric[0].key), l.numeric[0].value), ("x", 1.5));
        assert_eq!((text(&l.categorical[0].key), text(&l.categorical[0].value)), ("c", "v"));

        let other = mlops_proto::PredictionLogBatch { pipeline: "other".into(), predictions: vec![p] };
        let err = LogBatch::decode_message(Some(batch_type), other.encode_to_vec().into()).unwrap_err();
        assert!(err.contains("another pipeline"), "{err}");
        let bad = mlops_proto::PredictionLogBatch { pipeline: "Bad.Name".into(), predictions: vec![] };
        assert!(LogBatch::decode_message(Some(batch_type), bad.encode_to_vec().into()).is_err());
        assert!(LogBatch::decode_message(Some(batch_type), Bytes::from_static(b"\xff\xff\xff")).is_err());
    }
}
