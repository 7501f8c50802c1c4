//! Fuzz target `event_decode`: see `ccp_schemas::fuzzing::check_event_decode` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ccp_schemas::fuzzing::check_event_decode(data));
