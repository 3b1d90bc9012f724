"""Private runtime files and the instance lock (common/paths.py,
common/instance.py), and the health node's trust in state-file pids
(core/health/system.ProcessMonitor): each refusal with its message."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from reachy_mini.common import paths
from reachy_mini.common.instance import LOCKED_BY_ENV, AlreadyRunning, InstanceLock, acquire_all, locked_by_parent
from reachy_mini.common.node_table import EXIT_ALREADY_RUNNING, EXIT_UNSAFE_RUNTIME_DIR
from reachy_mini.common.paths import UnsafeRuntimeDir, lock_file, runtime_dir, state_file
from reachy_mini.core.health.system import ProcessMonitor


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def test_per_user_runtime_dir_is_created_private(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(paths, "TMP_BASE", str(tmp_path))
    d = runtime_dir()
    assert d == str(tmp_path / f"reachy_mini-{os.getuid()}")
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert state_file().startswith(d + "/") and lock_file("robot1", "motor_node") == \
        os.path.join(d, "reachy_mini.robot1-motor_node.lock")


def test_runtime_dir_of_another_user_is_refused(xdg, monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: os.stat(xdg).st_uid + 4242)
    with pytest.raises(UnsafeRuntimeDir, match=r"is owned by uid \d+, not by you .*set XDG_RUNTIME_DIR"):
        runtime_dir()


def test_world_writable_runtime_dir_is_refused(xdg):
    os.chmod(xdg, 0o777)
    with pytest.raises(UnsafeRuntimeDir, match=r"writable by other users \(mode 777\).*chmod 700"):
        runtime_dir()
    os.chmod(xdg, 0o755)
    assert runtime_dir() == str(xdg), "readable is fine, writable is not"


def test_symlinked_runtime_dir_is_refused(tmp_path, monkeypatch, xdg):
    link = tmp_path / "link"
    link.symlink_to(xdg)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(link))
    with pytest.raises(UnsafeRuntimeDir, match="symbolic link"):
        runtime_dir()


def test_instance_lock_second_holder_is_refused_with_the_message(xdg):
    first = InstanceLock("", what="reachy-mini-bringup").acquire()
    with pytest.raises(AlreadyRunning) as e:
        InstanceLock("").acquire()
    msg = str(e.value)
    assert msg.startswith(f"reachy_mini is already running in namespace '' (pid {os.getpid()}, started 20")
    assert msg.endswith("reachy-mini-bringup); use --namespace or stop it")
    assert os.stat(first.path).st_mode & 0o777 == 0o600
    InstanceLock("robot1").acquire().release()     # another namespace: its own lock
    first.release()
    InstanceLock("").acquire().release()           # released: free again


def test_acquire_all_gives_the_exit_status_and_keeps_nothing_on_failure(xdg):
    """The supervisor's and every node's rule: all the locks or none, with
    exit 4 (another stack) or 5 (an unsafe runtime directory)."""
    other = InstanceLock("", "web_bridge").acquire()
    held, status, why = acquire_all([("", None, "a"), ("", "motor_node", "b"), ("", "web_bridge", "c")])
    assert (held, status) == ([], EXIT_ALREADY_RUNNING) and "already running in namespace ''" in why
    InstanceLock("").acquire().release()            # the ones taken before the failure were released
    InstanceLock("", "motor_node").acquire().release()
    other.release()
    held, status, why = acquire_all([("", None, "a"), ("", "web_bridge", "c")])
    assert status is None and why == "" and len(held) == 2
    for lock in held:
        lock.release()
    os.chmod(xdg, 0o777)
    try:
        assert acquire_all([("", None, "a")])[1] == EXIT_UNSAFE_RUNTIME_DIR
    finally:
        os.chmod(xdg, 0o700)


def test_instance_lock_dies_with_its_holder(xdg):
    code = ("import sys, time; from reachy_mini.common.instance import InstanceLock; "
            "InstanceLock('robot2', 'motor_node').acquire(); print('locked', flush=True); time.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunning, match=f"namespace 'robot2' \\(pid {p.pid}, "):
            InstanceLock("robot2", "motor_node").acquire()
    finally:
        p.kill()
        p.wait()
    InstanceLock("robot2", "motor_node").acquire().release()


def test_lock_file_of_another_user_is_refused(xdg, monkeypatch):
    InstanceLock("").acquire().release()
    monkeypatch.setattr(os, "getuid", lambda: 4242)
    monkeypatch.setattr(paths, "runtime_dir", lambda: str(xdg))
    with pytest.raises(UnsafeRuntimeDir, match="instance lock .* is owned by uid"):
        InstanceLock("").acquire()


def test_locked_by_parent(monkeypatch):
    monkeypatch.setenv(LOCKED_BY_ENV, str(os.getppid()))
    assert locked_by_parent()
    monkeypatch.setenv(LOCKED_BY_ENV, str(os.getppid() + 1))
    assert not locked_by_parent(), "a stale or foreign value takes no lock off"


NODES = {"motor_node": "reachy_mini.nodes.motor_node"}


def _proc(*argv, script=None):
    p = subprocess.Popen([sys.executable, *([script] if script else ["-c", "import time; time.sleep(60)"]), *argv])
    for _ in range(100):       # the exec done: the command line is the new one
        try:
            if (script or "time.sleep(60)") in " ".join(psutil.Process(p.pid).cmdline()):
                break
        except psutil.Error:
            pass
        time.sleep(0.02)
    return p


def _state(path, sup, node_pid, started=None):
    path.write_text(json.dumps({"supervisor_pid": sup.pid, "supervisor_started":
                                psutil.Process(sup.pid).create_time() if started is None else started,
                                "nodes": {"motor_node": {"pid": node_pid, "starts": 1, "restarts": 0}}}))


def test_state_file_pids_are_trusted_only_when_ours(tmp_path, monkeypatch):
    sf = tmp_path / "state.json"
    mon = ProcessMonitor(NODES, str(sf))
    sup = _proc("reachy-mini-bringup")            # a supervisor-looking process of ours
    exe = tmp_path / "motor_node"          # as ros2 launch runs it: .../lib/reachy_mini/motor_node
    exe.write_text("import time\ntime.sleep(60)\n")
    node = _proc("--ros-args", script=str(exe))
    other = _proc("some-other-program")
    try:
        _state(sf, sup, node.pid)
        info = mon.sample()["motor_node"]
        assert mon.manager == "supervisor" and info.pid == node.pid and mon.refused == ""
        _state(sf, sup, other.pid)                 # a pid that is not this stack's node
        info = mon.sample()["motor_node"]
        assert info.pid is None and "is another program" in mon.refused
        _state(sf, other, node.pid)                # supervisor_pid is not a supervisor
        mon.sample()
        assert mon.manager == "launch" and "is not a reachy_mini process" in mon.refused
        _state(sf, sup, node.pid, started=time.time() - 3600)   # a recycled pid
        mon.sample()
        assert mon.manager == "launch" and "pid reused" in mon.refused
        _state(sf, sup, node.pid)
        monkeypatch.setattr(os, "getuid", lambda: os.stat(sf).st_uid + 4242)   # the file is someone else's
        mon.sample()
        assert mon.manager == "launch" and "state file" in mon.refused and "not by you" in mon.refused
    finally:
        for p in (sup, node, other):
            p.kill()
            p.wait()
