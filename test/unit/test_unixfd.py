"""core/media/unixfd.FrameServer: the SDK camera socket's protocol, lifecycle and faults.
The client here is a protocol reader for the unit level; the vendor's real client
(GStreamer's unixfdsrc in the SDK) is driven by test/system/test_camera_socket_sdk.py."""
from __future__ import annotations

import array
import mmap
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest

from reachy_mini.core.media import unixfd
from reachy_mini.core.media.unixfd import CAPS, EOS, HEADER, NEW_BUFFER, NEW_BUFFER_FMT, RELEASE_BUFFER, FrameServer

W, H = 64, 48


def wait_for(pred, timeout=20.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met in time")


class Reader:
    """Reads the unixfd protocol as unixfdsrc does: header by recvmsg (with fds), then payload."""

    def __init__(self, path, w=W, h=H):
        self.w, self.h = w, h
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(10.0)

    def _exact(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b

    def command(self):
        fds = array.array("i")
        data, anc, _, _ = self.s.recvmsg(HEADER.size, socket.CMSG_SPACE(4 * fds.itemsize))
        if not data:
            raise EOFError
        data += self._exact(HEADER.size - len(data)) if len(data) < HEADER.size else b""
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(raw[: len(raw) - len(raw) % fds.itemsize])
        kind, size = HEADER.unpack(data)
        return kind, self._exact(size) if size else b"", list(fds)

    def frame(self, release=True):
        while True:
            kind, payload, fds = self.command()
            if kind == NEW_BUFFER:
                break
            assert kind == CAPS, kind
        buf_id, pts, *_rest, mtype, n_mem, _n_meta = NEW_BUFFER_FMT.unpack_from(payload)
        size, offset = struct.unpack_from("=QQ", payload, NEW_BUFFER_FMT.size)
        assert (mtype, n_mem, len(fds)) == (0, 1, 1)
        with mmap.mmap(fds[0], size + offset, prot=mmap.PROT_READ) as mm:
            img = np.frombuffer(mm, np.uint8, size, offset).reshape(self.h, self.w, 3).copy()
        os.close(fds[0])
        if release:
            self.release(buf_id)
        return buf_id, pts, img

    def release(self, buf_id):
        self.s.sendall(HEADER.pack(RELEASE_BUFFER, 8) + struct.pack("=Q", buf_id))

    def close(self):
        self.s.close()


def frame(n):
    f = np.zeros((H, W, 3), np.uint8)
    f[:, :, 0] = n % 256
    f[0, 0] = (1, 2, 3)
    return f


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "cam.sock")


@pytest.fixture
def server(path):
    srv = FrameServer(path, W, H, fps=200.0, stuck_s=2.0, idle_s=0.6, retry_s=0.1)
    yield srv
    srv.close()


def feed(srv, n, until=None, timeout=20.0):
    """Publishes frames n, n+1, ... until `until()` holds; returns the next n."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        srv.publish(frame(n), time.monotonic())
        n += 1
        if until is None or until():
            return n
        time.sleep(0.006)
    raise AssertionError("condition not met while feeding frames")


def test_protocol_constants_match_gstreamer():
    assert (HEADER.size, NEW_BUFFER_FMT.size) == (8, 56)
    assert (NEW_BUFFER, RELEASE_BUFFER, CAPS, EOS) == (0, 1, 2, 3)
    assert unixfd.caps_string(1920, 1080, 15.0) == ("video/x-raw, format=(string)BGR, width=(int)1920, "
                                                    "height=(int)1080, framerate=(fraction)15/1, "
                                                    "pixel-aspect-ratio=(fraction)1/1")


def test_socket_appears_with_frames_and_serves_caps_then_frames(server, path):
    assert not os.path.exists(path)                      # no frame yet: no socket (apps would wait forever)
    feed(server, 0, lambda: os.path.exists(path))
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    r = Reader(path)
    kind, payload, fds = r.command()
    assert kind == CAPS and payload.endswith(b"\0") and not fds
    assert b"format=(string)BGR, width=(int)64, height=(int)48" in payload
    got = []

    def one():
        try:
            r.s.settimeout(0.02)
            got.append(r.frame())
        except (TimeoutError, socket.timeout):
            pass
        return len(got) >= 3
    n = feed(server, 100, one)
    for buf_id, pts, img in got:
        assert img[0, 0].tolist() == [1, 2, 3] and 100 <= img[1, 1, 0] < n
        assert abs(pts / 1e9 - time.monotonic()) < 30     # CLOCK_MONOTONIC nanoseconds
    assert len({g[0] for g in got}) == 3
    s = wait_for(lambda: (x := server.snapshot())["clients"] == 1 and x)
    assert s["serving"] and s["frames"] >= 3 and s["bad_clients"] == 0
    r.close()
    wait_for(lambda: server.snapshot()["clients"] == 0)


def test_two_clients_at_once_and_the_pool_stays_bounded(server, path):
    feed(server, 0, lambda: os.path.exists(path))
    a, b = Reader(path), Reader(path)
    wait_for(lambda: server.snapshot()["clients"] == 2)
    counts = [0, 0]

    def both():
        for i, r in enumerate((a, b)):
            try:
                r.s.settimeout(0.01)
                r.frame()
                counts[i] += 1
            except (TimeoutError, socket.timeout):
                pass
        return min(counts) >= 5
    feed(server, 0, both)
    assert server.snapshot()["pool"] <= server.max_slots
    a.close(), b.close()


def test_a_client_that_never_releases_is_bounded_then_dropped_and_capture_goes_on(path):
    srv = FrameServer(path, W, H, fps=200.0, stuck_s=3.0, idle_s=2.0, retry_s=0.1)
    try:
        feed(srv, 0, lambda: os.path.exists(path))
        lazy, good = Reader(path), Reader(path)
        wait_for(lambda: srv.snapshot()["clients"] == 2)
        got, stop = [], threading.Event()

        def drain():   # the good app reads and releases continuously, on its own thread
            good.s.settimeout(0.2)
            while not stop.is_set():
                try:
                    good.frame()
                    got.append(1)
                except (TimeoutError, socket.timeout):
                    pass
                except (EOFError, OSError):
                    return
        th = threading.Thread(target=drain, daemon=True)
        th.start()
        t0 = time.monotonic()
        n = feed(srv, 0, lambda: len(got) >= 20)
        s = srv.snapshot()
        assert s["missed"] > 0 and s["pool"] <= srv.max_outstanding * 2 + 1   # the lazy one holds <= 3 buffers
        n = feed(srv, n, lambda: srv.snapshot()["stuck_clients"] >= 1)
        assert time.monotonic() - t0 >= 3.0 - 0.1
        assert "released no buffer" in srv.snapshot()["last_error"]
        with pytest.raises((EOFError, ConnectionResetError)):
            lazy.s.settimeout(10)
            while True:
                lazy.command()
        before = len(got)
        feed(srv, n, lambda: len(got) >= before + 5)            # the good app still gets frames
        stop.set()
        th.join(5)
        good.close()
    finally:
        srv.close()


@pytest.mark.parametrize("garbage", [
    HEADER.pack(RELEASE_BUFFER, 8) + struct.pack("=Q", 999999),        # unknown buffer id
    HEADER.pack(NEW_BUFFER, 0),                                         # a server's command
    HEADER.pack(RELEASE_BUFFER, 10 ** 9),                               # absurd size
    HEADER.pack(RELEASE_BUFFER, 2) + b"xx",                             # short payload
])
def test_garbage_ends_that_client_only(server, path, garbage):
    feed(server, 0, lambda: os.path.exists(path))
    bad, good = Reader(path), Reader(path)
    wait_for(lambda: server.snapshot()["clients"] == 2)
    bad.s.sendall(garbage)
    feed(server, 0, lambda: server.snapshot()["bad_clients"] == 1)
    assert "garbage" in server.snapshot()["last_error"]
    good.s.settimeout(10)
    seen = []

    def reads():
        try:
            good.s.settimeout(0.01)
            good.frame()
            seen.append(1)
        except (TimeoutError, socket.timeout):
            pass
        return len(seen) >= 2
    feed(server, 0, reads)
    assert server.snapshot()["clients"] == 1
    bad.close(), good.close()


def test_unknown_commands_and_eos_from_a_client_are_ignored(server, path):
    feed(server, 0, lambda: os.path.exists(path))
    r = Reader(path)
    r.s.sendall(HEADER.pack(7, 3) + b"abc" + HEADER.pack(EOS, 0))
    got = []

    def reads():
        try:
            r.s.settimeout(0.01)
            r.frame()
            got.append(1)
        except (TimeoutError, socket.timeout):
            pass
        return len(got) >= 2
    feed(server, 0, reads)
    assert server.snapshot()["bad_clients"] == 0
    r.close()


def test_socket_goes_away_without_frames_clients_stay_and_resume(server, path):
    feed(server, 0, lambda: os.path.exists(path))
    r = Reader(path)
    wait_for(lambda: server.snapshot()["clients"] == 1)
    wait_for(lambda: not os.path.exists(path))                      # camera lost: no frames for idle_s
    assert server.snapshot()["clients"] == 1 and "no camera frame" in server.snapshot()["last_event"]
    feed(server, 0, lambda: os.path.exists(path))                   # frames again: a new socket
    got = []

    def reads():
        try:
            r.s.settimeout(0.01)
            r.frame()
            got.append(1)
        except (TimeoutError, socket.timeout):
            pass
        return got
    feed(server, 0, reads)                                           # the old client is served again


def test_pause_removes_the_path_and_close_sends_eos(server, path):
    feed(server, 0, lambda: os.path.exists(path))
    r = Reader(path)
    wait_for(lambda: server.snapshot()["clients"] == 1)
    server.pause(True)
    assert not os.path.exists(path)
    for i in range(5):
        server.publish(frame(i))
    assert not os.path.exists(path)
    server.pause(False)
    feed(server, 0, lambda: os.path.exists(path))
    server.close()
    assert not os.path.exists(path)
    kinds = []
    r.s.settimeout(10)
    try:
        while True:
            kinds.append(r.command()[0])
    except EOFError:
        pass
    assert kinds[-1] == EOS


def test_a_crashed_servers_stale_socket_is_replaced(path):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()                                    # the file stays, nobody listens: a crash
    os.chmod(path, 0o777)                           # told apart from ours (0600; inode numbers get reused)
    srv = FrameServer(path, W, H, fps=100.0, retry_s=0.1)
    try:
        feed(srv, 0, lambda: srv.snapshot()["serving"])
        assert os.stat(path).st_mode & 0o777 == 0o600 and srv.snapshot()["stale_removed"] == 1
        Reader(path).command()
    finally:
        srv.close()


def test_a_stale_regular_file_of_ours_is_replaced(path):
    open(path, "w").close()
    srv = FrameServer(path, W, H, fps=100.0, retry_s=0.1)
    try:
        feed(srv, 0, lambda: srv.snapshot()["serving"])
        assert srv.snapshot()["stale_removed"] == 1
    finally:
        srv.close()


def test_a_live_server_on_the_path_is_not_taken_over(path):
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    other.listen(4)
    srv = FrameServer(path, W, H, fps=100.0, retry_s=0.1)
    try:
        feed(srv, 0, lambda: "another server answers" in srv.snapshot()["last_error"])
        assert not srv.snapshot()["serving"]
        other.close()
        os.unlink(path)                              # the other server stops: we take the path
        feed(srv, 0, lambda: srv.snapshot()["serving"])
        assert srv.snapshot()["last_error"] == ""
    finally:
        srv.close()
        other.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_another_users_file_is_left_alone_and_reported(path):
    open(path, "w").close()
    os.chown(path, 65534, 65534)
    srv = FrameServer(path, W, H, fps=100.0, retry_s=0.1)
    try:
        feed(srv, 0, lambda: "another user (uid 65534)" in srv.snapshot()["last_error"])
        assert os.path.isfile(path) and not srv.snapshot()["serving"]
        os.unlink(path)                              # its owner removes it: served within the retry period
        feed(srv, 0, lambda: srv.snapshot()["serving"])
    finally:
        srv.close()


def test_max_clients_refused_and_counted(path):
    srv = FrameServer(path, W, H, fps=100.0, max_clients=1, retry_s=0.1)
    try:
        feed(srv, 0, lambda: srv.snapshot()["serving"])
        a = Reader(path)
        wait_for(lambda: srv.snapshot()["clients"] == 1)
        b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        b.connect(path)
        wait_for(lambda: srv.snapshot()["refused"] == 1)
        b.settimeout(10)
        assert b.recv(10) == b""
        a.close(), b.close()
    finally:
        srv.close()


def test_frames_are_served_at_the_configured_rate_not_the_capture_rate(path):
    srv = FrameServer(path, W, H, fps=10.0, retry_s=0.1)
    try:
        feed(srv, 0, lambda: srv.snapshot()["serving"])
        r = Reader(path)
        wait_for(lambda: srv.snapshot()["clients"] == 1)
        t0 = time.monotonic()
        got = []
        n = 0
        while time.monotonic() - t0 < 2.0:     # capture at ~100 fps for 2 s
            srv.publish(frame(n))
            n += 1
            try:
                r.s.settimeout(0.001)
                got.append(r.frame())
            except (TimeoutError, socket.timeout, BlockingIOError):
                pass
            time.sleep(0.01)
        assert n > 60 and len(got) <= 2.0 * 10 + 3
        r.close()
    finally:
        srv.close()
