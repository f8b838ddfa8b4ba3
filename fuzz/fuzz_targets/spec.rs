//! The pipeline spec as the registry reads it: YAML from `mlops pipeline apply`, JSON from the
//! key-value store, then every check.
#![no_main]
use mlops_shared::spec::PipelineSpec;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(spec) = PipelineSpec::from_yaml(text)
    {
        let _ = spec.check();
        // What is stored must read back as the same spec.
        let again = PipelineSpec::from_json(&spec.canonical_json()).expect("a checked spec reads back");
        assert_eq!(again.hash(), spec.hash());
    }
    let _ = PipelineSpec::from_json(data);
});
