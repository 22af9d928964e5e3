#!/usr/bin/python3
"""A fake USB phone with an ADB interface (ff/42/01) for mi-flash's rescue tests.

The program under test runs with umockdev's preload and sees one USB device at 001/002
(port 1-1) with an ADB interface and bulk endpoints 0x81 (IN) / 0x01 (OUT); everything it does
goes through the real rusb -> libusb -> usbdevfs code. The usbdevfs side is the handler of
tests/usb/fake_device.py (imported, not copied); only the link behind it differs:

  --mode recovery  Mi Recovery in "Connect with MIAssistant" mode, 18d1:d001. The script starts
                   `mi-flash simulate --recovery --listen 127.0.0.1:0` and bridges the raw ADB
                   byte stream: every bulk OUT transfer is forwarded as it is (zero-length
                   packets are counted, not forwarded); every message from the simulator is
                   handed to the host as two bulk IN transfers, the 24-byte header and then the
                   payload, as a phone does.
  --mode android   Android with USB debugging, 2717:ff48 (MTP + ADB). No simulator: the phone
                   answers the host's CNXN with AUTH(TOKEN), as adbd does for an unknown key.

Usage:
    /usr/bin/python3 tests/usb/fake_adb_device.py [OPTIONS] -- PROGRAM [ARGS...]
Options (or environment):
    --mode recovery|android
    --mi-flash PATH      MI_FLASH_BIN          mi-flash binary that runs the simulator
    --profile FILE       MI_FLASH_SIM_PROFILE  simulator profile (default: built-in moonstone)
    --store DIR          MI_FLASH_SIM_STORE    simulator store (default: a fresh temp dir)
    --serial SERIAL      FAKE_USB_SERIAL       USB serial number (default adb5e7a1)
    --add-device FILE    more (static) umockdev device descriptions for the same testbed,
                         e.g. tests/usb/modes/edl.umockdev (repeatable)
PROGRAM runs with UMOCKDEV_DIR and LD_PRELOAD set, plus MI_FLASH_FAKE_USB_STORE,
MI_FLASH_FAKE_USB_SERIAL and MI_FLASH_FAKE_USB_URB_LOG (one line per bulk URB, see
fake_device.py). Run it with /usr/bin/python3 (Debian's python3-gi).
"""
import argparse
import collections
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_device  # noqa: E402  (the usbdevfs handler and the simulator start-up)
from fake_device import UMockdev  # noqa: E402

DEVNODE = "/dev/bus/usb/001/002"
HEADER = 24
A_CNXN, A_AUTH = 0x4E584E43, 0x48545541


def adb_header(command, arg0, arg1, payload):
    return struct.pack("<6I", command, arg0, arg1, len(payload), sum(payload) & 0xFFFFFFFF, command ^ 0xFFFFFFFF)


def descriptors(vid, pid, with_mtp):
    device = struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, 0, 0, 0, 64, vid, pid, 0x0100, 1, 2, 3, 1)
    interfaces = []
    number = 0
    if with_mtp:
        interfaces.append(struct.pack("<9B", 9, 4, number, 0, 3, 0x06, 0x01, 0x01, 0)
                          + struct.pack("<BBBBHB", 7, 5, 0x83, 2, 512, 0)
                          + struct.pack("<BBBBHB", 7, 5, 0x02, 2, 512, 0)
                          + struct.pack("<BBBBHB", 7, 5, 0x84, 3, 28, 6))
        number += 1
    interfaces.append(struct.pack("<9B", 9, 4, number, 0, 2, 0xFF, 0x42, 0x01, 0)
                      + struct.pack("<BBBBHB", 7, 5, 0x81, 2, 512, 0)
                      + struct.pack("<BBBBHB", 7, 5, 0x01, 2, 512, 0))
    body = b"".join(interfaces)
    config = struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), len(interfaces), 1, 0, 0x80, 50) + body
    return device + config


def device_record(vid, pid, with_mtp, manufacturer, product, serial):
    return f"""P: /devices/pci0000:00/0000:00:14.0/usb1/1-1
N: bus/usb/001/002
E: SUBSYSTEM=usb
E: DEVTYPE=usb_device
E: DEVNAME={DEVNODE}
E: BUSNUM=001
E: DEVNUM=002
A: busnum=1
A: devnum=2
A: speed=480
A: idVendor={vid:04x}
A: idProduct={pid:04x}
A: bConfigurationValue=1
A: manufacturer={manufacturer}
A: product={product}
A: serial={serial}
H: descriptors={descriptors(vid, pid, with_mtp).hex().upper()}
"""


