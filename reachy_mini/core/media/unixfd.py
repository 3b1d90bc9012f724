"""The SDK's local camera socket: GStreamer's unixfdsink protocol in plain Python.

The vendor SDK (reachy-mini 1.13.0) reads an app's frames from a unix stream
socket, /tmp/reachymini_camera_socket, with `unixfdsrc ! queue ! videoconvert
! appsink` (BGR at the camera spec's size). The protocol (upstream
gst-plugins-bad gst/unixfd/, GStreamer >= 1.24):

- every message is an 8-byte header (u32 type, u32 payload size, native
  endianness) and the payload; file descriptors travel as SCM_RIGHTS with the
  header bytes (the receiver reads the header with recvmsg, then the payload);
- the server first sends CAPS: a NUL-terminated caps string;
- then a NEW_BUFFER per frame: 56 bytes (u64 id, pts, dts, duration, offset,
  offset_end; u32 flags; u8 memory type (0: plain fd); u8 n_memory; u16 n_meta
  (padding before 1.26)) and 16 bytes per memory (u64 size, offset), with one
  fd per memory (here one memfd holding the whole BGR frame); pts in
  CLOCK_MONOTONIC nanoseconds (the client converts to its running time);
- the client answers RELEASE_BUFFER (u64 id) when it no longer maps the buffer;
  an unknown id or a command a client must not send ends that client;
- EOS (type 3) ends the stream.

FrameServer serves it: the listening socket exists exactly while frames flow
or can flow at once (created on the first frame, or while `set_standby(True)`
says the camera is closed for want of a reader but present, so that an app
connecting is what starts the capture: the node counts `clients`); removed when no frame
came for `idle_s` outside standby, on pause() and on close(). Why it goes
away: the vendor SDK uses the socket whenever the file exists and waits for
frames forever, so a socket with no camera behind it would hang apps. A
crashed server's stale file is replaced, never
reused; a file owned by another user, or a path a live server answers on, is
left alone and reported). Frames go to every client at `fps` from a bounded
pool of memfds written once per frame; a client that is behind (its unreleased
buffers at `max_outstanding`, or its socket full) misses frames, counted; one
that releases nothing for `stuck_s` is disconnected, counted; garbage ends the
client that sent it, counted. The capture thread never blocks on a client:
sends are non-blocking.
"""
from __future__ import annotations

import array
import mmap
import os
import selectors
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

NEW_BUFFER, RELEASE_BUFFER, CAPS, EOS = 0, 1, 2, 3
HEADER = struct.Struct("=II")
NEW_BUFFER_FMT = struct.Struct("=QQQQQQIBBH")   # 56 bytes
MEMORY_FMT = struct.Struct("=QQ")               # 16 bytes
RELEASE_FMT = struct.Struct("=Q")
CLOCK_TIME_NONE = 0xFFFFFFFFFFFFFFFF
MAX_CLIENT_PAYLOAD = 4096    # a client only ever sends RELEASE_BUFFER (8 bytes)
DEFAULT_PATH = "/tmp/reachymini_camera_socket"

assert NEW_BUFFER_FMT.size == 56 and MEMORY_FMT.size == 16 and HEADER.size == 8


def caps_string(width: int, height: int, fps: float) -> str:
    num, den = (int(round(fps)), 1) if abs(fps - round(fps)) < 1e-6 else (int(round(fps * 1000)), 1000)
    return (f"video/x-raw, format=(string)BGR, width=(int){width}, height=(int){height}, "
            f"framerate=(fraction){num}/{den}, pixel-aspect-ratio=(fraction)1/1")


