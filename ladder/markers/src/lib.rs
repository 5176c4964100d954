//! The marker strings of the ladder, generated from `ladder/markers.toml`.
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
    /// The text after `"<owner>: "`, with `{placeholder}`s.
    pub message: &'static str,
}

impl Marker {
    /// The message with its placeholders replaced by `values`, in order (a
    /// placeholder without a value is left as it is; extra values are ignored).
    pub fn render(&self, values: &[&str]) -> String {
        alloc::format!("{}", self.rendered(values))
    }

    /// [`Marker::render`] without allocating: for a printer that must not touch the
    /// heap (the kernel's watchdog, which may interrupt a task inside the allocator).
    pub fn rendered<'a>(&'a self, values: &'a [&'a str]) -> Rendered<'a> {
        Rendered {
            message: self.message,
            values,
        }
    }
}

/// A marker's message with its values, written out as it is displayed.
pub struct Rendered<'a> {
    message: &'static str,
    values: &'a [&'a str],
}

impl core::fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut rest = self.message;
        let mut values = self.values.iter();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|i| open + i) else {
                break;
            };
            f.write_str(&rest[..open])?;
            match values.next() {
                Some(value) => f.write_str(value)?,
                None => f.write_str(&rest[open..=close])?,
            }
            rest = &rest[close + 1..];
        }
        f.write_str(rest)
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
            KERNEL_PROVIDER.render(&["dalek+chacha"]),
            "provider dalek+chacha"
        );
        assert_eq!(LOGD_READY.render(&["ignored"]), "ready");
        let two = Marker {
            owner: "x",
            message: "sealed with {a}, image has {b}",
        };
        assert_eq!(two.render(&["1", "2"]), "sealed with 1, image has 2");
        assert_eq!(two.render(&["1"]), "sealed with 1, image has {b}");
        assert_eq!(SELFTEST_ALL_PASSED.owner, "SELFTEST");
    }
}
