"""The simulated bus: a pseudo-terminal speaking Dynamixel Protocol 2.0 for
the nine Reachy Mini servos, with optional 1-Mbaud wire timing and a control
socket for fault injection (see `reachy-mini-sim-bus --help`)."""
from __future__ import annotations

import collections
import json
import os
import random
import selectors
import socket
import termios
import threading
import time
import tty
from typing import Any

from reachy_mini.sim import protocol as P
from reachy_mini.sim.servo import GOAL_POSITION, Servo


DEFAULT_MOTORS = [(10, "XC330-M288")] + [(i, "XL330-M288") for i in range(11, 17)] + [
    (17, "XL330-M077"), (18, "XL330-M077")]


class SimBus:
    """Owns the pty and the servos. `serve_forever()` runs the event loop;
    `handle_command()` is the fault-injection entry point (also reachable
    through the control socket)."""

    def __init__(self, link: str, control: str | None = None, baudrate: int = 1_000_000,
                 wire_timing: bool = True, motors=None, seed: int = 0) -> None:
        self.link = os.path.abspath(link)
        self.control_path = control or self.link + ".ctl"
        self.baudrate = baudrate
        self.wire_timing = wire_timing
        self.rng = random.Random(seed)
        self.servos = {i: Servo(i, m, random.Random(seed * 1000 + i)) for i, m in (motors or DEFAULT_MOTORS)}
        self.parser = P.InstructionParser()
        self.master = self.slave = -1
        self.vanished_until: float | None = None
        self.latency_s = 0.0
        self.latency_until: float | None = None
        self.late_next = 0          # this many replies come late_s late (after the master's deadline)
        self.late_s = 0.0
        self.corrupt_next = 0
        self.corrupt_until: float | None = None
        self.corrupt_rate = 0.0
        self.pending_garbage = b""
        self.line_free_at = 0.0
        self.last_step = time.monotonic()
        self.stopping = False   # set by the signal handler (cli.py), without a lock
        self.goal_log: collections.deque = collections.deque(maxlen=100_000)
        self._arrived = 0.0
        self.counters = {"instructions": 0, "responses": 0, "crc_errors_rx": 0, "corrupted_tx": 0, "late_tx": 0,
                         "garbage_tx": 0, "vanishes": 0}
        self.stop_event = threading.Event()
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(self.link), exist_ok=True)
        self._open_pty()
        self._open_control()

    # ---------------------------------------------------------------- pty
    def _open_pty(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        attrs = termios.tcgetattr(self.slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        os.set_blocking(self.master, False)
        tmp = self.link + ".tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)
        self.sel.register(self.master, selectors.EVENT_READ, "pty")
        self.parser = P.InstructionParser()

    def _close_pty(self) -> None:
        if self.master >= 0:
            self.sel.unregister(self.master)
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = -1
        try:
            os.unlink(self.link)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------ control
    def _open_control(self) -> None:
        try:
            os.unlink(self.control_path)
        except FileNotFoundError:
            pass
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(self.control_path)
        self.ctl.listen(8)
        self.ctl.setblocking(False)
        self.sel.register(self.ctl, selectors.EVENT_READ, "ctl")

    def _accept(self) -> None:
        conn, _ = self.ctl.accept()
        conn.settimeout(2.0)
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            try:
                req = json.loads(data.decode() or "{}")
                reply = self.handle_command(req)
            except Exception as e:  # noqa: BLE001 - any bad request gets an error reply
                reply = {"ok": False, "error": str(e)}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def _servo(self, req: dict) -> list[Servo]:
        target = req.get("id", "all")
        if target == "all":
            return list(self.servos.values())
        try:
            return [self.servos[int(target)]]
        except (KeyError, ValueError):
            raise ValueError(f"no motor with id {target!r}; ids are {sorted(self.servos)}") from None

    def handle_command(self, req: dict[str, Any]) -> dict[str, Any]:
        """Fault injection and inspection. `req` = {"cmd": ..., ...}."""
        cmd = req.get("cmd")
        now = time.monotonic()
        dur = req.get("duration")
        until = now + float(dur) if dur is not None else None
        with self.lock:
            if cmd in ("overheat", "overload", "voltage", "encoder", "shock"):
                for s in self._servo(req):
                    s.inject(cmd)
            elif cmd == "position_limits":   # the servo's EEPROM min/max position limits
                for s in self._servo(req):
                    s.set_position_limits(int(req["min"]), int(req["max"]))
            elif cmd == "clear":
                for s in self._servo(req):
                    s.clear_causes()
            elif cmd == "mute":
                for s in self._servo(req):
                    s.muted = True
            elif cmd == "unmute":
                for s in self._servo(req):
                    s.muted = False
            elif cmd == "corrupt":
                self.corrupt_next += int(req.get("count", 1))
                self.corrupt_rate = float(req.get("rate", 0.0))
                self.corrupt_until = until
            elif cmd == "garbage":
                n = int(req.get("count", 32))
                self.pending_garbage += bytes(self.rng.getrandbits(8) for _ in range(n))
                if self.master >= 0:
                    self._flush_garbage()
            elif cmd == "late":
                self.late_next += int(req.get("count", 1))
                self.late_s = float(req.get("ms", 12)) / 1000.0
            elif cmd == "latency":
                self.latency_s = float(req.get("ms", 20)) / 1000.0
                self.latency_until = until
            elif cmd == "vanish":
                if self.master >= 0:
                    self._close_pty()
                    self.counters["vanishes"] += 1
                self.vanished_until = until
            elif cmd == "restore":
                if self.master < 0:
                    self._open_pty()
                self.vanished_until = None
            elif cmd == "reset":
                for s in self.servos.values():
                    s.clear_causes()
                    s.muted = False
                    s.t[70] = 0
                self.latency_s, self.corrupt_next, self.corrupt_rate, self.late_next = 0.0, 0, 0.0, 0
                if self.master < 0:
                    self._open_pty()
                self.vanished_until = None
            elif cmd == "state":
                return {"ok": True, "link": self.link, "connected": self.master >= 0,
                        "counters": dict(self.counters), "latency_ms": self.latency_s * 1000,
                        "motors": {i: self._motor_state(s) for i, s in self.servos.items()}}
            elif cmd == "ping":
                return {"ok": True}
            elif cmd == "goals":   # goal writes since the last call: [monotonic arrival, id, raw goal]
                log, self.goal_log = list(self.goal_log), collections.deque(maxlen=100_000)
                return {"ok": True, "goals": log}
            else:
                raise ValueError(f"unknown command {cmd!r}")
        return {"ok": True, "cmd": cmd}

    @staticmethod
    def _motor_state(s: Servo) -> dict[str, Any]:
        return {"position": int.from_bytes(s.t[132:136], "little", signed=True), "goal": s.goal(),
                "temperature": s.t[146], "voltage": s.t[144] / 10, "torque": s.torque,
                "hardware_error": s.hw_error, "muted": s.muted, "faults": sorted(s.forced),
                "position_limits": list(s.position_limits()),
                "reboots": s.reboots}

    # ------------------------------------------------------------ protocol
    def _respond(self, ins: P.Instruction) -> list[bytes]:
        sv = self.servos
        if ins.id == P.BROADCAST_ID:
            if ins.instruction == P.SYNC_WRITE and len(ins.params) >= 4:
                addr = int.from_bytes(ins.params[0:2], "little")
                n = int.from_bytes(ins.params[2:4], "little")
                body = ins.params[4:]
                for k in range(0, len(body) - n, n + 1):
                    s = sv.get(body[k])
                    if s is not None and not s.muted:
                        s.write(addr, bytes(body[k + 1:k + 1 + n]))
                        if addr == GOAL_POSITION:   # timestamped: bench measures goal -> wire
                            self.goal_log.append((self._arrived, body[k],
                                                  int.from_bytes(body[k + 1:k + 5], "little", signed=True)))
                return []
            if ins.instruction == P.SYNC_READ and len(ins.params) >= 4:
                addr = int.from_bytes(ins.params[0:2], "little")
                n = int.from_bytes(ins.params[2:4], "little")
                out = []
                for mid in ins.params[4:]:
                    s = sv.get(mid)
                    if s is None or s.muted:
                        break  # X-series answer in turn: a silent one blocks the rest
                    code, data = s.read(addr, n)
                    out.append(P.encode_status(mid, s.status_error_byte(code), data))
                return out
            if ins.instruction == P.PING:
                return [P.encode_status(i, s.status_error_byte(), s.t[0:2] + s.t[6:7])
                        for i, s in sorted(sv.items()) if not s.muted]
            return []
        s = sv.get(ins.id)
        if s is None or s.muted:
            return []
        if ins.instruction == P.PING:
            return [P.encode_status(s.id, s.status_error_byte(), bytes(s.t[0:2]) + bytes(s.t[6:7]))]
        if ins.instruction == P.READ:
            if len(ins.params) != 4:
                return [P.encode_status(s.id, s.status_error_byte(5))]
            code, data = s.read(int.from_bytes(ins.params[0:2], "little"), int.from_bytes(ins.params[2:4], "little"))
            return [P.encode_status(s.id, s.status_error_byte(code), data)]
        if ins.instruction == P.WRITE:
            if len(ins.params) < 3:
                return [P.encode_status(s.id, s.status_error_byte(5))]
            code = s.write(int.from_bytes(ins.params[0:2], "little"), bytes(ins.params[2:]))
            return [P.encode_status(s.id, s.status_error_byte(code))]
        if ins.instruction == P.REBOOT:
            s.reboot()
            return [P.encode_status(s.id, s.status_error_byte())]
        return [P.encode_status(s.id, s.status_error_byte(2))]  # instruction error

    def _wire(self, nbytes: int) -> float:
        return nbytes * 10.0 / self.baudrate if self.wire_timing else 0.0

    def _flush_garbage(self) -> None:
        if self.pending_garbage:
            try:
                os.write(self.master, self.pending_garbage)
                self.counters["garbage_tx"] += len(self.pending_garbage)
            except OSError:
                pass
            self.pending_garbage = b""

    def _maybe_corrupt(self, pkt: bytes, now: float) -> bytes:
        hit = False
        if self.corrupt_next > 0:
            self.corrupt_next -= 1
            hit = True
        elif self.corrupt_rate > 0 and (self.corrupt_until is None or now < self.corrupt_until):
            hit = self.rng.random() < self.corrupt_rate
        if not hit:
            return pkt
        self.counters["corrupted_tx"] += 1
        b = bytearray(pkt)
        b[self.rng.randrange(7, len(b))] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def _on_pty_readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:
            return  # EIO: nobody has the slave open any more; we keep our own
        arrived = time.monotonic()
        with self.lock:
            self._arrived = arrived
            self._advance(arrived)
            before = self.parser.crc_errors
            instrs = self.parser.feed(data)
            self.counters["crc_errors_rx"] += self.parser.crc_errors - before
            for ins in instrs:
                self.counters["instructions"] += 1
                replies = self._respond(ins)
                start = max(arrived, self.line_free_at)
                t = start + self._wire(ins.wire_len)
                if self.latency_until is not None and arrived >= self.latency_until:
                    self.latency_s, self.latency_until = 0.0, None
                if replies:
                    t += self.latency_s
                    if self.late_next > 0:
                        self.late_next -= 1
                        self.counters["late_tx"] += 1
                        t += self.late_s
                out = bytearray()
                for r in replies:
                    out += self._maybe_corrupt(r, arrived)
                    t += self._wire(len(r))
                self.line_free_at = t
                if out:
                    self._sleep_until(t)
                    self._flush_garbage()
                    try:
                        os.write(self.master, bytes(out))
                        self.counters["responses"] += len(replies)
                    except OSError:
                        pass

    @staticmethod
    def _sleep_until(t: float) -> None:
        while True:
            d = t - time.monotonic()
            if d <= 0:
                return
            if d > 0.0003:
                time.sleep(d - 0.0002)
            # else spin: sub-300 us sleeps overshoot too much for 1 Mbaud timing

    def _advance(self, now: float) -> None:
        dt = now - self.last_step
        if dt >= 0.01:  # physics at 100 Hz (exact exponential steps)
            for s in self.servos.values():
                s.step(dt)
            self.last_step = now

    # ---------------------------------------------------------------- loop
    def serve_forever(self) -> None:
        while not (self.stopping or self.stop_event.is_set()):
            timeout = 0.02
            for key, _ in self.sel.select(timeout):
                if key.data == "pty":
                    self._on_pty_readable()
                elif key.data == "ctl":
                    self._accept()
            now = time.monotonic()
            with self.lock:
                self._advance(now)
                if self.vanished_until is not None and now >= self.vanished_until and self.master < 0:
                    self._open_pty()
                    self.vanished_until = None

    def close(self) -> None:
        self.stop_event.set()
        with self.lock:
            self._close_pty()
            try:
                self.sel.unregister(self.ctl)
            except (KeyError, ValueError):
                pass
            self.ctl.close()
            try:
                os.unlink(self.control_path)
            except FileNotFoundError:
                pass


def send_command(control_path: str, req: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Sends one fault-injection command to a running simulator."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(control_path)
        s.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data.decode())
    if not reply.get("ok"):
        raise RuntimeError(f"simulator refused {req}: {reply.get('error')}")
    return reply
