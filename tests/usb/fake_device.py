#!/usr/bin/python3
"""A fake USB fastboot phone for mi-flash's tests, bridged to mi-flash's own simulator.

The program under test (a Rust test binary, or `mi-flash` itself) runs with umockdev's preload
and sees one USB device, 18d1:d00d with a fastboot interface ff/42/03 and bulk endpoints
0x81 (IN) / 0x01 (OUT). Everything it does goes through the real rusb -> libusb -> usbdevfs code;
this script answers the usbdevfs ioctls (a `UMockdev.IoctlBase` handler).

The device model is not written here: the script starts `mi-flash simulate --listen 127.0.0.1:0`
(or connects to a device given with --connect), speaks the AOSP fastboot TCP framing to it
(`FB01` handshake, then every packet is an 8-byte big-endian length + payload), forwards each
bulk OUT transfer as one frame and hands each frame from the simulator to the host as bulk IN
data. So USB tests run against the same device (store files, log, faults) as every other test.

Usage:
    /usr/bin/python3 tests/usb/fake_device.py [OPTIONS] PROGRAM [ARGS...]
Options may also come from the environment (handy as a cargo target runner):
    --mi-flash PATH      MI_FLASH_BIN          mi-flash binary that runs the simulator
    --profile FILE       MI_FLASH_SIM_PROFILE  simulator profile (default: fake-phone.toml
                                               next to this script: product "lavender")
    --store DIR          MI_FLASH_SIM_STORE    simulator store (default: a fresh temp dir)
    --connect HOST:PORT  FAKE_USB_CONNECT      use a running TCP fastboot device instead
    --serial SERIAL      FAKE_USB_SERIAL       USB serial number (default 3c1a7f2e)
    --no-sysfs-strings   FAKE_USB_NO_SYSFS_STRINGS=1
                         leave serial/product/manufacturer out of sysfs, so the host must ask
                         the device for its string descriptors (as on macOS and Windows)
PROGRAM runs with UMOCKDEV_DIR and LD_PRELOAD set, plus MI_FLASH_FAKE_USB_STORE (the store dir),
MI_FLASH_FAKE_USB_SERIAL, and MI_FLASH_FAKE_USB_URB_LOG: a file with one line per completed bulk
URB, `OUT <length> <status>` or `IN <buffer length> <actual length> <status>`, so a test can check
how the host cut its transfers.

USB-level faults, asked for in-band by the host (never forwarded to the simulator):
    oem fake-usb stall-out   this bulk OUT transfer fails with a STALL (EPIPE)
    oem fake-usb stall-in    accepted; the next bulk IN transfer fails with a STALL
    oem fake-usb unplug      accepted; the next bulk IN transfer fails with ENODEV
    oem fake-usb hang        accepted; no answer ever (the host must time out)

USB-level faults armed from the start, for programs that cannot send the in-band ones
(`mi-flash flash --rom`): --fault SPEC (repeatable) or FAKE_USB_FAULT="SPEC SPEC ...".
SPEC is ACTION-on=TRIGGER[#N]: it fires once, on the Nth bulk OUT transfer that matches
TRIGGER, a command prefix (`flash:cust`, `erase:metadata`) or `data` (a transfer of a
download's data phase). ACTION:
    stall-out   that OUT transfer fails with a STALL (EPIPE) and is not passed on
    stall-in    it is passed on; the IN transfer that would carry the answer stalls
    overflow    it is passed on; the IN transfer that would carry the answer overflows (EOVERFLOW)
    unplug      the phone drops off: that OUT transfer (a command: the answer's IN transfer)
                fails with ENODEV and the simulator's session ends
    hang        it is swallowed: accepted, never passed on, never answered
A new claim of the interface (the host opening the phone again, as after re-plugging it)
starts a new session with the simulator, as a re-plugged phone starts fastboot afresh.

Run it with /usr/bin/python3 (Debian's python3-gi). Needs packages umockdev, gir1.2-umockdev-1.0,
python3-gi.
"""
import argparse
import collections
import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402


# ---- usbdevfs ioctl numbers (asm-generic _IOC layout: x86_64, arm64) ----
def _ioc(direction, kind, nr, size):
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


