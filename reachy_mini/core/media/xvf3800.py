"""The XMOS XVF3800 sound board (USB 38fb:1001): its control protocol over
USB vendor control transfers, as the vendor's reachy-mini 1.13.0 speaks it
(media/audio_control_utils.py, media/audio_doa.py), through pyusb.

Protocol: a parameter is (resid, cmdid, count, type). A read is a
vendor IN control transfer, bRequest 0, wValue = 0x80 | cmdid, wIndex =
resid, wLength = count (uint8/char) or 4 * count (float/radians/int32/uint32)
plus one status byte; status 0 = success, 64 = "retry" (the servicer is
busy: read again, at most 100 times). A write is a vendor OUT transfer with
wValue = cmdid and the packed little-endian values.

Direction of arrival: DOA_VALUE_RADIANS = two floats, the angle in rad
(vendor convention: 0 left, pi/2 front, pi right) and speech detected (0/1).

`SimulatedBoard` is a pyusb backend (usb.backend.IBackend) that enumerates
one 38fb:1001 device and answers the same transfers from a JSON state file
the tests (or a person) edit: {"present": true, "angle": 1.57,
"speech": false, "retries": 0}. The node runs the same code over the real
libusb backend on the robot.
"""
from __future__ import annotations

import array
import json
import math
import os
import struct
import threading
import time
from dataclasses import dataclass

VID, PID = 0x38FB, 0x1001
OLD_VID, OLD_PID = 0x2886, 0x001A     # ReSpeaker firmware before the Reachy Mini one
CONTROL_SUCCESS, SERVICER_COMMAND_RETRY = 0, 64
CTRL_IN, CTRL_OUT = 0xC0, 0x40        # vendor request, recipient device, direction bit
MAX_READ_ATTEMPTS = 100

# name: (resid, cmdid, count, access, type) -- the subset we use, from the vendor's table
PARAMETERS = {
    "VERSION": (48, 0, 3, "ro", "uint8"),
    "AUDIO_MGR_MIC_GAIN": (35, 0, 1, "rw", "float"),
    "DOA_VALUE": (20, 18, 2, "ro", "uint32"),
    "DOA_VALUE_RADIANS": (20, 19, 2, "ro", "radians"),
}


class BoardError(Exception):
    """The board is absent, unplugged, or answered something we cannot use."""


def _length(count: int, kind: str) -> int:
    return (count if kind in ("uint8", "char") else 4 * count) + 1


def decode(kind: str, count: int, payload: bytes):
    """Values of a read's payload (status byte removed)."""
    if kind in ("float", "radians"):
        return struct.unpack("<" + "f" * count, payload[:4 * count])
    if kind in ("int32", "uint32"):
        return struct.unpack("<" + ("i" if kind == "int32" else "I") * count, payload[:4 * count])
    if kind == "char":
        return payload.rstrip(b"\x00").decode("utf-8", "ignore")
    return tuple(payload[:count])


def encode(kind: str, values) -> bytes:
    if kind in ("float", "radians"):
        return struct.pack("<" + "f" * len(values), *map(float, values))
    if kind in ("int32", "uint32"):
        return struct.pack("<" + ("i" if kind == "int32" else "I") * len(values), *map(int, values))
    return bytes(int(v) & 0xFF for v in values)


class Board:
    """A found board: read()/write() of named parameters with the vendor's
    retry rule; every USB failure becomes BoardError with the cause."""

    def __init__(self, dev, sleep=time.sleep) -> None:
        self.dev, self.sleep = dev, sleep

    def read(self, name: str):
        resid, cmdid, count, _access, kind = PARAMETERS[name]
        for _ in range(MAX_READ_ATTEMPTS):
            try:
                resp = bytes(self.dev.ctrl_transfer(CTRL_IN, 0, 0x80 | cmdid, resid, _length(count, kind), 1000))
            except Exception as e:  # noqa: BLE001 - usb.core.USBError and backend errors: the board is gone
                raise BoardError(f"USB read of {name} failed: {e}") from None
            if not resp:
                raise BoardError(f"USB read of {name}: empty answer")
            if resp[0] == CONTROL_SUCCESS:
                if len(resp) < _length(count, kind) and kind not in ("char",):
                    raise BoardError(f"USB read of {name}: short answer ({len(resp)} bytes)")
                return decode(kind, count, resp[1:])
            if resp[0] != SERVICER_COMMAND_RETRY:
                raise BoardError(f"USB read of {name}: unknown status {resp[0]}")
            self.sleep(0.01)
        raise BoardError(f"USB read of {name}: still busy after {MAX_READ_ATTEMPTS} attempts")

    def write(self, name: str, values) -> None:
        resid, cmdid, count, access, kind = PARAMETERS[name]
        if access == "ro":
            raise ValueError(f"{name} is read-only")
        if len(values) != count:
            raise ValueError(f"{name} takes {count} value(s)")
        try:
            self.dev.ctrl_transfer(CTRL_OUT, 0, cmdid, resid, encode(kind, values), 1000)
        except Exception as e:  # noqa: BLE001
            raise BoardError(f"USB write of {name} failed: {e}") from None

    def doa(self) -> tuple[float, bool]:
        """(angle rad in the vendor's convention, speech detected)."""
        angle, speech = self.read("DOA_VALUE_RADIANS")
        if not math.isfinite(angle):
            raise BoardError(f"direction of arrival is not a number: {angle}")
        return float(angle), bool(speech)

    def close(self) -> None:
        try:
            import usb.util

            usb.util.dispose_resources(self.dev)
        except Exception:  # noqa: BLE001 - a vanished device: nothing left to release
            pass


