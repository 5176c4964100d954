//! Criterion benchmarks of the provider combinations; see `benches/providers.rs`.
//!
//! Run them with `cargo xtask bench` (which also counts instructions in QEMU and
//! writes the report), or alone with `cargo bench -p provider-bench`.
