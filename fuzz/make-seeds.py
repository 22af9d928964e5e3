#!/usr/bin/env python3
"""Writes the seed corpora of mi-flash's fuzz targets into fuzz/corpus/<target>/.

Every seed is small and made here from scratch (no third-party files): fastboot
conversations, sparse images, flash scripts in the style of Xiaomi's packages, and tiny
.tgz / .tar / .zip packages. Run it from anywhere; it rewrites the seed folders.

    python3 fuzz/make-seeds.py
"""

import gzip
import io
import os
import shutil
import struct
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

MAGIC = 0xED26FF3A
RAW, FILL, DONT_CARE, CRC32 = 0xCAC1, 0xCAC2, 0xCAC3, 0xCAC4


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# --- fastboot_response: op byte, download length - 1, then packets separated by \n ---------

GETVAR, GETVAR_OPT, DOWNLOAD, GETVAR_ALL, UPLOAD = range(5)


def conversation(op, packets, length=1):
    return bytes([op, length - 1]) + b"\n".join(packets)


def fastboot_seeds():
    t = "fastboot_response"
    write(t, "getvar-okay", conversation(GETVAR, [b"OKAYpiano"]))
    write(t, "getvar-info-then-okay", conversation(GETVAR, [b"INFOchecking", b"TEXTpartial", b"INFO", b"OKAYfuxi"]))
    write(t, "getvar-fail", conversation(GETVAR_OPT, [b"FAILGetVar Variable Not found"]))
    write(t, "getvar-empty", conversation(GETVAR_OPT, [b"OKAY"]))
    write(t, "getvar-nul-padded", conversation(GETVAR, [b"OKAYyes\0\0\0\0"]))
    write(t, "download-ok", conversation(DOWNLOAD, [b"DATA00000004", b"OKAY"], length=4))
    write(t, "download-info", conversation(DOWNLOAD, [b"INFOpreparing", b"DATA00000010", b"INFOgot it", b"OKAY"], length=16))
    write(t, "download-wrong-size", conversation(DOWNLOAD, [b"DATA00000005"], length=4))
    write(t, "download-refused", conversation(DOWNLOAD, [b"FAILRequested download size is more than max allowed"], length=4))
    write(t, "download-okay-early", conversation(DOWNLOAD, [b"OKAY"], length=4))
    write(t, "download-bad-hex", conversation(DOWNLOAD, [b"DATA0000000g"], length=4))
    write(t, "getvar-all", conversation(GETVAR_ALL, [
        b"INFOproduct:piano", b"INFOmax-download-size:0x10000000",
        b"INFOpartition-size:boot_a: 0x4000000", b"INFOslot-count:2", b"INFOnocolon", b"OKAY"]))
    write(t, "getvar-all-data", conversation(GETVAR_ALL, [b"INFOa:b", b"DATA00000001"]))
    write(t, "upload", conversation(UPLOAD, [b"DATA00000003", b"xyz", b"OKAY"]))
    write(t, "upload-short", conversation(UPLOAD, [b"DATA00000100", b"abc"]))
    # Single packets, as the device-side command parser sees them.
    for i, cmd in enumerate([b"getvar:max-download-size", b"download:00001000", b"flash:boot_ab",
                             b"erase:userdata", b"set_active:a", b"oem device-info",
                             b"flashing unlock", b"reboot-bootloader", b"reboot", b"upload",
                             b"continue", b"boot"]):
        write(t, "command-%02d" % i, cmd)


# --- sparse_parse: Android sparse images and a raw one ------------------------------------

def header(blk_sz, total_blks, total_chunks, file_hdr_sz=28, chunk_hdr_sz=12):
    h = struct.pack("<IHHHHIIII", MAGIC, 1, 0, file_hdr_sz, chunk_hdr_sz, blk_sz, total_blks, total_chunks, 0)
    return h + b"\xee" * (file_hdr_sz - 28)


def chunk(kind, blocks, body, chunk_hdr_sz=12):
    h = struct.pack("<HHII", kind, 0, blocks, chunk_hdr_sz + len(body))
    return h + b"\xee" * (chunk_hdr_sz - 12) + body


def sparse(blk_sz, parts, **kw):
    total = sum(p[1] for p in parts)
    body = b"".join(chunk(k, n, b, kw.get("chunk_hdr_sz", 12)) for k, n, b in parts)
    return header(blk_sz, total, len(parts), **kw) + body


def noise(n, seed):
    out = bytearray()
    x = seed * 2654435761 & 0xFFFFFFFF
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out.append(x >> 24)
    return bytes(out)


