//! Puts `user.ld` where the linker finds it: a program links with `-Tuser.ld`.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy("user.ld", out.join("user.ld")).expect("copy user.ld");
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rerun-if-changed=user.ld");
}
