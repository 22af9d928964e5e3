#!/usr/bin/env python3
"""Writes the umockdev device descriptions in tests/usb/modes/: one USB device per phone mode
that mi-flash recognises from descriptors alone, as libusb reads them from sysfs.

    python3 tests/usb/make_mode_devices.py      # rewrites tests/usb/modes/*.umockdev

Each device has its own bus address and port (1-2 ... 1-6), so several files can be loaded
into one testbed (`umockdev-run -d a.umockdev -d b.umockdev ...`) next to the ADB fake phone
of fake_adb_device.py, which sits at 001/002 (port 1-1).

The descriptors follow what these modes expose: Qualcomm EDL (05c6:9008, one vendor-specific
interface), MediaTek preloader and BROM (0e8d:2000 / 0e8d:0003, CDC ACM), a Xiaomi phone in
Android with USB debugging off (2717:ff40, MTP only), and a Xiaomi bootloader in fastboot
(18d1:d00d, ff/42/03). Only the IDs and interface classes matter to mi-flash.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def device_descriptor(vid, pid):
    # USB 2.0, class from interfaces, EP0 64 bytes, bcdDevice 1.00, strings 1/2/3, 1 config
    return struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, 0, 0, 0, 64, vid, pid, 0x0100, 1, 2, 3, 1)


def interface(number, klass, subclass, protocol, endpoints):
    out = struct.pack("<BBBBBBBBB", 9, 4, number, 0, len(endpoints), klass, subclass, protocol, 0)
    for address, kind, size in endpoints:
        out += struct.pack("<BBBBHB", 7, 5, address, kind, size, 0 if kind == 2 else 9)
    return out


def config(interfaces):
    body = b"".join(interfaces)
    return struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), len(interfaces), 1, 0, 0x80, 50) + body


BULK, INTERRUPT = 2, 3

MODES = {
    # name: (devnum, port, vid, pid, interfaces, manufacturer, product, serial)
    "edl": (3, "1-2", 0x05C6, 0x9008,
            [interface(0, 0xFF, 0xFF, 0x10, [(0x81, BULK, 512), (0x01, BULK, 512)])],
            "Qualcomm CDMA Technologies MSM", "QUSB__BULK", None),
    "mtk-preloader": (4, "1-3", 0x0E8D, 0x2000,
                      [interface(0, 0x02, 0x02, 0x01, [(0x83, INTERRUPT, 16)]),
                       interface(1, 0x0A, 0x00, 0x00, [(0x81, BULK, 512), (0x01, BULK, 512)])],
                      "MediaTek", "MT65xx Preloader", None),
    "mtk-brom": (5, "1-4", 0x0E8D, 0x0003,
                 [interface(0, 0x02, 0x02, 0x01, [(0x83, INTERRUPT, 16)]),
                  interface(1, 0x0A, 0x00, 0x00, [(0x81, BULK, 512), (0x01, BULK, 512)])],
                 "MediaTek", "MT65xx Preloader", None),
    "android": (6, "1-5", 0x2717, 0xFF40,
                [interface(0, 0x06, 0x01, 0x01, [(0x81, BULK, 512), (0x01, BULK, 512), (0x82, INTERRUPT, 28)])],
                "Xiaomi", "Redmi Note 13", "f1e2d3c4"),
    "fastboot": (7, "1-6", 0x18D1, 0xD00D,
                 [interface(0, 0xFF, 0x42, 0x03, [(0x81, BULK, 512), (0x01, BULK, 512)])],
                 "Xiaomi", "Android", "fb5e7a11"),
}


def record(devnum, port, vid, pid, interfaces, manufacturer, product, serial):
    descriptors = device_descriptor(vid, pid) + config(interfaces)
    node = f"bus/usb/001/{devnum:03d}"
    lines = [
        f"P: /devices/pci0000:00/0000:00:14.0/usb1/{port}",
        f"N: {node}",
        "E: SUBSYSTEM=usb",
        "E: DEVTYPE=usb_device",
        f"E: DEVNAME=/dev/{node}",
        "E: BUSNUM=001",
        f"E: DEVNUM={devnum:03d}",
        "A: busnum=1",
        f"A: devnum={devnum}",
        "A: speed=480",
        f"A: idVendor={vid:04x}",
        f"A: idProduct={pid:04x}",
        "A: bConfigurationValue=1",
        f"A: manufacturer={manufacturer}",
        f"A: product={product}",
    ]
    if serial:
        lines.append(f"A: serial={serial}")
    lines.append(f"H: descriptors={descriptors.hex().upper()}")
    return "\n".join(lines) + "\n"


def main():
    out_dir = os.path.join(HERE, "modes")
    os.makedirs(out_dir, exist_ok=True)
    for name, spec in MODES.items():
        path = os.path.join(out_dir, f"{name}.umockdev")
        with open(path, "w") as f:
            f.write(record(*spec))
        print(path)


if __name__ == "__main__":
    main()
