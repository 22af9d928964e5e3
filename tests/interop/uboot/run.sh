#!/usr/bin/env bash
# Interop tier: mi-flash against U-Boot's fastboot (a device-side implementation mi-flash did
# not write), over UDP, with U-Boot running in qemu-system-aarch64 on a 64 MiB GPT disk.
#
# What it does (docs/uboot-interop.md explains why):
#   1. installs the Debian packages it needs (as root; otherwise they must be there),
#   2. builds U-Boot with fastboot over UDP from Debian's source package (cached),
#   3. boots it in QEMU with user networking, forwarding a free 127.0.0.1 UDP port to 5554,
#   4. drives it with `mi-flash -s udp:127.0.0.1:PORT`: variables, raw and sparse flashes, a
#      sparse image split by a small --max-download-size, erase, refusals, a reboot; builds a
#      small Xiaomi-style fastboot package (.tgz) for this disk and checks that `flash --rom`
#      refuses it with a raised anti-rollback index and with another product (exit code 3),
#   5. stops QEMU and reads every partition back from the disk image, byte for byte (which also
#      shows the refused flashes wrote nothing),
#   6. boots again, flashes the package with `flash --rom` (its last step reboots the VM), and
#      reads every partition back again.
#
# Without CI=true a missing tool or a failed download makes it print "skipped: ..." and exit 0;
# with CI=true it fails instead. QEMU is killed on every exit path.
#
# Environment: MI_FLASH (a built mi-flash binary; default: cargo build), MI_FLASH_UBOOT_CACHE
# (where u-boot.bin is cached), KEEP=1 (keep the scratch directory for inspection).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$here/../../.." && pwd)"
started=$(date +%s)
ci=false
[ "${CI:-}" = true ] && ci=true

say() { echo "uboot-interop: $*" >&2; }
skip_or_fail() {
  if $ci; then
    say "FAILED: $* (CI=true, so this cannot be skipped)"
    exit 1
  fi
  echo "skipped: $*"
  exit 0
}

