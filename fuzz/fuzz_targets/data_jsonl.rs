//! JSON Lines as ingest and the validator read it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mlops_fuzz::read_dataset("upload.jsonl", data));
