#!/usr/bin/env bash
# Runs every test: the cargo suite (units, simulator, interop with Debian's fastboot and
# libsparse tools), then the USB tests under umockdev. Tools a test needs but that are not
# installed make it print "skipped: ..." — unless CI=true, where they make it fail.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked
scripts/run-usb-tests.sh
