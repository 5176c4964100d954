#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (fuzz_targets::target("pairing_verifier").expect("a target of fuzz-targets").run)(data);
});
