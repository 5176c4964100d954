//! The host runner's scenarios, one test binary: each module was a test file of its
//! own, and linking each against every service cost the CI budget a link and a copy
//! of the services' generic code per file. `freed_memory.rs` stays a binary of its own
//! (its global allocator inspects every free, and nothing else may run beside it).

mod dsoftbus;
mod identity;
mod network_attacks;
mod network_recovery;
mod network_restart;
mod pairing;
mod pairing_devices;
mod pairing_vector;
mod sealed_identity;
mod session_ends;
mod trust_rollback;