def pack(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def new_buffer_payload(buf_id: int, pts_ns: int, size: int) -> bytes:
    return NEW_BUFFER_FMT.pack(buf_id, pts_ns, CLOCK_TIME_NONE, CLOCK_TIME_NONE, CLOCK_TIME_NONE,
                               CLOCK_TIME_NONE, 0, 0, 1, 0) + MEMORY_FMT.pack(size, 0)


class ProtocolError(Exception):
    """A client sent something the protocol does not allow."""


def parse_client_messages(buf: bytearray) -> list[tuple[int, bytes]]:
    """Complete (type, payload) messages at the front of `buf` (consumed); raises ProtocolError."""
    out = []
    while len(buf) >= HEADER.size:
        kind, size = HEADER.unpack_from(buf)
        if size > MAX_CLIENT_PAYLOAD:
            raise ProtocolError(f"message of {size} bytes (type {kind})")
        if len(buf) < HEADER.size + size:
            break
        out.append((kind, bytes(buf[HEADER.size:HEADER.size + size])))
        del buf[:HEADER.size + size]
    return out


@dataclass
class _Slot:
    fd: int
    mm: mmap.mmap
    size: int
    holders: set = field(default_factory=set)   # ids of clients that have not released it


@dataclass
class _Client:
    sock: socket.socket
    ident: int
    out: bytes = b""                                 # rest of a partially sent message
    inbuf: bytearray = field(default_factory=bytearray)
    held: dict = field(default_factory=dict)         # buffer id -> (slot, sent at)
    sent: int = 0
    missed: int = 0
    released: int = 0
    connected: float = field(default_factory=time.monotonic)


class FrameServer:
    def __init__(self, path: str = DEFAULT_PATH, width: int = 1920, height: int = 1080, fps: float = 15.0,
                 max_clients: int = 8, max_outstanding: int = 3, stuck_s: float = 10.0, idle_s: float = 1.0,
                 retry_s: float = 2.0, log: Callable[[str], None] | None = None) -> None:
        self.path, self.width, self.height, self.fps = path, width, height, fps
        self.max_clients, self.max_outstanding, self.stuck_s = max_clients, max_outstanding, stuck_s
        self.idle_s, self.retry_s = idle_s, retry_s
        self.log = log or (lambda _m: None)
        self.standby = False
        self.frame_bytes = width * height * 3
        self.caps = caps_string(width, height, fps).encode() + b"\0"
        self.lock = threading.Lock()
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.listen_ino: tuple[int, int] | None = None
        self.clients: dict[int, _Client] = {}
        self.slots: list[_Slot] = []
        self.free: list[_Slot] = []
        self.max_slots = max_clients * max_outstanding + 1
        self.next_id = 1
        self.next_client = 1
        self.period = 1.0 / fps
        self.next_due = 0.0
        self.last_frame = 0.0
        self.next_try = 0.0
        self.paused = False
        self.closed = False
        # counters (snapshot())
        self.frames = 0            # frames served (sent to at least one client)
        self.client_frames = 0     # frame deliveries, all clients
        self.missed = 0            # deliveries skipped: client behind (unreleased buffers or full socket)
        self.bad_clients = 0       # disconnected for protocol garbage
        self.stuck_clients = 0     # disconnected for releasing nothing for stuck_s
        self.refused = 0           # connections over max_clients
        self.connections = 0
        self.stale_removed = 0
        self.bind_failures = 0
        self.last_error = ""
        self.last_event = ""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread = threading.Thread(target=self._run, name="sdk-socket", daemon=True)
        self._thread.start()

    # ---------- the listening socket ----------
    @property
    def serving(self) -> bool:
        return self.listener is not None

    def _event(self, msg: str) -> None:
        self.last_event = msg
        self.log(msg)

    def _error(self, msg: str) -> None:
        if msg != self.last_error:
            self.log(msg)
        self.last_error = msg

    def _free_path(self) -> bool:
        """Makes self.path free to bind: removes a crashed server's socket or our own stale
        file; refuses a live server's socket or another user's file (reported)."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return True
        except OSError as e:
            self._error(f"{self.path}: {e.strerror}")
            return False
        if stat.S_ISSOCK(st.st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(0.5)
            try:
                probe.connect(self.path)
                self._error(f"{self.path}: another server answers on it (another camera_node or the vendor daemon?); "
                            "not taken over")
                return False
            except OSError:
                pass       # nobody listens: a crashed server's socket
            finally:
                probe.close()
        if st.st_uid != os.geteuid():
            self._error(f"{self.path}: taken by a file of another user (uid {st.st_uid}); not removed — remove it "
                        "or set sdk_socket_path")
            return False
        if stat.S_ISDIR(st.st_mode):
            self._error(f"{self.path}: is a directory; not removed")
            return False
        try:
            os.unlink(self.path)
        except OSError as e:
            self._error(f"{self.path}: stale file cannot be removed: {e.strerror}")
            return False
        self.stale_removed += 1
        self._event(f"{self.path}: removed a stale {'socket' if stat.S_ISSOCK(st.st_mode) else 'file'} "
                    "(a previous server that did not stop cleanly)")
        return True

    def _listen(self) -> None:   # with self.lock
        now = time.monotonic()
        if now < self.next_try:
            return
        self.next_try = now + self.retry_s
        if not self._free_path():
            self.bind_failures += 1
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)   # owner only (0600) from the start: the camera is private
            try:
                s.bind(self.path)
            finally:
                os.umask(old)
            s.listen(16)
            s.setblocking(False)
            st = os.stat(self.path)
        except OSError as e:
            s.close()
            self.bind_failures += 1
            self._error(f"{self.path}: cannot serve: {e.strerror}")
            return
        self.listener, self.listen_ino = s, (st.st_dev, st.st_ino)
        self.sel.register(s, selectors.EVENT_READ, ("listen", None))
        self.last_error = ""
        self._event(f"serving the SDK camera socket {self.path} ({self.width}x{self.height} BGR, {self.fps:g} fps)")

    def _unlisten(self, why: str) -> None:   # with self.lock
        s, self.listener = self.listener, None
        if s is None:
            return
        self.sel.unregister(s)
        s.close()
        try:   # remove the path only if it is still ours (not a newer server's)
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.listen_ino:
                os.unlink(self.path)
        except OSError:
            pass
        self.listen_ino = None
        self._event(f"stopped serving {self.path}: {why}")

    # ---------- frames (capture thread) ----------
    def publish(self, frame, t_mono: float | None = None) -> bool:
        """Offers a captured BGR frame (HxWx3 uint8); served at `fps`. Never blocks on a client.
        Returns True when it was sent to at least one client."""
        now = time.monotonic()
        with self.lock:
            if self.closed:
                return False
            self.last_frame = now
            if self.paused:
                return False
            if self.listener is None:
                self._listen()
            if not self.clients or now < self.next_due - 0.3 * self.period:   # 0.3: capture jitter
                return False
            self.next_due = self.next_due + self.period if now - self.next_due < self.period else now + self.period
            targets = [c for c in self.clients.values()
                       if not c.out and len(c.held) < self.max_outstanding]
            for c in self.clients.values():
                if c not in targets:
                    c.missed += 1
                    self.missed += 1
            if not targets:
                return False
            slot = self._slot()
            if slot is None:
                return False
        self._fill(slot, frame)     # the copy happens outside the lock (the server thread keeps releasing)
        pts = int((t_mono if t_mono is not None else now) * 1e9)
        with self.lock:
            buf_id = self.next_id
            self.next_id += 1
            msg = pack(NEW_BUFFER, new_buffer_payload(buf_id, pts, self.frame_bytes))
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [slot.fd]))]
            sent = 0
            for c in targets:
                if c.ident not in self.clients:
                    continue
                try:
                    n = c.sock.sendmsg([msg], anc, socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    c.missed += 1
                    self.missed += 1
                    continue
                except OSError as e:
                    self._drop(c, f"send failed: {e.strerror}")
                    continue
                if n < len(msg):
                    c.out = msg[n:]
                slot.holders.add(c.ident)
                c.held[buf_id] = (slot, now)
                c.sent += 1
                sent += 1
            self.client_frames += sent
            if sent:
                self.frames += 1
            else:
                self._maybe_free(slot)
            return sent > 0

    def _slot(self) -> _Slot | None:   # with self.lock
        if self.free:
            return self.free.pop()
        if len(self.slots) >= self.max_slots:
            return None
        fd = os.memfd_create("reachy_mini_camera", os.MFD_CLOEXEC)
        os.ftruncate(fd, self.frame_bytes)
        slot = _Slot(fd, mmap.mmap(fd, self.frame_bytes), self.frame_bytes)
        self.slots.append(slot)
        return slot

    def _fill(self, slot: _Slot, frame) -> None:
        import numpy as np

        h, w = frame.shape[:2]
        if (w, h) != (self.width, self.height):
            import cv2

            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        dst = np.frombuffer(slot.mm, dtype=np.uint8, count=self.frame_bytes).reshape(self.height, self.width, 3)
        np.copyto(dst, frame)
        del dst

    def _maybe_free(self, slot: _Slot) -> None:   # with self.lock
        if not slot.holders and slot not in self.free:
            self.free.append(slot)

    # ---------- clients (server thread) ----------
    def _drop(self, c: _Client, why: str, eos: bool = False) -> None:   # with self.lock
        if self.clients.pop(c.ident, None) is None:
            return
        for slot, _ in c.held.values():
            slot.holders.discard(c.ident)
            self._maybe_free(slot)
        c.held.clear()
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        if eos:
            try:
                c.sock.send(pack(EOS), socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
            except OSError:
                pass
        c.sock.close()
        self._event(f"SDK camera client {c.ident} gone: {why} ({c.sent} frames sent, {c.missed} missed)")

    def _accept(self) -> None:   # with self.lock
        try:
            s, _ = self.listener.accept()
        except OSError:
            return
        if len(self.clients) >= self.max_clients:
            self.refused += 1
            self._error(f"refused an SDK camera client: {self.max_clients} already connected")
            s.close()
            return
        s.setblocking(False)
        try:
            s.send(pack(CAPS, self.caps), socket.MSG_NOSIGNAL)
        except OSError:
            s.close()
            return
        c = _Client(s, self.next_client)
        self.next_client += 1
        self.connections += 1
        self.clients[c.ident] = c
        self.sel.register(s, selectors.EVENT_READ, ("client", c.ident))
        self._event(f"SDK camera client {c.ident} connected ({len(self.clients)} now)")

    def _readable(self, c: _Client) -> None:   # with self.lock
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self._drop(c, f"receive failed: {e.strerror}")
            return
        if not data:
            self._drop(c, "disconnected")
            return
        c.inbuf += data
        try:
            msgs = parse_client_messages(c.inbuf)
            for kind, payload in msgs:
                if kind == RELEASE_BUFFER:
                    if len(payload) < RELEASE_FMT.size:
                        raise ProtocolError("release-buffer with a short payload")
                    (buf_id,) = RELEASE_FMT.unpack_from(payload)
                    held = c.held.pop(buf_id, None)
                    if held is None:
                        raise ProtocolError(f"release of unknown buffer {buf_id}")
                    held[0].holders.discard(c.ident)
                    self._maybe_free(held[0])
                    c.released += 1
                elif kind in (NEW_BUFFER, CAPS):
                    raise ProtocolError(f"command {kind} is the server's")
                # EOS and unknown commands are ignored (the protocol may grow)
        except ProtocolError as e:
            self.bad_clients += 1
            self._error(f"SDK camera client {c.ident} sent garbage: {e}; disconnected")
            self._drop(c, f"protocol error: {e}")

    def _flush(self, c: _Client) -> None:   # with self.lock
        if not c.out:
            return
        try:
            n = c.sock.send(c.out, socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
            c.out = c.out[n:]
        except BlockingIOError:
            pass
        except OSError as e:
            self._drop(c, f"send failed: {e.strerror}")

    def _housekeeping(self) -> None:   # with self.lock
        now = time.monotonic()
        for c in list(self.clients.values()):
            self._flush(c)
            if c.held and now - min(t for _, t in c.held.values()) > self.stuck_s:
                self.stuck_clients += 1
                self._error(f"SDK camera client {c.ident} released no buffer for {self.stuck_s:g} s; disconnected")
                self._drop(c, "stuck (buffers never released)")
        if self.listener is None and self.standby and not self.paused:
            self._listen()
        if self.listener is not None and (self.paused or (not self.standby and now - self.last_frame > self.idle_s)):
            self._unlisten("paused" if self.paused else f"no camera frame for {now - self.last_frame:.1f} s")

    def _run(self) -> None:
        while True:
            # clients: flush and check for stuck ones 5 times a second; none: once a second
            events = self.sel.select(timeout=0.2 if self.clients else 1.0)
            with self.lock:
                if self.closed:
                    return
                for key, _ in events:
                    kind, ident = key.data
                    if kind == "wake":
                        try:
                            self._wake_r.recv(64)
                        except OSError:
                            pass
                    elif kind == "listen" and self.listener is not None:
                        self._accept()
                    elif kind == "client" and ident in self.clients:
                        self._readable(self.clients[ident])
                self._housekeeping()

    # ---------- control ----------
    def set_standby(self, on: bool) -> None:
        """on: the camera is closed for want of a reader but present: keep (or start) listening
        without frames, so that an app connecting starts the capture. off: the usual rule
        (no frame for idle_s: the path goes away)."""
        with self.lock:
            if on == self.standby:
                return
            self.standby = on
            if not on:
                self.last_frame = max(self.last_frame, time.monotonic())   # idle_s counts from now
        self._wake_w.send(b"x")

    def pause(self, paused: bool = True) -> None:
        """paused: the path goes away (no new app connects), connected apps stay and get frames
        again on resume (the device was released, or lost)."""
        with self.lock:
            self.paused = paused
            if paused:
                self._unlisten("paused")
        self._wake_w.send(b"x")

    def close(self) -> None:
        """Stops serving: EOS to every client, the path removed, memfds closed."""
        with self.lock:
            if self.closed:
                return
            self._unlisten("stopping")
            for c in list(self.clients.values()):
                self._drop(c, "server stopping", eos=True)
            self.closed = True
            for s in self.slots:
                s.mm.close()
                os.close(s.fd)
            self.slots.clear()
            self.free.clear()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(2.0)
        self.sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def snapshot(self) -> dict:
        with self.lock:
            return {"serving": self.listener is not None, "path": self.path, "paused": self.paused,
                    "standby": self.standby,
                    "clients": len(self.clients), "frames": self.frames, "client_frames": self.client_frames,
                    "missed": self.missed, "bad_clients": self.bad_clients, "stuck_clients": self.stuck_clients,
                    "refused": self.refused, "connections": self.connections, "stale_removed": self.stale_removed,
                    "bind_failures": self.bind_failures, "pool": len(self.slots),
                    "last_error": self.last_error, "last_event": self.last_event}

