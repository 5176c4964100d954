#!/usr/bin/env bash
# Seed command kept working: boots the image in QEMU and checks the marker ladder.
# Honours RUN_PHASE, RUN_TIMEOUT, RUN_UNTIL_MARKER, PROVIDER, RNG_FILE, NO_RNG,
# STATE_DIR and NO_OTP;
# extra arguments go to `cargo xtask test-os`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo xtask test-os "$@"