def sparse_seeds():
    t = "sparse_parse"
    write(t, "raw-fill-skip-crc", sparse(512, [
        (RAW, 2, noise(1024, 1)), (FILL, 3, struct.pack("<I", 0xDEADBEEF)), (DONT_CARE, 2, b""),
        (CRC32, 0, struct.pack("<I", 0x1234)), (RAW, 1, noise(512, 2)), (DONT_CARE, 1, b"")]))
    write(t, "tiny-blocks", sparse(4, [
        (RAW, 3, noise(12, 3)), (FILL, 40, b"\0\0\0\0"), (FILL, 5, b"\0\0\0\0"), (DONT_CARE, 9, b""),
        (RAW, 1, b"abcd"), (FILL, 20, b"\x01\x02\x03\x04")]))
    write(t, "many-fills", sparse(8, [(FILL, 1 + i % 3, struct.pack("<I", i % 4)) for i in range(40)]))
    write(t, "long-headers", sparse(512, [(RAW, 2, noise(1024, 4)), (FILL, 1, b"\x07\0\0\0")],
                                   file_hdr_sz=32, chunk_hdr_sz=16))
    write(t, "huge-dont-care", sparse(4096, [(DONT_CARE, 0xFFFFFF, b""), (FILL, 1, b"\xff\xff\xff\xff")]))
    write(t, "trailing-bytes", sparse(16, [(RAW, 1, noise(16, 5))]) + b"trailing")
    write(t, "raw-image", noise(3000, 6) + b"\0" * 1096 + b"\x11" * 4096)


# --- script_parse: flash scripts written for these seeds, in the style of Xiaomi's --------

SH_HEAD = """fastboot $* getvar product 2>&1 | grep "^product: *piano"
if [ $? -ne 0  ] ; then echo "Mismatching image and device"; exit 1; fi
"""

SH_ANTI = """#check anti_version
if [ -e $(dirname $0)/images/anti_version.txt ]; then
CURRENT_ANTI_VER=`cat $(dirname $0)/images/anti_version.txt`
fi
if [ -z "$CURRENT_ANTI_VER" ]; then CURRENT_ANTI_VER=0; fi
ver=`fastboot $* getvar anti 2>&1 | grep -oP "anti: \\K[0-9]+"`
if [ -z "$ver" ]; then ver=0; fi
if [ $ver -gt $CURRENT_ANTI_VER ]; then echo "Device anti version is newer than this package"; exit 1; fi
"""

SH_CRC = """fastboot $* getvar crc 2>&1 | grep "^crc: 1"
if [ $? -eq 0 ]; then
fastboot $* flash crclist `dirname $0`/images/crclist.txt
if [ $? -ne 0 ] ; then echo "Flash crclist error"; exit 1; fi
fastboot $* flash sparsecrclist `dirname $0`/images/sparsecrclist.txt
if [ $? -ne 0 ] ; then echo "Flash sparsecrclist error"; exit 1; fi
fi
"""

SH_BODY = """fastboot $* erase boot_ab
if [ $? -ne 0 ] ; then echo "Erase boot error"; exit 1; fi
fastboot $* flash abl_ab `dirname $0`/images/abl.elf
if [ $? -ne 0 ] ; then echo "Flash abl error"; exit 1; fi
fastboot $* flash vbmeta_ab `dirname $0`/images/vbmeta.img
if [ $? -ne 0 ] ; then echo "Flash vbmeta error"; exit 1; fi
fastboot $* flash super `dirname $0`/images/super.img
if [ $? -ne 0 ] ; then echo "Flash super error"; exit 1; fi
#fastboot $* flash cust `dirname $0`/images/cust.img
fastboot $* flash boot_ab `dirname $0`/images/boot.img
if [ $? -ne 0 ] ; then echo "Flash boot error"; exit 1; fi
"""

SH_TAIL = """fastboot $* set_active a
if [ $? -ne 0 ] ; then echo "Set active a error"; exit 1; fi
fastboot $* reboot
if [ $? -ne 0 ] ; then echo "Reboot error"; exit 1; fi
"""

BAT_HEAD = """fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || echo Mismatching image and device
fastboot %* getvar product 2>&1 | findstr /r /c:"^product: *piano" || exit /B 1
"""

BAT_ANTI = """::check anti_version
if exist "%~dp0images\\anti_version.txt" (for /f "usebackq" %%a in ("%~dp0images\\anti_version.txt") do (set CURRENT_ANTI_VER=%%a))
if [%CURRENT_ANTI_VER%] EQU [] set CURRENT_ANTI_VER=0
for /f "tokens=2 delims=: " %%i in ('fastboot %* getvar anti 2^>^&1 ^| findstr /r /c:"anti:"') do (set version=%%i)
if [%version%] EQU [] set version=0
set anticheck="antirollback check pass"
if %version% GTR %CURRENT_ANTI_VER% set anticheck="Device anti version is newer than this package"
echo %anticheck% | findstr /r /c:"pass" || @echo "Antirollback check error" && exit /B 1
"""