def find_board(backend=None) -> Board:
    """The board over pyusb (the new firmware's ids, then the old ReSpeaker
    ones), or BoardError saying why not."""
    try:
        import usb.core
    except ImportError as e:
        raise BoardError(f"pyusb is not installed ({e})") from None
    try:
        dev = usb.core.find(idVendor=VID, idProduct=PID, backend=backend) or \
            usb.core.find(idVendor=OLD_VID, idProduct=OLD_PID, backend=backend)
    except usb.core.NoBackendError:
        raise BoardError("no USB backend (libusb-1.0 missing)") from None
    except Exception as e:  # noqa: BLE001 - permission and bus errors
        raise BoardError(f"USB enumeration failed: {e}") from None
    if dev is None:
        raise BoardError("board not found (USB 38fb:1001)")
    return Board(dev)


def doa_vector(angle: float) -> tuple[float, float, float]:
    """Unit vector in the mic_array frame (x forward, y left, z up) of the
    vendor's angle (0 left, pi/2 front, pi right)."""
    return (math.sin(angle), math.cos(angle), 0.0)


class DoaReader:
    """Polls the board's direction of arrival on its own thread; reopens a
    lost board with backoff 0.5 s -> 5 s. on_doa(angle, speech)."""

    def __init__(self, mode: str, rate_hz: float, on_doa) -> None:
        self.mode, self.period, self.on_doa = mode, 1.0 / rate_hz, on_doa
        self.backend = simulated_backend(mode[4:]) if mode.startswith("sim:") else None
        self.board = None
        self.present = False
        self.error = ""
        self.reads = 0
        self.failures = 0
        self.angle: float | None = None
        self.speech = False
        self._hold = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="doa", daemon=True)

    def start(self) -> "DoaReader":
        self.thread.start()
        return self

    def _close(self) -> None:
        b, self.board = self.board, None
        if b is not None:
            b.close()

    def _run(self) -> None:
        backoff = 0.5
        nxt = time.monotonic()
        while not self._stop.is_set():
            if self._hold.is_set():
                self._close()
                self.present = False
                self._stop.wait(0.05)
                continue
            try:
                if self.board is None:
                    self.board = find_board(self.backend)
                angle, speech = self.board.doa()
            except BoardError as e:
                self._close()
                self.present, self.error = False, str(e)
                self.failures += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                nxt = time.monotonic()
                continue
            backoff = 0.5
            self.present, self.error = True, ""
            self.reads += 1
            self.angle, self.speech = angle, speech
            try:
                self.on_doa(angle, speech)
            except Exception:  # noqa: BLE001 - publishing must not kill the reader
                pass
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))
            if time.monotonic() - nxt > self.period:
                nxt = time.monotonic()

    def hold(self, held: bool) -> None:
        (self._hold.set if held else self._hold.clear)()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(3)
        self._close()


# ------------------------------------------------------------------ simulation
@dataclass
class _Descriptor:
    idVendor: int = VID
    idProduct: int = PID
    bLength: int = 18
    bDescriptorType: int = 1
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    bMaxPacketSize0: int = 64
    bcdDevice: int = 0x0210
    iManufacturer: int = 0
    iProduct: int = 0
    iSerialNumber: int = 0
    bNumConfigurations: int = 1
    address: int = 7
    bus: int = 1
    port_number: int = 1
    port_numbers: tuple = (1,)
    speed: int = 3


def _usb_error(msg: str, errno_: int):
    import usb.core

    return usb.core.USBError(msg, errno=errno_)


def read_state(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"present": False}


def write_state(path: str, **kw) -> None:
    """Update the simulated board's state file atomically (tests, CLI)."""
    state = read_state(path) if os.path.exists(path) else {}
    state.setdefault("present", True)
    state.update(kw)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def simulated_backend(state_path: str):
    """A pyusb backend with one simulated XVF3800 driven by `state_path`."""
    import usb.backend

    class SimulatedBoard(usb.backend.IBackend):
        def __init__(self) -> None:
            self.values: dict[tuple[int, int], bytes] = {}
            self.transfers = 0

        def _state(self) -> dict:
            return read_state(state_path)

        def enumerate_devices(self):
            if self._state().get("present", False):
                yield "xvf3800-sim"

        def get_device_descriptor(self, dev):
            return _Descriptor()

        def open_device(self, dev):
            if not self._state().get("present", False):
                raise _usb_error("No such device (it may have been disconnected)", 19)
            return dev

        def close_device(self, dev_handle):
            pass

        def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
            st = self._state()
            if not st.get("present", False):
                raise _usb_error("No such device (it may have been disconnected)", 19)
            self.transfers += 1
            if bmRequestType & 0x80 == 0:        # write
                self.values[(wIndex, wValue)] = bytes(data)
                return len(data)
            cmdid = wValue & 0x7F
            if st.get("retries", 0) > 0:          # the servicer is busy for this many reads
                write_state(state_path, retries=int(st["retries"]) - 1)
                payload = bytes([SERVICER_COMMAND_RETRY])
            elif (wIndex, cmdid) == PARAMETERS["DOA_VALUE_RADIANS"][:2]:
                payload = bytes([0]) + struct.pack("<ff", float(st.get("angle", math.pi / 2)),
                                                   1.0 if st.get("speech") else 0.0)
            elif (wIndex, cmdid) == PARAMETERS["VERSION"][:2]:
                payload = bytes([0, 2, 1, 0])
            elif (wIndex, cmdid) in self.values:
                payload = bytes([0]) + self.values[(wIndex, cmdid)]
            else:
                payload = bytes([0]) + bytes(len(data) - 1)
            n = min(len(data), len(payload))
            data[:n] = array.array("B", payload[:n])
            return n

    return SimulatedBoard()
