//! Fuzz target `bedrock_eventstream`: see `ccp_proxy::fuzzing::check_bedrock_eventstream` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ccp_proxy::fuzzing::check_bedrock_eventstream(data));