URB_SIZE = 56  # sizeof(struct usbdevfs_urb) on 64-bit Linux
SUBMITURB = _ioc(2, "U", 10, URB_SIZE)
DISCARDURB = _ioc(0, "U", 11, 0)
REAPURB = _ioc(1, "U", 12, 8)
REAPURBNDELAY = _ioc(1, "U", 13, 8)
CLAIMINTERFACE = _ioc(2, "U", 15, 4)
RELEASEINTERFACE = _ioc(2, "U", 16, 4)
SETINTERFACE = _ioc(2, "U", 4, 8)
SETCONFIGURATION = _ioc(2, "U", 5, 4)
GETDRIVER = _ioc(1, "U", 8, 260)
RESET = _ioc(0, "U", 20, 0)
CLEAR_HALT = _ioc(2, "U", 21, 4)
GET_CAPABILITIES = _ioc(2, "U", 26, 4)
DISCONNECT_CLAIM = _ioc(2, "U", 27, 264)
# ZERO_PACKET | BULK_CONTINUATION | NO_PACKET_SIZE_LIM | BULK_SCATTER_GATHER: libusb then sends
# every bulk transfer as one URB, so one host write = one URB = one frame to the simulator.
CAPS = 0x0F

URB_TYPE_CONTROL, URB_TYPE_BULK = 2, 3
MAX_PACKET = 512  # high-speed bulk wMaxPacketSize, as in the descriptors below

VID, PID = 0x18D1, 0xD00D
MANUFACTURER, PRODUCT = "Xiaomi", "Android"
DEVNODE = "/dev/bus/usb/001/002"
# device (USB 2.0, EP0 64, 18d1:d00d, iManufacturer 1, iProduct 2, iSerial 3), one config with
# interface 0: class ff/42/03, bulk IN 0x81 and bulk OUT 0x01, 512-byte packets.
DESCRIPTORS = bytes.fromhex(
    "1201000200000040D1180DD0000101020301"
    "0902200001010080320904000002FF420300"
    "07058102000200"
    "07050102000200"
)


