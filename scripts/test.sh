#!/usr/bin/env bash
# Runs every test: the cargo suite (units, simulator, interop with Debian's fastboot and
# libsparse tools, real Xiaomi scripts, packages, full flashes), the USB tests under umockdev,
# and the interop tier against U-Boot's fastboot in QEMU. Tools a test needs but that are not
# installed make it print "skipped: ..." — unless CI=true, where they make it fail.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked
scripts/run-usb-tests.sh
scripts/run-rescue-usb-tests.sh
cargo build --locked --quiet --bin mi-flash
MI_FLASH="$PWD/target/debug/mi-flash" tests/interop/uboot/run.sh
# The fuzz targets (docs/fuzzing.md) are run by hand; here they must at least still compile.
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins
