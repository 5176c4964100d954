//! Fuzz targets: every decoder that takes bytes from another task, from a disk or from
//! the network, as a plain function `fn(&[u8])` that panics when its property fails.
//!
//! The properties are stronger than "no panic":
//!
//! - **Canonical decoding**: a decoder that accepts its input re-encodes the result to
//!   the same bytes (a slot of the record store: the bytes its CRC covers; its padding
//!   is documented as not covered, since a torn write can leave old bytes there).
//! - **A failed decrypt changes nothing**: after any input fails to decrypt, the next
//!   genuine transport message still decrypts.
//! - **No input stops a service**: after any request frame, rngd, statefs and keystored
//!   still answer a well-formed request correctly.
//! - **Bounds hold**: the TCP framing never holds more than a frame; netstackd's
//!   tables stay within their bounds whatever frames arrive on the wire.
//!
//! The targets run two ways: under libFuzzer (`fuzz/`, `cargo xtask fuzz`), and on
//! stable in `cargo test`, which replays each target's checked-in corpus
//! (`fuzz/corpus/<target>/`) and a fixed number of generated inputs
//! (`tests/replay.rs`), so every crash ever found stays a regression test.

#![forbid(unsafe_code)]

mod net;
mod noise;
mod pairing;
mod services;
mod storage;
mod wire;

/// A fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// Its name: the cargo-fuzz target and the corpus directory.
    pub name: &'static str,
    /// What it decodes, for reports.
    pub what: &'static str,
    /// The function.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "ipc_frame",
        what: "the IPC frame (every request and reply between tasks)",
        run: wire::ipc_frame,
    },
    Target {
        name: "audit_filter",
        what: "logd's QUERY filter and its reply",
        run: wire::audit_filter,
    },
    Target {
        name: "service_requests",
        what: "each service's request payload, by operation",
        run: wire::service_requests,
    },
    Target {
        name: "service_replies",
        what: "netstackd's and dsoftbusd's reply payloads, and reply frames",
        run: wire::service_replies,
    },
    Target {
        name: "tcp_framing",
        what: "dsoftbusd's TCP frames, hellos and transport plaintexts",
        run: wire::tcp_framing,
    },
    Target {
        name: "binding",
        what: "the identity binding in handshake payloads",
        run: wire::binding,
    },
    Target {
        name: "markers_file",
        what: "ladder/markers.toml and the ladder fed console lines",
        run: wire::markers_file,
    },
    Target {
        name: "rngd_service",
        what: "rngd's request handling: it keeps serving",
        run: services::rngd_service,
    },
    Target {
        name: "statefs_service",
        what: "statefs's request handling: it keeps serving",
        run: services::statefs_service,
    },
    Target {
        name: "keystored_service",
        what: "keystored's request handling: it keeps serving",
        run: services::keystored_service,
    },
    Target {
        name: "store_slot",
        what: "a record-store slot (statefs on the state disk)",
        run: storage::store_slot,
    },
    Target {
        name: "store_disk",
        what: "a whole state disk, opened and used",
        run: storage::store_disk,
    },
    Target {
        name: "sealed_record",
        what: "keystored's sealed device-key record",
        run: storage::sealed_record,
    },
    Target {
        name: "trust_store",
        what: "dsoftbusd's trust store",
        run: storage::trust_store,
    },
    Target {
        name: "otp_sector",
        what: "the OTP disk's sector",
        run: storage::otp_sector,
    },
    Target {
        name: "noise_responder_message_1",
        what: "the responder reading a first handshake message",
        run: noise::responder_message_1,
    },
    Target {
        name: "noise_initiator_message_2",
        what: "the initiator reading a second handshake message",
        run: noise::initiator_message_2,
    },
    Target {
        name: "noise_responder_message_3",
        what: "the responder reading a third handshake message",
        run: noise::responder_message_3,
    },
    Target {
        name: "noise_transport",
        what: "transport decryption on both sides",
        run: noise::transport,
    },
    Target {
        name: "pairing_messages",
        what: "pairing's hellos, requests and sealed identities",
        run: pairing::pairing_messages,
    },
    Target {
        name: "pairing_verifier",
        what: "keystored's SPAKE2+ verifier fed a prover's share and confirmation",
        run: pairing::pairing_verifier,
    },
    Target {
        name: "keystored_pairing",
        what: "keystored's pairing operations: it keeps serving",
        run: pairing::keystored_pairing,
    },
    Target {
        name: "net_frames",
        what: "Ethernet frames from the wire into netstackd's stack",
        run: net::frames,
    },
];

/// Seed inputs for `target` (genuine messages where random bytes would not pass the
/// cryptography): written to its corpus before fuzzing, and replayed by the tests.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut seeds = noise::seeds(target);
    seeds.extend(storage::seeds(target));
    seeds.extend(pairing::seeds(target));
    seeds
}

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}
