//! The marker strings of the ladder, generated from `selftest/markers.toml`.
//!
//! Each constant is a [`Marker`]: the console prefix that owns it and the message
//! after `"<owner>: "`. Tasks print `message` through their endpoint (the kernel adds
//! the prefix); the kernel prints its own. Nothing else spells a marker, so the image
//! and the harness read the same file.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;

/// One marker of the ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The console prefix of the task that prints it (`KERNEL`, `rngd`, `SELFTEST`).
    pub owner: &'static str,
    /// The text after `"<owner>: "`, with at most one `{placeholder}`.
    pub message: &'static str,
}

impl Marker {
    /// The message with its placeholder replaced by `value` (unchanged when the
    /// marker has none).
    pub fn render(&self, value: &str) -> String {
        match (self.message.find('{'), self.message.find('}')) {
            (Some(open), Some(close)) if open < close => {
                let mut out = String::from(&self.message[..open]);
                out.push_str(value);
                out.push_str(&self.message[close + 1..]);
                out
            }
            _ => String::from(self.message),
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/markers.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_markers_render() {
        assert_eq!(KERNEL_PROVIDER.owner, "KERNEL");
        assert_eq!(
            KERNEL_PROVIDER.render("dalek+chacha"),
            "provider dalek+chacha"
        );
        assert_eq!(LOGD_READY.render("ignored"), "ready");
        assert_eq!(SELFTEST_ALL_PASSED.owner, "SELFTEST");
    }
}
