# Thin wrappers over `cargo xtask`; no step needs `just`.

# Build the default image and boot it in QEMU.
run:
    cargo xtask run

# Everything CI checks.
test:
    cargo xtask test
