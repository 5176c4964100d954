//! `docs/protocol.md` sections 7 and 8 against the code they describe: every audit
//! reason the daemon records is in the document's table with its number, each console
//! word is one word, and the idle rule the document states is the daemon's.

use dsoftbusd::sessions::{LIMITS, Refusal};

fn document() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md")
}

fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &text[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn every_reason_the_daemon_records_is_in_the_documents_table() {
    let text = document();
    let table = section(&text, "## 8. What a device records");
    let mut codes: Vec<u16> = Refusal::ALL.iter().map(|r| *r as u16).collect();
    assert_eq!(
        codes,
        (1..=31).collect::<Vec<u16>>(),
        "codes are 1, 2, ... in order"
    );
    codes.retain(|code| !table.contains(&format!("| {code} | ")));
    assert!(
        codes.is_empty(),
        "reasons missing from section 8: {codes:?}"
    );
    let mut words: Vec<&str> = Refusal::ALL.iter().map(|r| r.word()).collect();
    assert!(words.iter().all(|w| !w.is_empty() && !w.contains(' ')));
    words.sort_unstable();
    words.dedup();
    assert_eq!(
        words.len(),
        Refusal::ALL.len(),
        "each reason has its own word"
    );
    for refusal in [
        Refusal::Closed,
        Refusal::IdleTimeout,
        Refusal::Transport,
        Refusal::SlowReader,
        Refusal::ConnectionClosed,
    ] {
        assert!(
            table.contains(&format!("`{}` ({})", refusal.word(), refusal as u16)),
            "section 8 names the console word of {refusal:?}"
        );
    }
}

#[test]
fn the_documents_limits_are_the_daemons() {
    let text = document();
    let limits = section(&text, "## 7. Errors, refusals and limits");
    let idle = format!(
        "| idle session | {} s without a message",
        LIMITS.idle_ms / 1000
    );
    assert!(limits.contains(&idle), "section 7 says {idle:?}");
    let decrypts = format!(
        "| undecryptable transport messages | {} per session | closed on the {}th",
        LIMITS.failed_decrypts, LIMITS.failed_decrypts
    );
    assert!(limits.contains(&decrypts), "section 7 says {decrypts:?}");
    let deadline = format!("| handshake deadline | {} s", LIMITS.handshake_ms / 1000);
    assert!(limits.contains(&deadline), "section 7 says {deadline:?}");
    let half_open = format!(
        "| half-open handshakes | {} at once, {} per source",
        LIMITS.half_open, LIMITS.half_open_per_source
    );
    assert!(limits.contains(&half_open), "section 7 says {half_open:?}");
    let established = format!("| established sessions | {} |", LIMITS.established);
    assert!(
        limits.contains(&established),
        "section 7 says {established:?}"
    );
}
