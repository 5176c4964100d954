//! The kernel command line as the console may show it.
//!
//! The kernel prints its command line at boot, and a console log is kept by whoever
//! runs the machine. One word holds a secret: `pair=A.B.C.D:PORT:CODE` gives this
//! device another device's setup code (dsoftbusd pairs with it,
//! `docs/protocol.md` section 11). [`Redacted`] prints that word's address and
//! withholds the code, so the console never carries it.

use core::fmt;

/// The command line with the setup code of `pair=` withheld.
pub struct Redacted<'a>(pub &'a str);

/// What stands for a withheld value.
pub const WITHHELD: &str = "(withheld)";

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, word) in self.0.split_whitespace().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match word.strip_prefix("pair=") {
                Some(value) => match address(value) {
                    Some((ip, port)) => write!(f, "pair={ip}:{port}:{WITHHELD}")?,
                    None => write!(f, "pair={WITHHELD}")?,
                },
                None => f.write_str(word)?,
            }
        }
        Ok(())
    }
}

/// The address of a `pair=` value that begins `A.B.C.D:PORT:` (an IPv4 address and a
/// port that parse as such), shown apart from all that follows; `None` for any other
/// shape, which is then withheld whole. (Splitting at the last `:` showed the code of
/// `pair=10.0.2.15:7411:2020-2021:`, a word with a stray colon.)
fn address(value: &str) -> Option<(core::net::Ipv4Addr, u16)> {
    let (ip, rest) = value.split_once(':')?;
    let (port, _code) = rest.split_once(':')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn the_setup_code_of_pair_is_withheld_and_everything_else_kept() {
        let line = "net.ip=10.0.2.16/24 net.gw=none pair=10.0.2.15:7411:2020-2021 serve=60";
        assert_eq!(
            format!("{}", Redacted(line)),
            "net.ip=10.0.2.16/24 net.gw=none pair=10.0.2.15:7411:(withheld) serve=60"
        );
        for word in [
            "pair=20202021",
            "pair=2020-2021",
            "pair=x:20202021",
            "pair=10.0.2.15:7411:2020-2021:",
            "pair=10.0.2.15:7411:20202021:x",
            "pair=10.0.2.15:20202021",
            "pair=2020:2021:x",
            "pair=10.0.2.15:7411:",
        ] {
            let shown = format!("{}", Redacted(word));
            assert!(!shown.contains("2020"), "{word} -> {shown}");
        }
        assert_eq!(
            format!("{}", Redacted("pair=10.0.2.15:7411:2020-2021:")),
            "pair=10.0.2.15:7411:(withheld)"
        );
        assert_eq!(format!("{}", Redacted("bench")), "bench");
    }
}