BAT_CRC = """fastboot %* getvar crc 2>&1 | findstr /r /c:"^crc: 1" && if %errorlevel% equ 0 (
fastboot %* flash crclist %~dp0images\\crclist.txt || @echo "Flash crclist error" && exit /B 1
fastboot %* flash sparsecrclist %~dp0images\\sparsecrclist.txt || @echo "Flash sparsecrclist error" && exit /B 1
)
"""

BAT_BODY = """fastboot %* erase boot_ab || @echo "Erase boot error" && exit /B 1
fastboot %* flash abl_ab %~dp0images/abl.elf || @echo "Flash abl error" && exit /B 1
fastboot %* flash vbmeta_ab %~dp0images/vbmeta.img || @echo "Flash vbmeta error" && exit /B 1
fastboot %* flash super %~dp0images/super.img || @echo "Flash super error" && exit /B 1
::fastboot %* flash cust %~dp0images/cust.img
fastboot %* flash boot_ab %~dp0images/boot.img || @echo "Flash boot error" && exit /B 1
"""

BAT_TAIL = """fastboot %* set_active a || @echo "Set active a error" && exit /B 1
fastboot %* reboot || @echo "Reboot error" && exit /B 1
"""


def script_seeds():
    t = "script_parse"
    write(t, "plain.sh", SH_HEAD + SH_BODY + SH_TAIL)
    write(t, "anti-crc.sh", SH_HEAD + SH_ANTI + SH_CRC + SH_BODY + SH_TAIL)
    write(t, "lock.sh", SH_HEAD + SH_BODY + "fastboot $* oem lock\nif [ $? -ne 0 ] ; then echo \"Oem lock error\"; exit 1; fi\n" + SH_TAIL)
    write(t, "wipe.sh", SH_HEAD + SH_BODY + "fastboot $* erase userdata\nfastboot $* erase metadata\n" + SH_TAIL)
    write(t, "plain.bat", BAT_HEAD + BAT_BODY + BAT_TAIL)
    write(t, "anti-crc.bat", BAT_HEAD + BAT_ANTI + BAT_CRC + BAT_BODY + BAT_TAIL)
    write(t, "crlf.bat", (BAT_HEAD + BAT_BODY + BAT_TAIL).replace("\n", "\r\n"))
    write(t, "lock.bat", BAT_HEAD + BAT_BODY + "fastboot %* oem lock || @echo \"Oem lock error\" && exit /B 1\n" + BAT_TAIL)
    write(t, "refused.sh", SH_HEAD + "rm -rf $HOME\n")
    write(t, "refused.bat", BAT_HEAD + "del /q C:\\*\n")


# --- archive_read: tiny packages ---------------------------------------------------------

def package_files():
    super_img = sparse(512, [(RAW, 1, noise(512, 7)), (FILL, 2, b"\x01\x02\x03\x04"), (DONT_CARE, 1, b"")])
    return [
        ("piano_images_V1.0.1.0_20240101.0000.00_14.0_global/flash_all.sh",
         (SH_HEAD + SH_ANTI + SH_CRC + SH_BODY + SH_TAIL).encode()),
        ("piano_images_V1.0.1.0_20240101.0000.00_14.0_global/images/boot.img", b"ANDROID!" + b"\5" * 700),
        ("piano_images_V1.0.1.0_20240101.0000.00_14.0_global/images/super.img", super_img),
        ("piano_images_V1.0.1.0_20240101.0000.00_14.0_global/images/anti_version.txt", b"1\n"),
        ("piano_images_V1.0.1.0_20240101.0000.00_14.0_global/images/crclist.txt", b"CRC-LIST\nboot 0x1234\n"),
        ("piano_images_V1.0.1.0_20240101.0000.00_14.0_global/images/sparsecrclist.txt",
         b"SPARSECRC-LIST\nsuper 1 0x1\n"),
        ("piano_images_V1.0.1.0_20240101.0000.00_14.0_global/misc.txt", b"device=piano\n"),
    ]


def tar_bytes(files, fmt=tarfile.GNU_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    # Drop tarfile's padding to a 10 KiB record: keep the data and the two zero end blocks.
    raw = out.getvalue()
    end = len(raw)
    while end >= 512 and raw[end - 512:end] == bytes(512):
        end -= 512
    return raw[:end] + bytes(1024)


def archive_seeds():
    t = "archive_read"
    files = package_files()
    write(t, "package.tar", tar_bytes(files))
    write(t, "package-pax.tar", tar_bytes(files[:3], tarfile.PAX_FORMAT))
    write(t, "package.tgz", gzip.compress(tar_bytes(files), mtime=0))
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    write(t, "package.zip", zbuf.getvalue())
    write(t, "unsafe.tar", tar_bytes([("../evil.sh", b"fastboot reboot\n")]))


def main():
    for target in ["fastboot_response", "sparse_parse", "script_parse", "archive_read"]:
        shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)
    fastboot_seeds()
    sparse_seeds()
    script_seeds()
    archive_seeds()


if __name__ == "__main__":
    main()
