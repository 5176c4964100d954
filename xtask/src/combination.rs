//! The provider combinations and how to build each.
//!
//! The axes and their backends are data: they are read from `providers/select`'s
//! `Cargo.toml`, whose features are named `<axis>-<backend>` (`sig-dalek`,
//! `kx-compact`, `aead-chacha`, `hash-sha256`, ...). A backend added there is in
//! every command's matrix with no line here.
//!
//! Names: `<sig>[/<kx>]+<aead>[+<hash>]`, the X25519 backend written only when it
//! differs from the Ed25519 one and the hash only when it is not BLAKE2s, as the image
//! prints it (`provider-select`'s `CombinationName`). The four classic names
//! (`dalek+chacha`, `dalek+aes-gcm`, `compact+chacha`, `compact+aes-gcm`) mean one
//! curve crate for both and BLAKE2s, as they always did.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use crate::steps::workspace_root;

/// One backend per axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Combination {
    /// Ed25519: `dalek` or `compact`.
    pub sig: &'static str,
    /// X25519: `dalek` or `compact`.
    pub kx: &'static str,
    /// `chacha` or `aes-gcm`.
    pub aead: &'static str,
    /// `blake2s` or `sha256`.
    pub hash: &'static str,
}

/// The axes in the order of a combination's fields, with the backend each one's
/// short names leave out.
const AXES: [&str; 4] = ["sig", "kx", "aead", "hash"];
/// The four original combinations (see [`Combination::is_classic`]).
const CLASSIC: [&str; 4] = [
    "dalek+chacha",
    "dalek+aes-gcm",
    "compact+chacha",
    "compact+aes-gcm",
];
/// The hash a name leaves out.
const DEFAULT_HASH: &str = "blake2s";

/// Each axis's backends, in the order of provider-select's `Cargo.toml`.
fn backends() -> &'static BTreeMap<&'static str, Vec<&'static str>> {
    static BACKENDS: OnceLock<BTreeMap<&'static str, Vec<&'static str>>> = OnceLock::new();
    BACKENDS.get_or_init(|| {
        let path = workspace_root().join("providers/select/Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        backends_of(&text).unwrap_or_else(|why| panic!("{}: {why}", path.display()))
    })
}

/// Parses the `<axis>-<backend>` features of a `Cargo.toml`.
fn backends_of(text: &str) -> Result<BTreeMap<&'static str, Vec<&'static str>>, String> {
    let manifest: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let features = manifest
        .get("features")
        .and_then(toml::Value::as_table)
        .ok_or("no [features]")?;
    let mut out: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    // toml::Table keeps keys sorted; the order of the file is the precedence order,
    // so read the keys in the order the text has them.
    let mut keyed: Vec<(usize, &String)> = features
        .keys()
        .map(|k| (text.find(&format!("\n{k} =")).unwrap_or(usize::MAX), k))
        .collect();
    keyed.sort();
    for (_, feature) in keyed {
        let Some((axis, backend)) = feature.split_once('-') else {
            continue;
        };
        if let Some(axis) = AXES.iter().find(|a| **a == axis) {
            out.entry(axis)
                .or_default()
                .push(Box::leak(backend.to_owned().into_boxed_str()));
        }
    }
    for axis in AXES {
        if out.get(axis).is_none_or(Vec::is_empty) {
            return Err(format!("no `{axis}-*` feature"));
        }
    }
    Ok(out)
}

