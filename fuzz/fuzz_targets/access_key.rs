//! Fuzz target `access_key`: see `ccp_schemas::fuzzing::check_access_key` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ccp_schemas::fuzzing::check_access_key(data));
