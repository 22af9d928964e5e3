#!/usr/bin/env bash
# Runs mi-flash's USB tests through the real rusb -> libusb -> usbdevfs path, against a fake
# phone: umockdev plus tests/usb/fake_device.py, which bridges every bulk transfer to
# `mi-flash simulate`. No phone and no kernel USB support needed. Last, a whole sample ROM is
# flashed over USB (`flash --rom`, fake phone profile tests/usb/fake-moonstone.toml) and the
# simulator's partitions are compared with the package's images.
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

# A whole ROM over USB: the sample package, with a split sparse super, on a fake moonstone.
echo "== mi-flash -s usb:$serial flash --rom <sample package> --yes"
sample=$("$MI_FLASH_BIN" sample-rom "$work/sample" --super-mib 4 --max-download-size 1M)
mkdir -p "$work/sample-x"
tar -xzf "$sample" -C "$work/sample-x"
root=$(dirname "$(find "$work/sample-x" -name flash_all.sh | head -n 1)")
"$MI_FLASH_BIN" plan --rom "$sample" --json > "$work/plan.json"
# flash --rom on the fake moonstone over USB; the store and the journal folder are arguments.
rom_on_phone() {
    local store=$1 journal=$2
    shift 2
    MI_FLASH_SIM_PROFILE=tests/usb/fake-moonstone.toml MI_FLASH_SIM_STORE="$store" timeout "$LIMIT" \
        "$PYTHON" "$FAKE" -- "$MI_FLASH_BIN" -s "usb:$serial" flash --rom "$sample" --yes --journal-dir "$journal" "$@"
}
out=$(rom_on_phone "$work/rom-store" "$work/journal") || fail "flash --rom over USB failed: $out"
echo "$out" | tail -n 3
grep -q "Sending sparse 'super' in 5 pieces" <<<"$out" || fail "super was not sent in pieces over USB"
grep -q "^Finished: 26 steps" <<<"$out" || fail "flash --rom over USB did not finish all 26 steps"
# Every partition the plan writes holds its image (sparse images expanded), as in
# tests/flash_rom_e2e.rs.
check_store() {
"$PYTHON" - "$work/plan.json" "$root" "$1" <<'EOF'
import json, os, re, struct, sys

plan, root, store = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
phone = {"crc": "1"}  # tests/usb/fake-moonstone.toml

def expand(data):
    if len(data) < 28 or struct.unpack_from("<I", data)[0] != 0xED26FF3A:
        return data
    _, _, _, file_hdr, chunk_hdr, bs, blocks, chunks, _ = struct.unpack_from("<IHHHHIIII", data)
    out, off, pos = bytearray(bs * blocks), file_hdr, 0
    for _ in range(chunks):
        kind, _, count, total = struct.unpack_from("<HHII", data, off)
        body, n = data[off + chunk_hdr:off + total], count * bs
        if kind == 0xCAC1:
            out[pos:pos + n] = body
        elif kind == 0xCAC2:
            out[pos:pos + n] = body[:4] * (n // 4)
        pos, off = pos + n, off + total
    return bytes(out)

want = {}
for step in plan["steps"]:
    when = step.get("when")
    if when and (re.search(when["matches"], f"{when['var']}: {phone.get(when['var'], '')}") is None) != when.get("negate", False):
        continue
    if step["op"] in ("flash", "erase"):
        p = step["partition"]
        targets = [p[:-3] + "_a", p[:-3] + "_b"] if p.endswith("_ab") else [p]
        for t in targets:
            want[t] = step.get("image") if step["op"] == "flash" else None
bad = 0
for target, image in sorted(want.items()):
    got = open(os.path.join(store, "partitions", target + ".img"), "rb").read()
    expected = expand(open(os.path.join(root, image), "rb").read()) if image else b""
    if got != expected:
        print(f"partition {target}: {len(got)} bytes, differs from {image} ({len(expected)} bytes expanded)")
        bad += 1
print(f"{len(want) - bad} of {len(want)} partitions hold their images")
if len(want) < 10:
    print(f"only {len(want)} partitions to compare: the plan was not read as it should be")
    sys.exit(1)
sys.exit(1 if bad else 0)
EOF
}
check_store "$work/rom-store" || fail "the simulator's store differs from the sample package flashed over USB"

# The USB fault matrix (docs/reliability.md): a STALL, the phone dropping off the bus, an
# overflow and a phone that stops answering, each while a command runs (erase:metadata, step
# 23), during a download's data phase (super's third piece, step 21: data transfers 1-2 are
# the CRC lists, 3-17 the raw images, 18-22 super's pieces) and while waiting for a flash's
# result (flash:cust, step 22). Each must stop naming the step and partition, exit non-zero,
# claim no success, leave the journal at that step, and `--resume` must finish the phone
# byte-identical. Failed downloads are retried by default: those cases fail with --retries 0
# and then, on a fresh phone, finish with the default retries.
usb_fault_case() {
    local name=$1 fault=$2 step=$3 partition=$4 says=$5 retry=$6
    shift 6
    local dir="$work/fault-$name"
    mkdir -p "$dir"
    echo "== USB fault $fault (step $step, $partition)"
    local opts=("$@")
    [ "$retry" = yes ] && opts+=(--retries 0)
    local out rc=0
    out=$(FAKE_USB_FAULT="$fault" rom_on_phone "$dir/store" "$dir/journal" "${opts[@]}" 2>&1) || rc=$?
    [ "$rc" -ne 0 ] || fail "[$fault] flash --rom exited 0:
$out"
    grep -q "fault $fault fires" <<<"$out" || fail "[$fault] the fault did not fire:
$out"
    grep -q "FAILED at step $step ($partition)" <<<"$out" || fail "[$fault] the failure does not name step $step ($partition):
$out"
    grep -qi -- "$says" <<<"$out" || fail "[$fault] the failure does not say \"$says\":
$out"
    grep -q -- "--resume" <<<"$out" || fail "[$fault] the user is not told about --resume:
$out"
    if grep -Eq "^Finished|^Done\.|could not be read|reconnecting to send it again" <<<"$out"; then
        fail "[$fault] a failed run claimed success, blamed the package or retried:
$out"
    fi
    grep -q "\"interrupted\": $step," "$dir"/journal/*.json || fail "[$fault] the journal does not stop at step $step: $(cat "$dir"/journal/*.json)"
    out=$(rom_on_phone "$dir/store" "$dir/journal" --resume 2>&1) || fail "[$fault] --resume failed:
$out"
    grep -q "resuming at step $step" <<<"$out" || fail "[$fault] --resume did not continue at step $step:
$out"
    check_store "$dir/store" >/dev/null || fail "[$fault] the phone differs from the package after --resume"
    if [ "$retry" = yes ]; then
        out=$(FAKE_USB_FAULT="$fault" rom_on_phone "$dir/store-retry" "$dir/journal-retry" "$@" 2>&1) \
            || fail "[$fault] flash --rom with retries failed:
$out"
        grep -q "retry 1 of 2" <<<"$out" || fail "[$fault] the retry is not reported:
$out"
        check_store "$dir/store-retry" >/dev/null || fail "[$fault] the phone differs from the package after a retry"
    fi
}
short=(--timeout 2 --write-timeout 2)
usb_fault_case cmd-stall    "stall-out-on=erase:metadata" 23 metadata "stalled" no
usb_fault_case cmd-unplug   "unplug-on=erase:metadata"    23 metadata "connection to the device was closed" no
usb_fault_case cmd-overflow "overflow-on=erase:metadata"  23 metadata "overflow" no
usb_fault_case cmd-hang     "hang-on=erase:metadata"      23 metadata "no answer from the device within 2s" no "${short[@]}"
usb_fault_case dl-stall     "stall-out-on=data#20"        21 super "stalled" yes
usb_fault_case dl-unplug    "unplug-on=data#20"           21 super "connection to the device was closed" yes
usb_fault_case dl-overflow  "overflow-on=data#20"         21 super "overflow" yes
usb_fault_case dl-hang      "hang-on=data#20"             21 super "no answer from the device within 2s" yes "${short[@]}"
usb_fault_case fl-stall     "stall-in-on=flash:cust"      22 cust "stalled" no
usb_fault_case fl-unplug    "unplug-on=flash:cust"        22 cust "connection to the device was closed" no
usb_fault_case fl-overflow  "overflow-on=flash:cust"      22 cust "overflow" no
usb_fault_case fl-hang      "hang-on=flash:cust"          22 cust "no answer from the device within 2s" no "${short[@]}"
echo "run-usb-tests: all USB tests passed"

