#!/usr/bin/env bash
# Runs the rescue helper's USB tests through the real rusb -> libusb -> usbdevfs path under
# umockdev: `mi-flash devices` for every phone mode (tests/usb/modes/*.umockdev), and
# `mi-flash recovery` against a fake Mi Recovery phone (tests/usb/fake_adb_device.py, which
# bridges to `mi-flash simulate --recovery`). No phone and no kernel USB support needed.
#
#   scripts/run-rescue-usb-tests.sh
#
# Needs the Debian packages umockdev, gir1.2-umockdev-1.0 and python3-gi (and Debian's
# /usr/bin/python3, which has `gi`). When they are missing the script skips, except with
# CI=true, where it fails. The tests wrap the mi-flash binary, never cargo, so cargo runs
# normally; they take one emulated phone at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=/usr/bin/python3
missing=()
command -v umockdev-run >/dev/null 2>&1 || missing+=(umockdev)
if [ ! -x "$PYTHON" ]; then
    missing+=("python3 (/usr/bin/python3)")
elif ! "$PYTHON" -c 'import gi; gi.require_version("UMockdev", "1.0"); from gi.repository import UMockdev' >/dev/null 2>&1; then
    missing+=(python3-gi gir1.2-umockdev-1.0)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "run-rescue-usb-tests: missing ${missing[*]}: apt-get install -y umockdev gir1.2-umockdev-1.0 python3-gi" >&2
        exit 1
    fi
    echo "skipped: ${missing[*]} not installed (apt-get install umockdev gir1.2-umockdev-1.0 python3-gi)"
    exit 0
fi

# The tools are there: a test that would skip must fail instead.
CI=true timeout 600 cargo test --quiet --test rescue_usb -- --test-threads=1
echo "run-rescue-usb-tests: all rescue USB tests passed"
