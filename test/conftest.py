"""Shared fixtures: a real simulator process on a real pty, per-test ROS
domain isolation on loopback."""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if REPO not in sys.path:   # tools/ (bench, soak, harness) is not installed with the package
    sys.path.insert(0, REPO)
# unit/, integration/ and system/ share a few helpers (ros_probe, EVERY_KEY, Server)
for _d in ("unit", "integration", "system"):
    sys.path.insert(1, os.path.join(REPO, "test", _d))

from reachy_mini.sim.bus import send_command  # noqa: E402
from tools.harness.sched import sched_fifo_all_threads  # noqa: E402

# camera_node serves the vendor SDK's camera socket, by default at the SDK's fixed
# /tmp/reachymini_camera_socket: every camera_node this suite starts gets a private
# path instead (%p: its pid; nodes/camera_node.sdk_socket_path), so parallel stacks
# never share it. Only the real-client test (test_camera_socket_sdk.py) uses the SDK's path.
# The paths are in a directory of this run, removed at its end (a camera_node killed by a test
# leaves its socket file behind).
if "REACHY_MINI_SDK_CAMERA_SOCKET" not in os.environ:
    _xdg = os.environ.get("XDG_RUNTIME_DIR") or ""
    _CAMSOCK_DIR = tempfile.mkdtemp(prefix="reachy_mini_test_camsock-", dir=_xdg if os.path.isdir(_xdg) else "/tmp")
    os.environ["REACHY_MINI_SDK_CAMERA_SOCKET"] = os.path.join(_CAMSOCK_DIR, "%p")
    atexit.register(shutil.rmtree, _CAMSOCK_DIR, True)


def venv_skip_reason(venv: str, make: str) -> str | None:
    """Why a test venv (.venv-sdk, .venv-mcp: the vendor's clients, made by `make test`) cannot be used,
    or None: its tools/*_venv.sh writes the reason to <venv>.failed when it cannot be made."""
    if os.path.exists(os.path.join(REPO, venv, ".installed")):
        return None
    failed = os.path.join(REPO, venv + ".failed")
    if os.path.exists(failed):
        with open(failed) as f:
            return f.read().strip()
    return f"{venv} not made: run {make}"


SDK_SKIP = venv_skip_reason(".venv-sdk", "`make sdk-venv` (tools/sdk_venv.sh)")


class SimProcess:
    def __init__(self, tmp_path, wire_timing: bool = True):
        self.link = str(tmp_path / "ttyDXL")
        self.control = self.link + ".ctl"
        args = [sys.executable, "-m", "reachy_mini.sim.cli", "serve", "--link", self.link]
        if not wire_timing:
            args.append("--no-wire-timing")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("port: "), f"simulator did not start: {line!r}"
        self.proc.stdout.readline()
        # real servos are hardware, never delayed by host load: the simulator runs SCHED_FIFO where the
        # test may grant it (root, as in CI), so bus-timing tests judge the driver, not a starved simulator
        self.scheduler = sched_fifo_all_threads(self.proc.pid, 30)

    def inject(self, cmd: str, **kw):
        return send_command(self.control, {"cmd": cmd, **kw})

    def state(self):
        return self.inject("state")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def sim(tmp_path):
    s = SimProcess(tmp_path)
    yield s
    s.close()


def wait_for(pred, timeout: float = 10.0, period: float = 0.01):
    """Polls `pred` until it returns a truthy value; returns it or fails.
    The default timeout is generous (a loaded machine: two CPU hogs beside
    the suite): it bounds a wait for an event, it is not a timing assertion."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(period)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


_domain = [0]


def next_domain() -> str:
    """A distinct ROS_DOMAIN_ID per call (and per xdist worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    w = int(worker[2:]) if worker[2:].isdigit() else 0
    # runs side by side: give each its own ids (REACHY_MINI_TEST_DOMAIN_SPAN of them, default 40)
    fixed = os.environ.get("REACHY_MINI_TEST_DOMAIN_BASE")
    span = int(os.environ.get("REACHY_MINI_TEST_DOMAIN_SPAN", "40"))
    base = int(fixed) + w * span if fixed else 20 + w * 40 + (os.getpid() % 7) * 5
    # DDS ports of domains above 101 fall in Linux's ephemeral port range (ROS 2 docs, "The ROS_DOMAIN_ID")
    assert 0 <= base and 1 <= span and base + span - 1 <= 101, \
        f"REACHY_MINI_TEST_DOMAIN_BASE={fixed}, _SPAN={span}: the ids must stay within 0..101"
    _domain[0] += 1
    return str(base + _domain[0] % span)


@pytest.fixture
def ros_env(monkeypatch):
    """A distinct ROS_DOMAIN_ID per test (and per xdist worker), loopback only."""
    monkeypatch.setenv("ROS_DOMAIN_ID", next_domain())
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return dict(os.environ)


@pytest.fixture
def cpu_hogs():
    """Two CPU hogs (`stress-ng --cpu 2`, tools/sysdeps.sh test installs it)
    beside the test, as on a busy robot; bounded (10 min) and killed at the
    end, whatever the test did."""
    import shutil
    import signal

    exe = shutil.which("stress-ng")
    if exe is None:
        pytest.skip("stress-ng not installed (tools/sysdeps.sh test installs it)")
    p = subprocess.Popen([exe, "--cpu", "2", "--timeout", "600s", "--quiet"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield p
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)   # stress-ng and its workers (its own session)
        except ProcessLookupError:
            pass
        p.wait(10)


@contextlib.contextmanager
def whole_stack(tmp: str, from_end: int, port: int | None = None):
    """The whole simulated stack (tools/bench/stack.Stack: motor_node on the
    simulated bus, health_node, web_bridge, ...) on this run's domain id
    base + span - from_end (the system tests that share a module-wide stack
    take ids from the end of the block; ros_env cycles from its start),
    serving /api/health; `url` and `ctl` (the simulator's control socket) set."""
    import httpx

    from tools.bench.stack import Stack

    base = int(os.environ.get("REACHY_MINI_TEST_DOMAIN_BASE", "20"))
    span = int(os.environ.get("REACHY_MINI_TEST_DOMAIN_SPAN", "40"))
    dom = str(base + span - from_end)
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = dom
    st = Stack(tmp, domain=dom, port=port)

    def healthy():
        try:
            return httpx.get(f"http://127.0.0.1:{st.port}/api/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        st.pids()
        wait_for(healthy, timeout=30, period=0.3)
        st.url = f"http://127.0.0.1:{st.port}"
        st.ctl = os.path.join(tmp, "reachy_mini_sim", "ttyDXL.ctl")
        yield st
    finally:
        st.stop()
        if old is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = old
