//! The artifact loader: bytes whose sha256 matches (so the parser, not the checksum, is what
//! decides), then a prediction from whatever loads.
#![no_main]
use mlops_shared::ids::Sha256;
use mlops_shared::model::Artifact;
use mlops_shared::table::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(artifact) = Artifact::from_verified_bytes(data, &Sha256::of(data)) {
        let row = vec![Value::Missing; artifact.manifest.features.len()];
        let _ = artifact.predict(&row);
    }
});
