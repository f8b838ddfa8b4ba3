//! Data from a team's lake: a `data.arrived` whose `path` is an `s3://`, `gs://` or `az://` URI
//! under ingest's allowed prefixes (`MLOPS_INGEST_ALLOWED_URIS`), and S3 event notifications —
//! the JSON that S3, MinIO and compatible stores publish — forwarded to
//! `mlops.events.lake.notification.<pipeline>`, each created object becoming a data arrival.

use mlops_shared::events::Event;
use serde::Deserialize;

/// The schemes of lake URIs.
const SCHEMES: [&str; 3] = ["s3://", "gs://", "az://"];

/// Whether `path` names an object in a lake rather than a local file.
pub fn is_uri(path: &str) -> bool {
    SCHEMES.iter().any(|s| path.starts_with(s))
}

/// The allowed prefixes as configured, each a lake URI ending at a folder boundary (a `/` is
/// added), so `s3://lake/in` does not also allow `s3://lake/incoming-private/`.
pub fn allowed_prefixes(configured: &[String]) -> Result<Vec<String>, String> {
    configured
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            let parsed = url::Url::parse(p).ok().filter(|_| is_uri(p));
            match parsed {
                Some(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
                    Ok(if p.ends_with('/') { p.clone() } else { format!("{p}/") })
                }
                _ => Err(format!("MLOPS_INGEST_ALLOWED_URIS: {p:?} is not an s3://, gs:// or az:// bucket URI")),
            }
        })
        .collect()
}

/// Checks that `uri` lies under one of `allowed`. Dot segments are refused outright: stores take
/// them literally, but a reader of the URI might not.
pub fn check(uri: &str, allowed: &[String]) -> Result<(), String> {
    if allowed.is_empty() {
        return Err(format!(
            "data.arrived: {uri} is not accepted: ingest has no allowed prefixes (MLOPS_INGEST_ALLOWED_URIS)"
        ));
    }
    let path = uri.split_once("://").map_or("", |(_, rest)| rest);
    if path.split('/').any(|segment| segment == ".." || segment == ".") {
        return Err(format!("data.arrived: {uri} has a `.` or `..` segment"));
    }
    if !allowed.iter().any(|prefix| uri.starts_with(prefix.as_str())) {
        return Err(format!("data.arrived: {uri} is outside the allowed prefixes ({})", allowed.join(", ")));
    }
    Ok(())
}

/// An object a notification says was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub uri: String,
    /// The ETag the notification announced; what is read may differ if the object changed since.
    pub e_tag: Option<String>,
}

#[derive(Deserialize)]
struct NotificationJson {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketEntity,
    object: ObjectEntity,
}

#[derive(Deserialize)]
struct BucketEntity {
    name: String,
}

#[derive(Deserialize)]
struct ObjectEntity {
    key: String,
    #[serde(rename = "eTag", default)]
    e_tag: Option<String>,
}

/// The objects an S3 event notification reports created (`ObjectCreated:*`, with or without
/// MinIO's `s3:` in front). Other events (removals, S3's `s3:TestEvent`) give none.
pub fn created_objects(json: &[u8]) -> Result<Vec<Created>, String> {
    let parsed: NotificationJson =
        serde_json::from_slice(json).map_err(|e| format!("not an S3 event notification: {e}"))?;
    parsed
        .records
        .into_iter()
        .filter(|r| r.event_name.trim_start_matches("s3:").starts_with("ObjectCreated:"))
        .map(|r| {
            let key = decode_key(&r.s3.object.key)?;
            let e_tag = r.s3.object.e_tag.filter(|t| !t.is_empty()).map(|t| t.trim_matches('"').to_owned());
            Ok(Created { uri: format!("s3://{}/{key}", r.s3.bucket.name), e_tag })
        })
        .collect()
}

/// Notifications carry keys URL-encoded as HTML forms are: `+` for a space, `%XX` for a byte.
fn decode_key(key: &str) -> Result<String, String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = key.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or_else(|| format!("object key {key:?} has a bad %-escape"))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("object key {key:?} is not UTF-8 once decoded"))
}

/// An S3 event notification as received, before it is read: JSON, with CloudEvents headers or
/// (as stores publish it) none.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Notification {
    #[prost(bytes = "vec", tag = "1")]
    pub json: Vec<u8>,
}

impl Event for Notification {
    const SUBJECT_PREFIX: &'static str = "mlops.events.lake.notification";
    const CE_TYPE: &'static str = "io.mlops.lake.notification.v1";

    /// The pipeline is the subject's last token, not in the store's JSON.
    fn pipeline(&self) -> &str {
        ""
    }

    fn from_json(payload: &[u8]) -> Option<Result<Self, String>> {
        Some(Ok(Self { json: payload.to_vec() }))
    }

    fn from_protobuf(_ce_type: Option<&str>, payload: &[u8]) -> Result<Self, prost::DecodeError> {
        Ok(Self { json: payload.to_vec() })
    }

    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_at_a_folder_and_uris_outside_them_or_with_dot_segments_are_refused() {
        let allowed = allowed_prefixes(&["s3://lake/in".into(), "gs://other/".into()]).unwrap();
        assert_eq!(allowed, ["s3://lake/in/", "gs://other/"]);
        assert!(check("s3://lake/in/a.csv", &allowed).is_ok());
        assert!(check("gs://other/deep/b.parquet", &allowed).is_ok());
        assert!(check("s3://lake/incoming-private/a.csv", &allowed).unwrap_err().contains("outside the allowed"));
        assert!(check("s3://lake/in/../secret.csv", &allowed).unwrap_err().contains("`..`"));
        assert!(check("s3://lake/in/a.csv", &[]).unwrap_err().contains("MLOPS_INGEST_ALLOWED_URIS"));
        assert!(allowed_prefixes(&["/data/in".into()]).unwrap_err().contains("not an s3://"));
        assert!(allowed_prefixes(&["s3:///nobucket".into()]).is_err());
    }

    #[test]
    fn created_objects_are_read_from_s3_and_minio_notifications_and_other_events_are_ignored() {
        let s3 = br#"{"Records":[
            {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
             "s3":{"bucket":{"name":"lake"},"object":{"key":"in/day+1%2B%C3%A9.csv","size":10,"eTag":"0123abcd"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"lake"},"object":{"key":"in/old.csv"}}},
            {"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"lake"},"object":{"key":"in/big.parquet","eTag":"\"ff-2\""}}}
        ]}"#;
        let created = created_objects(s3).unwrap();
        assert_eq!(
            created,
            [
                Created { uri: "s3://lake/in/day 1+é.csv".into(), e_tag: Some("0123abcd".into()) },
                Created { uri: "s3://lake/in/big.parquet".into(), e_tag: Some("ff-2".into()) },
            ]
        );
        let minio = br#"{"EventName":"s3:ObjectCreated:Put","Key":"lake/in/a.csv","Records":[
            {"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"lake"},"object":{"key":"in%2Fa.csv"}}}]}"#;
        assert_eq!(created_objects(minio).unwrap(), [Created { uri: "s3://lake/in/a.csv".into(), e_tag: None }]);
        let test_event = br#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"lake"}"#;
        assert!(created_objects(test_event).unwrap().is_empty());
        assert!(created_objects(b"not json").unwrap_err().contains("not an S3 event notification"));
        let bad =
            br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"l"},"object":{"key":"a%zz"}}}]}"#;
        assert!(created_objects(bad).unwrap_err().contains("bad %-escape"));
    }
}
