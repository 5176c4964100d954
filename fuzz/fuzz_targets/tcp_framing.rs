#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (fuzz_targets::target("tcp_framing").expect("a target of fuzz-targets").run)(data);
});
