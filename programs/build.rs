//! Links the programs in the program window with user-rt's script.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("riscv64") {
        println!("cargo::rustc-link-arg-bins=-Tuser.ld");
    }
}