class AdbBridge:
    """The raw ADB byte stream to `mi-flash simulate --recovery`, cut into USB transfers."""

    def __init__(self, address):
        self.address = address
        self.sock = None
        self.inbox = collections.deque()
        self.lock = threading.Lock()
        self.zero_length = 0

    @staticmethod
    def _recv_exact(sock, n):
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def _reader(self, sock):
        while True:
            try:
                header = self._recv_exact(sock, HEADER)
                if header is None:
                    break
                (length,) = struct.unpack_from("<I", header, 12)
                payload = self._recv_exact(sock, length) if length else b""
                if payload is None:
                    break
            except OSError:
                break
            # A phone sends the header and the payload as two transfers.
            self.inbox.append(header)
            if payload:
                self.inbox.append(payload)
        with self.lock:
            if self.sock is sock:
                self.sock = None
        try:
            sock.close()
        except OSError:
            pass

    def send(self, packet):
        if not packet:
            self.zero_length += 1
            return
        with self.lock:
            if self.sock is None:
                sock = socket.create_connection(self.address, timeout=5)
                sock.settimeout(None)
                self.sock = sock
                threading.Thread(target=self._reader, args=(sock,), daemon=True).start()
            sock = self.sock
        sock.sendall(packet)

    def close(self):
        with self.lock:
            sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


class AndroidAdb:
    """adbd of Android with USB debugging, for a host whose key it does not know: every CNXN
    is answered with AUTH(TOKEN, 20 random bytes)."""

    def __init__(self):
        self.inbox = collections.deque()
        self.buffer = b""
        self.zero_length = 0

    def send(self, packet):
        if not packet:
            self.zero_length += 1
            return
        self.buffer += packet
        while len(self.buffer) >= HEADER:
            command, _a0, _a1, length = struct.unpack_from("<4I", self.buffer)
            if len(self.buffer) < HEADER + length:
                return
            self.buffer = self.buffer[HEADER + length:]
            if command == A_CNXN:
                token = os.urandom(20)
                self.inbox.append(adb_header(A_AUTH, 1, 0, token))
                self.inbox.append(token)

    def close(self):
        pass


def start_recovery_simulator(mi_flash, profile, store):
    cmd = [mi_flash, "simulate", "--recovery", "--listen", "127.0.0.1:0", "--store", store,
           "--profile", profile or "moonstone"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline().strip()
    prefix = "listening on tcp:"
    if not first.startswith(prefix):
        proc.kill()
        proc.wait()
        raise SystemExit(f"fake-adb: `{' '.join(cmd)}` printed {first!r}, expected '{prefix}HOST:PORT'")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, fake_device.parse_address(first[len(prefix):])


def main():
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["recovery", "android"], default="recovery")
    parser.add_argument("--mi-flash", default=env.get("MI_FLASH_BIN"))
    parser.add_argument("--profile", default=env.get("MI_FLASH_SIM_PROFILE"))
    parser.add_argument("--store", default=env.get("MI_FLASH_SIM_STORE"))
    parser.add_argument("--serial", default=env.get("FAKE_USB_SERIAL", "adb5e7a1"))
    parser.add_argument("--add-device", action="append", default=[])
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.program[:1] == ["--"]:
        args.program = args.program[1:]
    if not args.program:
        parser.error("name the program to run on the fake phone")

    temp_store = None
    store = args.store
    if store is None:
        temp_store = tempfile.mkdtemp(prefix="mi-flash-fake-adb-")
        store = temp_store
    if args.mode == "recovery" and not args.mi_flash:
        parser.error("--mode recovery needs --mi-flash PATH (or MI_FLASH_BIN)")
    sim = None
    link = None
    urb_log = tempfile.NamedTemporaryFile("w", prefix="mi-flash-fake-adb-urbs-", suffix=".log")
    # Everything after the simulator starts is inside the try: whatever fails, the simulator
    # is stopped, so no orphan keeps the caller's output pipes open.
    try:
        if args.mode == "recovery":
            sim, address = start_recovery_simulator(args.mi_flash, args.profile, store)
            link = AdbBridge(address)
            record = device_record(0x18D1, 0xD001, False, "Xiaomi", "Mi Recovery", args.serial)
        else:
            link = AndroidAdb()
            record = device_record(0x2717, 0xFF48, True, "Xiaomi", "Redmi Note 13", args.serial)
        phone = fake_device.FakeUsbPhone(link, args.serial, urb_log)
        testbed = UMockdev.Testbed.new()
        testbed.add_from_string(record)
        for extra in args.add_device:
            with open(extra) as f:
                testbed.add_from_string(f.read())
        testbed.attach_ioctl(DEVNODE, phone)
        child_env = dict(
            env,
            UMOCKDEV_DIR=testbed.get_root_dir(),
            LD_PRELOAD="libumockdev-preload.so.0:" + env.get("LD_PRELOAD", ""),
            MI_FLASH_FAKE_USB_STORE=os.path.abspath(store),
            MI_FLASH_FAKE_USB_SERIAL=args.serial,
            MI_FLASH_FAKE_USB_URB_LOG=urb_log.name,
        )
        rc = subprocess.call(args.program, env=child_env)
    finally:
        if link is not None:
            link.close()
        urb_log.close()
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        if temp_store is not None:
            shutil.rmtree(temp_store, ignore_errors=True)
    s = phone.stats
    fake_device.log(f"adb {args.mode}: {s['out_urbs']} OUT URBs ({s['out_bytes']} bytes), {s['in_urbs']} IN URBs "
                    f"({s['in_bytes']} bytes), {s['discarded']} discarded, {link.zero_length} zero-length, "
                    f"{s['overflow']} overflow")
    sys.exit(rc)


if __name__ == "__main__":
    main()
