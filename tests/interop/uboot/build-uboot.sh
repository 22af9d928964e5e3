#!/usr/bin/env bash
# Builds U-Boot with fastboot over UDP for qemu-system-aarch64 from Debian's `u-boot` source
# package, and prints the path of the resulting u-boot.bin on stdout (the only stdout line).
#
# The binary is cached (default target/uboot-cache in the checkout, override with
# MI_FLASH_UBOOT_CACHE) under a key made of this script and its config fragment, so a warm run
# costs nothing. Nothing from U-Boot is ever written into the repository.
#
# The source comes through apt with a private state directory and a deb-src copy of the
# machine's own Debian sources: the system's apt configuration is left untouched.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${MI_FLASH_UBOOT_CACHE:-$(cd "$here/../../.." && pwd)/target/uboot-cache}"
key="$(cat "$0" "$here/fastboot-udp.config" | sha256sum | cut -c1-16)"
out="$cache/$key"
if [ -s "$out/u-boot.bin" ]; then
  echo "$out/u-boot.bin"
  exit 0
fi

log() { echo "build-uboot: $*" >&2; }
work="$cache/work-$key"
rm -rf "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/parts" "$work/src"
cd "$work"

sources=/etc/apt/sources.list.d/debian.sources
if [ -f "$sources" ]; then
  sed 's/^Types: deb$/Types: deb-src/' "$sources" > apt/parts/src.sources
elif [ -f /etc/apt/sources.list ]; then
  grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > apt/parts/src.list
else
  log "no Debian apt sources found (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)"
  exit 1
fi
apto=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt/parts"
      -o "Dir::State::Lists=$work/apt/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
t0=$(date +%s)
log "fetching Debian's u-boot source package"
apt-get -qq "${apto[@]}" update >&2
(cd src && apt-get -qq "${apto[@]}" source --download-only u-boot >&2)
orig=$(ls src/u-boot_*.orig.tar.* | head -n1)
log "unpacking $(basename "$orig")"
tar -C src -xf "$orig"
tree=$(find src -mindepth 1 -maxdepth 1 -type d -name 'u-boot*' | head -n1)
t1=$(date +%s)

# qemu_arm64_defconfig plus fastboot over UDP, an MMC flash backend on the SD card QEMU
# attaches, a boot command that starts fastboot at once with Xiaomi-like variables, and the
# `UCmd:` command (U-Boot 2023.01 has no `oem run`) so the tier can change them at run time.
{ grep -v '^# CONFIG_MMC is not set' "$tree/configs/qemu_arm64_defconfig"; cat "$here/fastboot-udp.config"; } \
  > "$tree/configs/qemu_arm64_mifb_defconfig"
jobs=$(( $(nproc) + 1 ))
log "building (make -j$jobs)"
make -s -C "$tree" O="$work/build" CROSS_COMPILE=aarch64-linux-gnu- qemu_arm64_mifb_defconfig >&2
make -s -C "$tree" O="$work/build" CROSS_COMPILE=aarch64-linux-gnu- -j"$jobs" >&2
for opt in CONFIG_UDP_FUNCTION_FASTBOOT CONFIG_FASTBOOT_FLASH_MMC CONFIG_MMC_SDHCI CONFIG_FASTBOOT_UUU_SUPPORT; do
  grep -q "^$opt=y" "$work/build/.config" || { log "$opt did not make it into the configuration"; exit 1; }
done
t2=$(date +%s)
mkdir -p "$out"
cp "$work/build/u-boot.bin" "$out/u-boot.bin.tmp"
basename "$orig" > "$out/source.txt"
mv "$out/u-boot.bin.tmp" "$out/u-boot.bin"
rm -rf "$work"
log "done: fetch+unpack $((t1 - t0)) s, build $((t2 - t1)) s"
echo "$out/u-boot.bin"
