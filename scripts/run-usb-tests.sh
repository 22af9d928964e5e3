#!/usr/bin/env bash
# Runs mi-flash's USB tests through the real rusb -> libusb -> usbdevfs path, against a fake
# phone: umockdev plus tests/usb/fake_device.py, which bridges every bulk transfer to
# `mi-flash simulate`. No phone and no kernel USB support needed.
#
#   scripts/run-usb-tests.sh
#
# Needs the Debian packages umockdev, gir1.2-umockdev-1.0 and python3-gi (and /usr/bin/python3,
# Debian's, which has `gi`). When they are missing the script skips, except with CI=true, where
# it fails. Environment:
#   MI_FLASH_BIN          mi-flash binary to use (default: build target/debug/mi-flash)
#   MI_FLASH_SIM_PROFILE  simulator profile for the fake phone (optional)
#   CARGO_TEST_ARGS       extra arguments for the test binary (e.g. a test name filter)
#
# cargo itself never runs under umockdev's preload (it hangs there); cargo's target runner
# wraps only the built test binary of the one USB test target.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=/usr/bin/python3
FAKE=tests/usb/fake_device.py
LIMIT=300   # seconds for each run under the fake phone; libusb busy-waits there

missing=()
command -v umockdev-run >/dev/null 2>&1 || missing+=(umockdev)
if [ ! -x "$PYTHON" ]; then
    missing+=("python3 (/usr/bin/python3)")
elif ! "$PYTHON" -c 'import gi; gi.require_version("UMockdev", "1.0"); from gi.repository import UMockdev' >/dev/null 2>&1; then
    missing+=(python3-gi gir1.2-umockdev-1.0)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "run-usb-tests: missing ${missing[*]}: apt-get install -y umockdev gir1.2-umockdev-1.0 python3-gi" >&2
        exit 1
    fi
    echo "skipped: ${missing[*]} not installed (apt-get install umockdev gir1.2-umockdev-1.0 python3-gi)"
    exit 0
fi

if [ -z "${MI_FLASH_BIN:-}" ]; then
    cargo build --quiet --bin mi-flash
    MI_FLASH_BIN="$PWD/target/debug/mi-flash"
fi
export MI_FLASH_BIN
if [ -n "${MI_FLASH_SIM_PROFILE:-}" ]; then
    export MI_FLASH_SIM_PROFILE
fi
export MI_FLASH_REQUIRE_UMOCKDEV=1

triple=$(rustc -vV | sed -n 's/^host: //p')
runner_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUNNER"
# Build first, outside the runner, so a compile error is reported as such.
cargo test --quiet --test usb_umockdev --no-run

run_tests() {
    # shellcheck disable=SC2086
    env "$runner_var=$PYTHON $FAKE" timeout "$LIMIT" \
        cargo test --quiet --test usb_umockdev -- --test-threads=1 ${CARGO_TEST_ARGS:-}
}

echo "== USB transport tests (serial and product from sysfs, as on Linux)"
run_tests
echo "== USB transport tests (strings from the device's descriptors, as on macOS/Windows)"
FAKE_USB_NO_SYSFS_STRINGS=1 run_tests

echo "== mi-flash devices"
serial=usbtest42
out=$(FAKE_USB_SERIAL=$serial timeout "$LIMIT" "$PYTHON" "$FAKE" -- "$MI_FLASH_BIN" devices)
echo "$out"
if ! grep -q "$serial" <<<"$out"; then
    echo "run-usb-tests: \`mi-flash devices\` did not list the fake phone's serial $serial" >&2
    exit 1
fi
if ! grep -qi "android\|18d1:d00d" <<<"$out"; then
    echo "run-usb-tests: \`mi-flash devices\` did not show the product or USB ID of the fake phone" >&2
    exit 1
fi
echo "run-usb-tests: all USB tests passed"
