//! `docs/protocol.md` section 7 states the transport's timers a peer meets; they are
//! netstackd's constants.

use netstackd::stack::{BACKLOG_WAIT_MS, KEEP_ALIVE, PEER_TIMEOUT, SYN_TIMEOUT};

#[test]
fn the_documents_transport_timers_are_netstackds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let text = std::fs::read_to_string(path).expect("docs/protocol.md");
    for said in [
        format!("| {} s after its last TCP segment", PEER_TIMEOUT.secs()),
        format!("a quiet connection is probed every {} s", KEEP_ALIVE.secs()),
        format!("holds a slot {} s at most", SYN_TIMEOUT.secs()),
        format!("waits {} s at most to be accepted", BACKLOG_WAIT_MS / 1000),
    ] {
        assert!(text.contains(&said), "docs/protocol.md says {said:?}");
    }
}
