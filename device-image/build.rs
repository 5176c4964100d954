//! Links the riscv64 image with riscv-rt's script and the kernel's memory layout.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("riscv64") {
        println!("cargo::rustc-link-arg-bins=-Tmemory.x");
        println!("cargo::rustc-link-arg-bins=-Tlink.x");
    }
}