# ---- 1. tools --------------------------------------------------------------------------------
packages=(qemu-system-arm gcc-aarch64-linux-gnu bison flex bc make libssl-dev libgnutls28-dev
          device-tree-compiler fdisk android-sdk-libsparse-utils xz-utils python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 \
      || skip_or_fail "could not install ${missing[*]}"
  else
    skip_or_fail "${missing[*]} not installed (run as root to have them installed)"
  fi
fi
sfdisk=$(command -v sfdisk || echo /usr/sbin/sfdisk)
t_tools=$(date +%s)

# ---- 2. U-Boot and mi-flash --------------------------------------------------------------------
uboot=$("$here/build-uboot.sh") || skip_or_fail "U-Boot could not be fetched or built (see the messages above)"
t_uboot=$(date +%s)
if [ -z "${MI_FLASH:-}" ]; then
  (cd "$crate" && cargo build --quiet --bin mi-flash)
  MI_FLASH="$crate/target/debug/mi-flash"
fi
[ -x "$MI_FLASH" ] || { say "no mi-flash binary at $MI_FLASH"; exit 1; }

# ---- 3. disk, QEMU -------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/mi-flash-uboot.XXXXXX")
qemu_pid=""
stop_qemu() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$qemu_pid" 2>/dev/null || true
  fi
  qemu_pid=""
}
cleanup() {
  local rc=$?
  stop_qemu
  if [ $rc -ne 0 ] && [ -f "$work/console.log" ]; then
    say "U-Boot console (last 40 lines):"
    tail -n 40 "$work/console.log" >&2 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

disk="$work/disk.img"
truncate -s 64M "$disk"   # QEMU's sd-card wants a power-of-two size
# Xiaomi-like partition names; sizes in MiB.
printf 'label: gpt\nsize=8MiB, name=boot\nsize=4MiB, name=dtbo\nsize=1MiB, name=vbmeta\nsize=24MiB, name=system\nsize=8MiB, name=cust\nsize=4MiB, name=userdata\nname=misc\n' \
  | "$sfdisk" -q "$disk"
# start and size (bytes) of a partition, from the GPT
part() {
  "$sfdisk" -J "$disk" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
ss = t.get("sectorsize", 512)
for p in t["partitions"]:
    if p.get("name") == sys.argv[1]:
        print(p["start"] * ss, p["size"] * ss)
        break
else:
    sys.exit("no partition " + sys.argv[1])
' "$1"
}
read_part() { # NAME OUT
  local start size
  read -r start size < <(part "$1")
  dd if="$disk" of="$2" bs=64K iflag=skip_bytes,count_bytes skip="$start" count="$size" status=none
}
# userdata starts full of a pattern, so its erase is visible
read -r ud_start ud_size < <(part userdata)
python3 -c 'import sys; sys.stdout.buffer.write(b"\xa5\x5a" * (int(sys.argv[1]) // 2))' "$ud_size" \
  | dd of="$disk" bs=64K oflag=seek_bytes seek="$ud_start" conv=notrunc status=none

free_udp_port() {
  python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_qemu() {
  local tries
  for tries in 1 2 3; do
    port=$(free_udp_port)
    qemu-system-aarch64 -M virt -cpu cortex-a57 -m 1G -display none -monitor none \
      -serial "file:$work/console.log" -bios "$uboot" \
      -netdev "user,id=n0,hostfwd=udp:127.0.0.1:$port-:5554" -device virtio-net-pci,netdev=n0,romfile= \
      -device sdhci-pci -drive "if=none,file=$disk,format=raw,id=card0" -device sd-card,drive=card0 \
      </dev/null >"$work/qemu.out" 2>&1 &
    qemu_pid=$!
    sleep 0.3
    if kill -0 "$qemu_pid" 2>/dev/null; then return 0; fi
    # Another process took the port between our probe and QEMU's bind: try another.
    say "QEMU did not start (try $tries): $(cat "$work/qemu.out")"
    qemu_pid=""
  done
  say "QEMU would not start"
  return 1
}

target=""
mf() { "$MI_FLASH" -s "$target" "$@"; }
wait_fastboot() { # seconds
  local until=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$until" ]; do
    if "$MI_FLASH" -s "$target" --timeout 2 getvar version >/dev/null 2>&1; then return 0; fi
    kill -0 "$qemu_pid" 2>/dev/null || { say "QEMU exited: $(cat "$work/qemu.out")"; return 1; }
    sleep 0.2
  done
  say "U-Boot's fastboot did not answer on $target within $1 s"
  return 1
}

# Runs a U-Boot command through fastboot's `UCmd:` (i.MX's UUU extension, built in for this),
# which is how the tier changes U-Boot's variables at run time: U-Boot 2023.01 has no
# `oem run:`. mi-flash has no raw-command verb, so this is a few lines of fastboot over UDP
# (AOSP's socket_udp: query, init, then the command and an empty packet that fetches the answer).
ucmd() { # U-BOOT-COMMAND
  python3 - "$port" "$1" <<'PY'
import socket, struct, sys
port, command = int(sys.argv[1]), sys.argv[2].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
def exchange(kind, seq, data=b""):
    packet = struct.pack(">BBH", kind, 0, seq) + data
    for _ in range(20):
        s.sendto(packet, ("127.0.0.1", port))
        try:
            while True:
                reply = s.recvfrom(2048)[0]
                if reply[0] == 0:
                    sys.exit("U-Boot answered with an error packet: " + reply[4:].decode(errors="replace"))
                if len(reply) >= 4 and reply[0] == kind and struct.unpack(">H", reply[2:4])[0] == seq:
                    return reply[4:]
        except socket.timeout:
            continue
    sys.exit(f"no answer from U-Boot on UDP port {port}")
seq = struct.unpack(">H", exchange(1, 0)[:2])[0]
exchange(2, seq, struct.pack(">HH", 1, 1024))
exchange(3, (seq + 1) & 0xFFFF, b"UCmd:" + command)
answer = exchange(3, (seq + 2) & 0xFFFF).decode(errors="replace")
if not answer.startswith("OKAY"):
    sys.exit(f"UCmd:{command.decode()}: {answer}")
PY
}

start_qemu
target="udp:127.0.0.1:$port"
t_boot0=$(date +%s.%N)
wait_fastboot 60
t_boot1=$(date +%s.%N)
say "U-Boot answers on $target after $(python3 -c "print(f'{$t_boot1 - $t_boot0:.1f}')") s"

fail() { say "FAILED: $*"; exit 1; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: expected '$3', got '$2'"; }

# ---- 4. mi-flash against U-Boot ----------------------------------------------------------------------
expect_eq "getvar product" "$(mf getvar product)" "product: marble"
expect_eq "getvar anti" "$(mf getvar anti)" "anti: 1"
expect_eq "getvar serialno" "$(mf getvar serialno)" "serialno: mi-sim-0001"
# 16 hex digits, as U-Boot prints partition sizes
expect_eq "getvar partition-size:boot" "$(mf getvar partition-size:boot)" "partition-size:boot: 0x0000000000800000"
# An unknown variable is a refusal with U-Boot's words, and the device keeps answering.
if out=$(mf getvar nosuchvar 2>&1); then fail "getvar nosuchvar should fail: $out"; fi
grep -q "Variable not implemented" <<<"$out" || fail "getvar nosuchvar: $out"
# `getvar all` FAILs on U-Boot: info must fall back to single variables.
info=$(mf info) || fail "info: $info"
grep -q "Phone        marble" <<<"$info" || fail "info does not show the product: $info"
grep -q "Anti-rollback index 1" <<<"$info" || fail "info does not show anti: $info"
devices=$(mf devices --json) || fail "devices: $devices"
python3 - "$devices" <<'PY' || fail "devices --json: $devices"
import json, sys
d = json.loads(sys.argv[1])["devices"][0]
assert d["product"] == "marble" and d["anti"] == 1 and d["serial"] == "mi-sim-0001" and d["transport"] == "udp", d
PY

# images: deterministic pseudo-random data with zero runs (sparse-friendly)
python3 - "$work" <<'PY'
import os, random, sys
w = sys.argv[1]
def image(name, size, seed, holes=True):
    r = random.Random(seed)
    data = bytearray(r.randbytes(size))
    if holes:
        q = size // 8
        data[q:2 * q] = bytes(q)
        data[5 * q:6 * q] = b"\xde\xad\xbe\xef" * (q // 4)
    open(os.path.join(w, name), "wb").write(data)
image("boot.img", 6 * 1024 * 1024 + 12345, 1, holes=False)   # raw, not a block multiple
image("dtbo.img", 3 * 1024 * 1024, 2)
image("vbmeta.img", 8192, 3, holes=False)
image("system.raw", 20 * 1024 * 1024, 4)
image("cust.raw", 8 * 1024 * 1024, 5)
PY
img2simg "$work/system.raw" "$work/system.img"
img2simg "$work/cust.raw" "$work/cust.img"

t_flash0=$(date +%s.%N)
for p in boot dtbo vbmeta; do
  out=$(mf flash "$p" "$work/$p.img") || fail "flash $p: $out"
done
out=$(mf flash system "$work/system.img") || fail "flash system (sparse): $out"
# A sparse image split into pieces of at most 2 MiB, each its own download + flash.
out=$(mf flash cust "$work/cust.img" --max-download-size 2097152) || fail "flash cust (sparse, split at 2 MiB): $out"
grep -q "Sending sparse 'cust' 1/" <<<"$out" || fail "flash cust was not split: $out"
out=$(mf erase userdata) || fail "erase userdata: $out"
t_flash1=$(date +%s.%N)
# Refusals: a partition U-Boot does not have, and slots (U-Boot has none).
if out=$(mf flash nosuch "$work/vbmeta.img" 2>&1); then fail "flash nosuch should fail: $out"; fi
grep -qi "partition" <<<"$out" || fail "flash nosuch: $out"
# U-Boot itself answers OKAY to set_active; mi-flash, like AOSP, refuses since slot-count is unset.
if out=$(mf set-active a 2>&1); then fail "set-active should be refused on U-Boot: $out"; fi
grep -q "does not have A/B slots" <<<"$out" || fail "set-active: $out"

# ---- Xiaomi package (`mi-flash flash --rom`): refusals -------------------------------------------
# A small fastboot ROM for this disk, in Xiaomi's layout and style: a .tgz named
# marble_images_..._<md5-10>.tgz holding a top folder with flash_all.sh and images/ (raw and
# sparse images, anti_version.txt, crclist.txt, sparsecrclist.txt). Its images differ from the
# ones flashed above, so the read-back of this phase also proves the refused flashes wrote nothing.
# The package's sparse images leave DONT_CARE holes: there the partitions must keep what they held
# before (system: system.raw from above; userdata: a pattern written before phase 2).
t_pkg0=$(date +%s.%N)
rom_name=marble_images_OS1.0.5.0.UMRCNXM_20240101.0000.00_14.0_cn
rom_top=marble_images_OS1.0.5.0.UMRCNXM_14.0
rom_dir="$work/rom/$rom_top"
mkdir -p "$rom_dir/images" "$work/expect"
read -r _ sys_size < <(part system)
python3 - "$rom_dir/images" "$work/expect" "$work/system.raw" "$sys_size" "$ud_size" <<'PY'
import os, random, struct, sys
images, expect, system_raw, sys_size, ud_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
BLK = 4096

def raw(name, size, seed):
    data = random.Random(seed).randbytes(size)
    open(os.path.join(images, name), "wb").write(data)
    open(os.path.join(expect, name), "wb").write(data)

def sparse(name, chunks, base, seed):
    """Android sparse image v1.0 with RAW, FILL and DONT_CARE chunks (AOSP's sparse_format.h);
    the expected partition is `base` with the chunks laid over it."""
    r = random.Random(seed)
    body, want, blocks = bytearray(), bytearray(base), 0
    for kind, n, *arg in chunks:
        at = blocks * BLK
        if kind == "raw":
            data = r.randbytes(n * BLK)
            body += struct.pack("<HHII", 0xCAC1, 0, n, 12 + len(data)) + data
            want[at:at + len(data)] = data
        elif kind == "fill":
            body += struct.pack("<HHII", 0xCAC2, 0, n, 16) + struct.pack("<I", arg[0])
            want[at:at + n * BLK] = struct.pack("<I", arg[0]) * (n * BLK // 4)
        else:  # dont-care: the device leaves these blocks alone
            body += struct.pack("<HHII", 0xCAC3, 0, n, 12)
        blocks += n
    assert blocks * BLK <= len(base), name
    head = struct.pack("<IHHHHIIII", 0xED26FF3A, 1, 0, 28, 12, BLK, blocks, len(chunks), 0)
    open(os.path.join(images, name), "wb").write(head + body)
    open(os.path.join(expect, name), "wb").write(want)

raw("boot.img", 5 * 1024 * 1024 + 777, 11)   # over the 4 MiB split size, not a block multiple
raw("dtbo.img", 512 * 1024, 12)
raw("vbmeta.img", 4096, 13)
raw("misc.img", 8192, 14)
system_base = open(system_raw, "rb").read()[:sys_size]
sparse("system.img", [("raw", 512), ("fill", 256, 0), ("raw", 256), ("dont-care", 512),
                      ("fill", 128, 0x4D494649), ("raw", 384)], system_base, 15)
ud_base = b"\xa5\x5a" * (ud_size // 2)
sparse("userdata.img", [("raw", 64), ("dont-care", 256), ("fill", 128, 0xDEADBEEF), ("raw", 32)], ud_base, 16)
PY
echo 1 > "$rom_dir/images/anti_version.txt"
(cd "$rom_dir/images" && "$MI_FLASH" crc boot.img dtbo.img vbmeta.img misc.img system.img userdata.img) > "$work/crc.out" \
  || fail "mi-flash crc: $(cat "$work/crc.out")"
# `mi-flash crc` prints both lists, each after a `#` comment line; keep the per-piece format.
awk '/^CRC-LIST$/{on=1} /^#/{on=0} on' "$work/crc.out" > "$rom_dir/images/crclist.txt"
awk '/^SPARSECRC-LIST$/{on=1} /^#/{on=0} on' "$work/crc.out" > "$rom_dir/images/sparsecrclist.txt"
grep -q "^boot 0x" "$rom_dir/images/crclist.txt" && grep -q "^system 1 0x" "$rom_dir/images/sparsecrclist.txt" \
  || fail "unexpected mi-flash crc output: $(cat "$work/crc.out")"
{
  cat <<'SH'
fastboot $* getvar product 2>&1 | grep "^product: *marble"
if [ $? -ne 0  ] ; then echo "Missmatching image and device"; exit 1; fi

#check anti_version
if [ -e $(dirname $0)/images/anti_version.txt ]; then
CURRENT_ANTI_VER=`cat $(dirname $0)/images/anti_version.txt`
fi
if [ -z "$CURRENT_ANTI_VER" ]; then CURRENT_ANTI_VER=0; fi
ver=`fastboot $* getvar anti 2>&1 | grep -oP "anti: \K[0-9]+"`
if [ -z "$ver" ]; then ver=0; fi
if [ $ver -gt $CURRENT_ANTI_VER ]; then echo "Current device antirollback version is greater than this pakcage"; exit 1; fi

fastboot $* getvar crc 2>&1 | grep "^crc: 1"
if [ $? -eq 0 ]; then
fastboot $* flash crclist       `dirname $0`/images/crclist.txt
if [ $? -ne 0 ] ; then echo "Flash crclist error"; exit 1; fi
fastboot $* flash sparsecrclist `dirname $0`/images/sparsecrclist.txt
if [ $? -ne 0 ] ; then echo "Flash sparsecrclist error"; exit 1; fi
fi

SH
  for p in dtbo:dtbo.img vbmeta:vbmeta.img system:system.img misc:misc.img userdata:userdata.img boot:boot.img; do
    printf 'fastboot $* flash %s `dirname $0`/images/%s\nif [ $? -ne 0 ] ; then echo "Flash %s error"; exit 1; fi\n' \
      "${p%%:*}" "${p#*:}" "${p%%:*}"
  done
  printf 'fastboot $* reboot\nif [ $? -ne 0 ] ; then echo "Reboot error"; exit 1; fi\n'
} > "$rom_dir/flash_all.sh"
chmod +x "$rom_dir/flash_all.sh"
# The archive as downloaded: the name ends in the first 10 hex digits of its own MD5.
tar -C "$work/rom" -czf "$work/rom.tgz" "$rom_top"
rom_tgz="$work/${rom_name}_$(md5sum "$work/rom.tgz" | cut -c1-10).tgz"
mv "$work/rom.tgz" "$rom_tgz"
out=$("$MI_FLASH" verify --rom "$rom_tgz") || fail "verify --rom: $out"
grep -q "✓ md5-fragment" <<<"$out" || fail "verify --rom did not check the MD5 fragment: $out"
grep -q "✓ crclist" <<<"$out" || fail "verify --rom did not check crclist.txt: $out"

rom_flash() { mf flash --rom "$@" --yes --journal-dir "$work/journal"; }
expect_refused() { # WHAT EXPECTED_MESSAGE ROM
  local rc=0
  out=$(rom_flash "$3" 2>&1) || rc=$?
  [ "$rc" = 3 ] || fail "$1: expected exit code 3 (refused), got $rc: $out"
  grep -qF "$2" <<<"$out" || fail "$1: the message does not say '$2': $out"
  if grep -q "Sending" <<<"$out"; then fail "$1: something was sent: $out"; fi
  say "$1: refused as expected: $(grep "^error:" <<<"$out")"
}
ucmd "setenv fastboot.anti 2" || fail "UCmd:setenv fastboot.anti 2"
expect_eq "getvar anti (raised)" "$(mf getvar anti)" "anti: 2"
expect_refused "flash --rom with anti 2" "anti-rollback index is 2 but this package's is 1" "$rom_tgz"
ucmd "setenv fastboot.anti 1" || fail "UCmd:setenv fastboot.anti 1"
ucmd "setenv fastboot.product cupid" || fail "UCmd:setenv fastboot.product cupid"
# the extracted folder this time
expect_refused "flash --rom on cupid" "this package is for marble, the phone is cupid" "$rom_dir"
ucmd "setenv fastboot.product marble" || fail "UCmd:setenv fastboot.product marble"
expect_eq "getvar product (restored)" "$(mf getvar product)" "product: marble"
expect_eq "getvar anti (restored)" "$(mf getvar anti)" "anti: 1"
t_pkg1=$(date +%s.%N)
# ------------------------------------------------------------------------------------------------

# A reboot really resets the VM; the boot command brings U-Boot straight back into fastboot.
# (U-Boot 2023.01 refuses reboot-bootloader: "Cannot set reboot flag".)
out=$(mf reboot) || fail "reboot: $out"
sleep 0.5
wait_fastboot 60
expect_eq "getvar product after reboot" "$(mf getvar product)" "product: marble"
starts=$(grep -c "Listening for fastboot command" "$work/console.log" || true)
[ "$starts" -ge 2 ] || fail "the U-Boot console shows $starts start(s) of fastboot, expected a second one after the reboot"

# ---- 5. read back ---------------------------------------------------------------------------------
stop_qemu
check_part() { # NAME EXPECTED_FILE
  local got="$work/got-$1.bin" start size
  read -r start size < <(part "$1")
  read_part "$1" "$got"
  python3 - "$got" "$2" "$1" <<'PY' || fail "partition $1 does not hold what was flashed"
import sys
got = open(sys.argv[1], "rb").read()
want = open(sys.argv[2], "rb").read()
name = sys.argv[3]
if got[:len(want)] != want:
    first = next(i for i in range(len(want)) if got[i] != want[i])
    sys.exit(f"{name}: first difference at byte {first}")
print(f"{name}: {len(want)} bytes match", file=sys.stderr)
PY
}
check_part boot "$work/boot.img"
check_part dtbo "$work/dtbo.img"
check_part vbmeta "$work/vbmeta.img"
simg2img "$work/system.img" "$work/system.expanded"
cmp -s "$work/system.expanded" "$work/system.raw" || fail "simg2img does not give back system.raw"
check_part system "$work/system.raw"
check_part cust "$work/cust.raw"
read_part userdata "$work/got-userdata.bin"
python3 - "$work/got-userdata.bin" <<'PY' || fail "userdata was not erased"
import sys
d = open(sys.argv[1], "rb").read()
assert b"\xa5\x5a\xa5\x5a" not in d, "the pattern written before the erase is still there"
# What an erased block reads as is the card's business (QEMU's SD card: 0xff); it is uniform.
assert d.count(d[:1]) == len(d), "userdata is not uniform after the erase"
print(f"userdata: {len(d)} bytes, all 0x{d[0]:02x}", file=sys.stderr)
PY

# ---- 6. the package flashed for real ---------------------------------------------------------------
# userdata gets its pattern again, so the package's DONT_CARE blocks there are visible.
python3 -c 'import sys; sys.stdout.buffer.write(b"\xa5\x5a" * (int(sys.argv[1]) // 2))' "$ud_size" \
  | dd of="$disk" bs=64K oflag=seek_bytes seek="$ud_start" conv=notrunc status=none
mv "$work/console.log" "$work/console-1.log"
start_qemu
target="udp:127.0.0.1:$port"
wait_fastboot 60
t_rom0=$(date +%s.%N)
# 4 MiB pieces: the sparse system image and the raw 5 MiB boot image both go out split.
out=$(rom_flash "$rom_tgz" --max-download-size 4194304 2>&1) || fail "flash --rom: $out"
t_rom1=$(date +%s.%N)
sed 's/^/  | /' <<<"$out" >&2
grep -q "Sending sparse 'system' in 2 pieces" <<<"$out" || fail "flash --rom did not split system: $out"
grep -q "Sending sparse 'boot' in 2 pieces" <<<"$out" || fail "flash --rom did not split boot: $out"
# U-Boot FAILs `getvar crc`: the two gated crclist/sparsecrclist flashes are skipped.
[ "$(grep -c "skipped: only when" <<<"$out")" = 2 ] || fail "flash --rom should skip exactly the two crc-gated steps: $out"
if grep -q "Sending '.*crclist'" <<<"$out"; then fail "flash --rom sent a CRC list to a phone that does not check them: $out"; fi
grep -q "Finished: " <<<"$out" || fail "flash --rom did not finish: $out"
# A finished flash leaves no resume journal behind.
[ -z "$(find "$work/journal" -type f 2>/dev/null)" ] || fail "a resume journal was left: $(find "$work/journal" -type f)"
# The script's final reboot reset the VM; U-Boot comes back into fastboot.
sleep 0.5
wait_fastboot 60
starts=$(grep -c "Listening for fastboot command" "$work/console.log" || true)
[ "$starts" -ge 2 ] || fail "the U-Boot console shows $starts start(s) of fastboot, expected a second one after the package's reboot"
stop_qemu
for p in boot dtbo vbmeta misc system userdata; do
  check_part "$p" "$work/expect/$p.img"
done
# cust is not in the package: it still holds what was flashed in phase 1.
check_part cust "$work/cust.raw"

ended=$(date +%s)
say "PASSED in $((ended - started)) s (tools $((t_tools - started)) s, U-Boot $((t_uboot - t_tools)) s, flashing $(python3 -c "print(f'{$t_flash1 - $t_flash0:.1f}')") s, package made and refused $(python3 -c "print(f'{$t_pkg1 - $t_pkg0:.1f}')") s, flash --rom $(python3 -c "print(f'{$t_rom1 - $t_rom0:.1f}')") s)"
