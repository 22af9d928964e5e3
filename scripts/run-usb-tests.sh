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
#   MI_FLASH_SIM_PROFILE  simulator profile for the fake phone (default tests/usb/fake-phone.toml)
#   MI_FLASH_USB_TEST_PRODUCT  its `getvar product` (default lavender with the default profile)
#   MI_FLASH_USB_TEST_PARTITION  partition the tests flash (default boot; needs a profile
#                         without A/B slots, or name a slot, e.g. boot_a)
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
else
    export MI_FLASH_USB_TEST_PRODUCT="${MI_FLASH_USB_TEST_PRODUCT:-lavender}"
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

# The command line on the fake phone: listing, a getvar and a 3 MiB flash, all over USB.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
on_phone() {
    MI_FLASH_SIM_STORE="$work/store" timeout "$LIMIT" "$PYTHON" "$FAKE" -- "$MI_FLASH_BIN" "$@"
}
fail() {
    echo "run-usb-tests: $*" >&2
    exit 1
}
serial=3c1a7f2e   # the fake phone's USB serial and its profile's serialno

echo "== mi-flash devices"
out=$(on_phone devices)
echo "$out"
grep -q "$serial" <<<"$out" || fail "\`mi-flash devices\` did not list the fake phone ($serial)"
grep -q "usb" <<<"$out" || fail "\`mi-flash devices\` did not say the phone is on USB"
if [ -n "${MI_FLASH_USB_TEST_PRODUCT:-}" ]; then
    grep -q "$MI_FLASH_USB_TEST_PRODUCT" <<<"$out" || fail "\`mi-flash devices\` did not show the product $MI_FLASH_USB_TEST_PRODUCT"

    echo "== mi-flash -s usb:$serial getvar product"
    out=$(on_phone -s "usb:$serial" getvar product)
    echo "$out"
    grep -q "$MI_FLASH_USB_TEST_PRODUCT" <<<"$out" || fail "getvar product over USB printed $out"
fi

partition=${MI_FLASH_USB_TEST_PARTITION:-boot}
echo "== mi-flash -s usb:$serial flash $partition (3 MiB)"
head -c $((3 * 1024 * 1024 + 512)) /dev/urandom > "$work/image.img"
on_phone -s "usb:$serial" flash "$partition" "$work/image.img"
cmp "$work/image.img" "$work/store/partitions/$partition.img" \
    || fail "the simulator's partitions/$partition.img differs from the image flashed over USB"
echo "run-usb-tests: all USB tests passed"
