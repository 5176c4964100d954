//! The on-disk formats of the device's state, written once for the image and the
//! host tools: the record store on the state disk ([`store`]), sealed records
//! ([`sealed`]), the trust store ([`trust`]) and the OTP sector ([`otp`]).
//!
//! Everything is generic over [`ipc::RawBlockDevice`] and provider-api's backends:
//! statefs runs the store on the kernel's disk, keystored seals with the image's AEAD
//! and hash, and `cargo xtask provision` writes the same bytes to files on the host.
//! The formats are specified in `docs/state-disk.md`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod faults;
pub mod memory;
pub mod otp;
pub mod pairing;
pub mod sealed;
pub mod store;
pub mod trust;
