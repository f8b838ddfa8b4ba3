//! CSV (plain, gzip or zstd, told apart by their first bytes) as ingest and the validator read it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mlops_fuzz::read_dataset("upload.csv", data));