impl Combination {
    /// Every combination: each backend of each axis with each of the others.
    pub fn all() -> &'static [Combination] {
        static ALL: OnceLock<Vec<Combination>> = OnceLock::new();
        ALL.get_or_init(|| {
            let b = backends();
            let mut all = Vec::new();
            // The classic four first, then the rest, each in the order of the file.
            for sig in &b["sig"] {
                for kx in &b["kx"] {
                    for aead in &b["aead"] {
                        for hash in &b["hash"] {
                            all.push(Combination {
                                sig,
                                kx,
                                aead,
                                hash,
                            });
                        }
                    }
                }
            }
            all.sort_by_key(|c| !c.is_classic());
            all
        })
    }

    /// The four combinations of one curve crate for both curves and BLAKE2s, the
    /// names the project started with: the scenarios run on these.
    pub fn classic() -> &'static [Combination] {
        static CLASSIC: OnceLock<Vec<Combination>> = OnceLock::new();
        CLASSIC.get_or_init(|| {
            Self::all()
                .iter()
                .copied()
                .filter(Combination::is_classic)
                .collect()
        })
    }

    /// One of the four original combinations: one curve crate for both curves (dalek
    /// or compact), ChaCha20-Poly1305 or AES-256-GCM by RustCrypto, and BLAKE2s. The
    /// scenarios about services, not backends, run on these (a list by name: backends
    /// added later join the matrix, not this set).
    pub fn is_classic(&self) -> bool {
        CLASSIC.contains(&self.to_string().as_str())
    }

    /// A covering set for tables with one column per combination: the classic four,
    /// then for each backend none of them has, the first classic combination with that
    /// backend in its place (every backend of every axis appears at least once).
    pub fn covering() -> Vec<Combination> {
        let mut out: Vec<Combination> = Self::classic().to_vec();
        let first = out[0];
        for (axis, backends) in backends() {
            for backend in backends {
                let present = out.iter().any(|c| c.axis(axis) == *backend);
                if !present {
                    let mut c = first;
                    c.set_axis(axis, backend);
                    out.push(c);
                }
            }
        }
        out
    }

    /// The axes whose backend declares itself formally verified (provider-select's
    /// `formally_verified`), such as `Ed25519, X25519, AEAD`, or `none`.
    pub fn verified(&self) -> String {
        let names = [
            ("sig", "Ed25519"),
            ("kx", "X25519"),
            ("aead", "AEAD"),
            ("hash", "hash"),
        ];
        let verified: Vec<&str> = names
            .iter()
            .filter(|(axis, _)| {
                provider_select::formally_verified(&format!("{axis}-{}", self.axis(axis)))
                    .unwrap_or(false)
            })
            .map(|(_, name)| *name)
            .collect();
        if verified.is_empty() {
            "none".into()
        } else {
            verified.join(", ")
        }
    }

    fn axis(&self, axis: &str) -> &'static str {
        match axis {
            "sig" => self.sig,
            "kx" => self.kx,
            "aead" => self.aead,
            _ => self.hash,
        }
    }

    fn set_axis(&mut self, axis: &str, backend: &'static str) {
        match axis {
            "sig" => self.sig = backend,
            "kx" => self.kx = backend,
            "aead" => self.aead = backend,
            _ => self.hash = backend,
        }
    }

    /// The combination named `name`, in its short form or with every part written
    /// (`dalek/dalek+chacha+blake2s` is `dalek+chacha`).
    pub fn parse(name: &str) -> Option<Combination> {
        let mut parts = name.split('+');
        let curves = parts.next()?;
        let aead = parts.next()?;
        let hash = parts.next().unwrap_or(DEFAULT_HASH);
        if parts.next().is_some() {
            return None;
        }
        let (sig, kx) = curves.split_once('/').unwrap_or((curves, curves));
        Self::all()
            .iter()
            .find(|c| c.sig == sig && c.kx == kx && c.aead == aead && c.hash == hash)
            .copied()
    }

    /// `all` (every combination), `classic` (the four), or one combination's name;
    /// nothing for an unknown name.
    pub fn select(name: &str) -> Vec<Combination> {
        match name {
            "all" => Self::all().to_vec(),
            "classic" => Self::classic().to_vec(),
            name => Self::parse(name).into_iter().collect(),
        }
    }

    /// The name as a single path component (`dalek/compact+chacha` is
    /// `dalek_compact+chacha`).
    pub fn dir_name(&self) -> String {
        self.to_string().replace('/', "_")
    }

    /// The cargo features of this combination's user programs: provider-select's
    /// feature per axis, passed through (`user-programs` forwards none). The kernels
    /// take none: they are the same for every combination.
    pub fn features(&self) -> String {
        format!(
            "provider-select/sig-{},provider-select/kx-{},provider-select/aead-{},provider-select/hash-{}",
            self.sig, self.kx, self.aead, self.hash
        )
    }
}

impl fmt::Display for Combination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sig)?;
        if self.kx != self.sig {
            write!(f, "/{}", self.kx)?;
        }
        write!(f, "+{}", self.aead)?;
        if self.hash != DEFAULT_HASH {
            write!(f, "+{}", self.hash)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_comes_from_provider_select_and_the_classic_names_keep_their_meaning() {
        let all = Combination::all();
        let b = backends();
        assert_eq!(
            all.len(),
            b.values().map(Vec::len).product::<usize>(),
            "{b:?}"
        );
        let classic: Vec<String> = Combination::classic()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            classic,
            [
                "dalek+chacha",
                "dalek+aes-gcm",
                "compact+chacha",
                "compact+aes-gcm"
            ]
        );
        assert_eq!(all[..4], *Combination::classic());
        let dc = Combination::parse("dalek+chacha").expect("classic name");
        assert_eq!(
            (dc.sig, dc.kx, dc.aead, dc.hash),
            ("dalek", "dalek", "chacha", "blake2s")
        );
        assert_eq!(Combination::parse("dalek/dalek+chacha+blake2s"), Some(dc));
        let split = Combination::parse("compact/dalek+aes-gcm+sha256").expect("split name");
        assert_eq!(split.to_string(), "compact/dalek+aes-gcm+sha256");
        assert_eq!(
            split.features(),
            "provider-select/sig-compact,provider-select/kx-dalek,provider-select/aead-aes-gcm,provider-select/hash-sha256"
        );
        assert_eq!(Combination::parse("dalek+chacha+md5"), None);
        assert_eq!(Combination::parse("dalek"), None);
        for c in all {
            assert_eq!(Combination::parse(&c.to_string()), Some(*c), "{c}");
        }
        assert_eq!(
            Combination::parse("dalek+chacha").unwrap().verified(),
            "none"
        );
        assert_eq!(
            Combination::parse("libcrux+libcrux-chacha")
                .unwrap()
                .verified(),
            "Ed25519, X25519, AEAD"
        );
        assert_eq!(
            Combination::parse("compact/libcrux+aes-gcm+sha256")
                .unwrap()
                .verified(),
            "X25519"
        );
        let covering = Combination::covering();
        assert_eq!(covering[..4], *Combination::classic());
        for (axis, backends) in b {
            for backend in backends {
                assert!(
                    covering.iter().any(|c| c.axis(axis) == *backend),
                    "{axis} {backend} not in {covering:?}"
                );
            }
        }
    }
}