def device_record(serial, sysfs_strings=True):
    """The umockdev description: libusb reads descriptors from sysfs (the H: line); mi-flash
    reads serial/product from sysfs like AOSP fastboot, without a control request."""
    strings = f"""A: manufacturer={MANUFACTURER}
A: product={PRODUCT}
A: serial={serial}
""" if sysfs_strings else ""
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
A: idVendor={VID:04x}
A: idProduct={PID:04x}
A: bConfigurationValue=1
{strings}H: descriptors={DESCRIPTORS.hex().upper()}
"""


def log(msg):
    print(f"fake-usb: {msg}", file=sys.stderr, flush=True)


class SimulatorLink:
    """The TCP side: one AOSP-framed connection to the simulated phone. A reader thread turns
    incoming frames into whole packets; the ioctl handler picks them up when the host reaps."""

    def __init__(self, address):
        self.address = address
        self.sock = None
        self.inbox = collections.deque()  # packets from the device, appended by the reader
        self.lock = threading.Lock()

    def _connect(self):
        host, port = self.address
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"FB01")
        hello = self._recv_exact(sock, 4)
        if hello is None or not hello.startswith(b"FB"):
            raise RuntimeError(f"device at {host}:{port} did not answer the FB01 handshake: {hello!r}")
        sock.settimeout(None)
        self.sock = sock
        threading.Thread(target=self._reader, args=(sock,), daemon=True).start()

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
                header = self._recv_exact(sock, 8)
                if header is None:
                    break
                (length,) = struct.unpack(">Q", header)
                payload = self._recv_exact(sock, length) if length else b""
                if payload is None:
                    break
            except OSError:
                break
            self.inbox.append(payload)
        # The simulator ended the session (reboot, exit). A new one starts with the next packet.
        with self.lock:
            if self.sock is sock:
                self.sock = None
        try:
            sock.close()
        except OSError:
            pass

    def send(self, packet):
        with self.lock:
            if self.sock is None:
                self._connect()
            sock = self.sock
        sock.sendall(struct.pack(">Q", len(packet)) + packet)

    def reset(self):
        """Ends the session: what the simulator still sends for it is dropped."""
        self.close()
        self.inbox.clear()

    def close(self):
        with self.lock:
            sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


FAULT_ACTIONS = ("stall-out", "stall-in", "overflow", "unplug", "hang")


class ArmedFault:
    """One `ACTION-on=TRIGGER[#N]` fault (see the module doc)."""

    def __init__(self, spec):
        action, sep, trigger = spec.partition("-on=")
        if not sep or action not in FAULT_ACTIONS or not trigger:
            raise SystemExit(f"fake-usb: fault {spec!r}: expected ACTION-on=TRIGGER[#N], ACTION one of {', '.join(FAULT_ACTIONS)}")
        prefix, _, nth = trigger.rpartition("#") if "#" in trigger else (trigger, "", "1")
        if not nth.isdigit() or int(nth) < 1 or not prefix:
            raise SystemExit(f"fake-usb: fault {spec!r}: #N counts from 1")
        self.spec, self.action, self.prefix, self.nth = spec, action, prefix.encode(), int(nth)
        self.seen, self.done = 0, False

    def matches(self, data, is_data):
        if self.done:
            return False
        hit = is_data if self.prefix == b"data" else (not is_data and data.startswith(self.prefix))
        if hit:
            self.seen += 1
            if self.seen == self.nth:
                self.done = True
                return True
        return False


class FakeUsbPhone(UMockdev.IoctlBase):
    """usbdevfs for one device: bulk URBs bridged to the simulator, string descriptors over
    control URBs, in-band fault injection (see the module doc)."""

    FAULT_PREFIX = b"oem fake-usb "

    def __init__(self, link, serial, urb_log, faults=()):
        super().__init__()
        self.faults = list(faults)
        self.last_command = b""
        self.data_left = 0  # bytes of the current download's data phase still to come
        self.link = link
        self.urb_log = urb_log
        self.strings = {1: MANUFACTURER, 2: PRODUCT, 3: serial}
        self.lock = threading.Lock()
        self.pending_in = collections.deque()  # [urb, buf, buflen] waiting for device data
        self.partial = b""  # rest of a device packet larger than the host's last IN buffer
        self.done = collections.deque()  # completed URBs, ready to be reaped
        self.next_in_error = None  # errno to fail the next IN URB with (injected fault)
        self.stats = collections.Counter()
        self.connect("handle-ioctl", self.on_ioctl)

    def _finish(self, urb, status, actual):
        urb.update(4, struct.pack("<i", status))  # usbdevfs_urb.status
        urb.update(28, struct.pack("<i", actual))  # usbdevfs_urb.actual_length
        self.done.append(urb)
        raw = bytes(urb.retrieve())
        if raw[0] == URB_TYPE_BULK:
            (buflen,) = struct.unpack_from("<i", raw, 24)
            line = f"IN {buflen} {actual} {status}" if raw[1] & 0x80 else f"OUT {buflen} {status}"
            self.urb_log.write(line + "\n")
            self.urb_log.flush()

    def _pump(self):
        """Complete waiting IN URBs with device packets, one packet (or part) per URB, as a
        USB device ends each transfer with a short packet."""
        while self.pending_in:
            urb, buf, buflen = self.pending_in[0]
            if self.next_in_error is not None:
                self.pending_in.popleft()
                self._finish(urb, -self.next_in_error, 0)
                self.next_in_error = None
                continue
            if self.partial:
                packet, self.partial = self.partial, b""
            elif self.link.inbox:
                packet = self.link.inbox.popleft()
            else:
                return
            self.pending_in.popleft()
            if (self.last_command.startswith(b"download:") and packet.startswith(b"DATA")
                    and len(packet) == 12):
                try:
                    self.data_left = int(packet[4:], 16)
                except ValueError:
                    pass
            if len(packet) > buflen and buflen % MAX_PACKET != 0:
                # A real device would send a full 512-byte packet into a smaller buffer:
                # the host controller reports babble. Catch hosts that read with odd sizes.
                self.stats["overflow"] += 1
                self._finish(urb, -errno.EOVERFLOW, 0)
                continue
            self.partial = packet[buflen:]
            buf.update(0, packet[:buflen])
            self.stats["in_bytes"] += min(len(packet), buflen)
            self._finish(urb, 0, min(len(packet), buflen))

    def _bulk_out(self, urb, data):
        self.stats["out_urbs"] += 1
        self.stats["out_bytes"] += len(data)
        if len(data) == 0:
            # Zero-length packets freeze some bootloaders; mi-flash must never send one.
            self.stats["zlp"] += 1
            log("host sent a zero-length packet")
        is_data = self.data_left > 0
        if is_data:
            self.data_left = max(0, self.data_left - len(data))
        else:
            self.last_command = data
        for fault in self.faults:
            if fault.matches(data, is_data):
                self.stats["faults"] += 1
                log(f"fault {fault.spec} fires")
                if self._armed_fault(fault.action, urb, data, is_data):
                    return
                break
        if data.startswith(self.FAULT_PREFIX):
            fault = data[len(self.FAULT_PREFIX):].decode("ascii", "replace").strip()
            if fault == "stall-out":
                self._finish(urb, -errno.EPIPE, 0)
                return
            if fault == "stall-in":
                self.next_in_error = errno.EPIPE
            elif fault == "unplug":
                self.next_in_error = errno.ENODEV
            elif fault != "hang":
                log(f"unknown fault {fault!r}, swallowing it")
            self._finish(urb, 0, len(data))
            return
        try:
            self.link.send(data)
        except (OSError, RuntimeError) as e:
            log(f"cannot reach the simulated device: {e}")
            self._finish(urb, -errno.EPROTO, 0)
            return
        self._finish(urb, 0, len(data))

    def _armed_fault(self, action, urb, data, is_data):
        """Acts out an armed fault on this OUT transfer; True when the transfer is done with."""
        if action == "stall-out":
            self._finish(urb, -errno.EPIPE, 0)
            return True
        if action == "hang":
            self._finish(urb, 0, len(data))
            return True
        if action == "unplug":
            self.link.reset()
            self.partial = b""
            self.data_left = 0
            if is_data:
                self._finish(urb, -errno.ENODEV, 0)
            else:
                self.next_in_error = errno.ENODEV
                self._finish(urb, 0, len(data))
            return True
        # stall-in, overflow: the transfer goes through; the answer's IN transfer fails.
        self.next_in_error = errno.EPIPE if action == "stall-in" else errno.EOVERFLOW
        return False

    def _control(self, urb, buf, buflen):
        """Standard GET_DESCRIPTOR(STRING) only; libusb reads every other descriptor from sysfs."""
        setup = bytes(buf.retrieve()[:8])
        req_type, request, value, index, length = struct.unpack("<BBHHH", setup)
        if req_type == 0x80 and request == 6 and value >> 8 == 3:
            string_index = value & 0xFF
            if string_index == 0:
                desc = bytes([4, 3, 0x09, 0x04])  # supported languages: en-US
            elif string_index in self.strings:
                text = self.strings[string_index].encode("utf-16-le")
                desc = bytes([2 + len(text), 3]) + text
            else:
                self._finish(urb, -errno.EPIPE, 0)
                return
            self.stats["string_requests"] += 1
            desc = desc[: min(length, buflen - 8)]
            buf.update(8, desc)
            self._finish(urb, 0, len(desc))
            return
        self.stats["control_stall"] += 1
        self._finish(urb, -errno.EPIPE, 0)

    def on_ioctl(self, _handler, client):
        req, arg = client.get_request(), client.get_arg()
        with self.lock:
            if req == SUBMITURB:
                urb = arg.resolve(0, URB_SIZE)
                raw = bytes(urb.retrieve())
                kind, endpoint = raw[0], raw[1]
                (buflen,) = struct.unpack_from("<i", raw, 24)
                buf = urb.resolve(16, buflen) if buflen > 0 else None
                if kind == URB_TYPE_CONTROL:
                    self._control(urb, buf, buflen)
                elif kind != URB_TYPE_BULK or endpoint not in (0x01, 0x81):
                    client.complete(-1, errno.EINVAL)
                    return True
                elif endpoint & 0x80:
                    if buflen < 1:
                        client.complete(-1, errno.EINVAL)
                        return True
                    self.stats["in_urbs"] += 1
                    self.pending_in.append((urb, buf, buflen))
                else:
                    self._bulk_out(urb, bytes(buf.retrieve()) if buf is not None else b"")
                self._pump()
                client.complete(0, 0)
            elif req in (REAPURB, REAPURBNDELAY):
                self._pump()
                if self.done:
                    arg.resolve(0, 8).set_ptr(0, self.done.popleft())
                    client.complete(0, 0)
                else:
                    client.complete(-1, errno.EAGAIN)
            elif req == DISCARDURB:  # libusb cancels a timed-out URB
                (addr,) = struct.unpack("<Q", bytes(arg.retrieve())[:8])
                for item in list(self.pending_in):
                    if item[0].client_addr == addr:
                        self.pending_in.remove(item)
                        self.stats["discarded"] += 1
                        self._finish(item[0], -errno.ENOENT, 0)
                        client.complete(0, 0)
                        break
                else:
                    client.complete(-1, errno.EINVAL)
            elif req == GET_CAPABILITIES:
                arg.resolve(0, 4).update(0, struct.pack("<I", CAPS))
                client.complete(0, 0)
            elif req == CLAIMINTERFACE:
                # A new host session: the phone's fastboot starts afresh, as after re-plugging.
                self.link.reset()
                self.partial = b""
                self.data_left = 0
                self.next_in_error = None
                client.complete(0, 0)
            elif req in (RELEASEINTERFACE, SETINTERFACE, SETCONFIGURATION,
                         CLEAR_HALT, RESET, DISCONNECT_CLAIM):
                if req == CLEAR_HALT:
                    self.stats["clear_halt"] += 1
                client.complete(0, 0)
            elif req == GETDRIVER:
                client.complete(-1, errno.ENODATA)
            else:
                log(f"unhandled ioctl 0x{req:x}")
                client.complete(-1, errno.ENOTTY)
        return True


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"fake-usb: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def start_simulator(mi_flash, profile, store):
    cmd = [mi_flash, "simulate", "--listen", "127.0.0.1:0", "--store", store]
    if profile:
        cmd += ["--profile", profile]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline().strip()
    prefix = "listening on tcp:"
    if not first.startswith(prefix):
        proc.kill()
        proc.wait()
        raise SystemExit(f"fake-usb: `{' '.join(cmd)}` printed {first!r}, expected '{prefix}HOST:PORT'")
    # Keep draining its stdout so the simulator never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, parse_address(first[len(prefix):])


def main():
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mi-flash", default=env.get("MI_FLASH_BIN"))
    parser.add_argument("--profile", default=env.get("MI_FLASH_SIM_PROFILE",
                                                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake-phone.toml")))
    parser.add_argument("--store", default=env.get("MI_FLASH_SIM_STORE"))
    parser.add_argument("--connect", default=env.get("FAKE_USB_CONNECT"))
    parser.add_argument("--serial", default=env.get("FAKE_USB_SERIAL", "3c1a7f2e"))
    parser.add_argument("--fault", action="append", default=env.get("FAKE_USB_FAULT", "").split(),
                        help="arm a USB fault: ACTION-on=TRIGGER[#N] (see the module doc)")
    parser.add_argument("--no-sysfs-strings", action="store_true",
                        default=env.get("FAKE_USB_NO_SYSFS_STRINGS") == "1")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.program[:1] == ["--"]:
        args.program = args.program[1:]
    if not args.program:
        parser.error("name the program to run on the fake phone")

    temp_store = None
    store = args.store
    if store is None:
        temp_store = tempfile.mkdtemp(prefix="mi-flash-fake-usb-")
        store = temp_store
    sim = None
    if args.connect:
        address = parse_address(args.connect)
    elif args.mi_flash:
        sim, address = start_simulator(args.mi_flash, args.profile, store)
    else:
        parser.error("give --mi-flash PATH (or MI_FLASH_BIN) to start the simulator, or --connect HOST:PORT")

    link = SimulatorLink(address)
    urb_log = tempfile.NamedTemporaryFile("w", prefix="mi-flash-fake-usb-urbs-", suffix=".log")
    faults = [ArmedFault(spec) for spec in args.fault]
    phone = FakeUsbPhone(link, args.serial, urb_log, faults)
    testbed = UMockdev.Testbed.new()
    testbed.add_from_string(device_record(args.serial, not args.no_sysfs_strings))
    testbed.attach_ioctl(DEVNODE, phone)
    child_env = dict(
        env,
        UMOCKDEV_DIR=testbed.get_root_dir(),
        LD_PRELOAD="libumockdev-preload.so.0:" + env.get("LD_PRELOAD", ""),
        MI_FLASH_FAKE_USB_STORE=os.path.abspath(store),
        MI_FLASH_FAKE_USB_SERIAL=args.serial,
        MI_FLASH_FAKE_USB_URB_LOG=urb_log.name,
    )
    try:
        rc = subprocess.call(args.program, env=child_env)
    finally:
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
    log(f"{s['out_urbs']} OUT URBs ({s['out_bytes']} bytes), {s['in_urbs']} IN URBs "
        f"({s['in_bytes']} bytes), {s['discarded']} discarded, {s['zlp']} zero-length, "
        f"{s['overflow']} overflow, {s['string_requests']} string descriptor requests, "
        f"{s['faults']} armed faults fired")
    if rc == 0 and s["zlp"]:
        log("FAIL: the host sent zero-length packets")
        rc = 1
    sys.exit(rc)


if __name__ == "__main__":
    main()
