# Thin wrappers over `cargo xtask`; no step needs `just`.
# The QEMU recipes honour RUN_PHASE, RUN_TIMEOUT, RUN_UNTIL_MARKER, PROVIDER,
# RNG_FILE, NO_RNG, STATE_DIR and NO_OTP, e.g.
# `RUN_UNTIL_MARKER=1 RUN_TIMEOUT=190s just test-os`.

# Build the default image and boot it in QEMU.
run:
    cargo xtask run

# Everything CI checks.
test:
    cargo xtask test

# Boot the image(s) in QEMU and check the marker ladder.
test-os:
    cargo xtask test-os

# Benchmark every provider combination (host and guest); `just bench --quick`.
bench *args:
    cargo xtask bench {{args}}
