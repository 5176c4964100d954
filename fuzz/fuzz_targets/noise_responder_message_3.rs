#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (fuzz_targets::target("noise_responder_message_3").expect("a target of fuzz-targets").run)(data);
});
