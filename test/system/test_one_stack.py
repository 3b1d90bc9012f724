"""One stack per robot per machine, private runtime directory, quiet ordered
shutdown: with reachy-mini-bringup for real, and with ros2 launch where
launch_ros is importable (skipped cleanly otherwise)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from reachy_mini.common.node_table import EXIT_ALREADY_RUNNING, EXIT_UNSAFE_RUNTIME_DIR

from conftest import wait_for
from test_supervisor import read_state

ERROR_LINE = re.compile(r"\[(ERROR|FATAL)\]|FATAL:|Traceback|error during shutdown|did not stop")


def _supervisor(tmp_path, env, *extra, state="state.json"):
    argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--state-file", str(tmp_path / state),
            "--data-dir", str(tmp_path / "data"), *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _env(ros_env, tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    return dict(ros_env, XDG_RUNTIME_DIR=str(run), XDG_DATA_HOME=str(tmp_path / "xdg_data"))


def _running(state):
    return wait_for(lambda: (st := read_state(state)) and all(n["pid"] for n in st["nodes"].values()) and st,
                    timeout=20, period=0.2)


def test_second_start_in_the_same_namespace_exits_at_once(tmp_path, ros_env):
    """reachy-mini-bringup twice, and a lone node (as ros2 launch / ros2 run
    start them) beside it: each exits at once with status 4 and the message;
    the first stack keeps its processes and its simulated bus."""
    env = _env(ros_env, tmp_path)
    first = _supervisor(tmp_path, env, "--only", "motor_node", "camera_node")
    try:
        s = _running(str(tmp_path / "state.json"))
        pids = {k: n["pid"] for k, n in s["nodes"].items()}
        link = tmp_path / "run" / "reachy_mini_sim" / "ttyDXL"
        assert wait_for(lambda: os.path.exists(link), timeout=10)
        target = os.readlink(link)
        t0 = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim",
                                 "--state-file", str(tmp_path / "second.json")], env=env, capture_output=True,
                                text=True, timeout=30)
        took = time.monotonic() - t0
        assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr + second.stdout
        assert re.search(rf"reachy_mini is already running in namespace '' \(pid {first.pid}, started "
                         r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, reachy-mini-bringup\); use --namespace or stop it",
                         second.stderr), second.stderr
        assert "started" not in second.stdout, "nothing was started"
        assert not os.path.exists(tmp_path / "second.json")
        print(f"second reachy-mini-bringup refused in {took:.2f} s")
        lone = subprocess.run([sys.executable, "-m", "reachy_mini.nodes.motor_node", "--ros-args", "-p",
                               "use_sim:=true"], env=env, capture_output=True, text=True, timeout=30)
        assert lone.returncode == EXIT_ALREADY_RUNNING, lone.stderr
        assert f"[motor_node] FATAL: reachy_mini is already running in namespace '' (pid {first.pid}" in lone.stderr
        time.sleep(1.0)
        s = read_state(str(tmp_path / "state.json"))
        assert {k: n["pid"] for k, n in s["nodes"].items()} == pids and first.poll() is None
        assert all(n["restarts"] == 0 for n in s["nodes"].values())
        assert os.readlink(link) == target, "the first stack's simulated bus was not replaced"
    finally:
        first.send_signal(signal.SIGINT)
        out = first.communicate(timeout=20)[0]
    assert first.returncode == 0, out[-2000:]


def test_another_namespace_is_another_robot(tmp_path, ros_env):
    env = _env(ros_env, tmp_path)
    a = _supervisor(tmp_path, env, "--only", "camera_node", state="a.json")
    b = _supervisor(tmp_path, env, "--only", "camera_node", "--namespace", "robot9", state="b.json")
    try:
        _running(str(tmp_path / "a.json"))
        _running(str(tmp_path / "b.json"))
        assert a.poll() is None and b.poll() is None
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=20)


def test_unsafe_runtime_dir_is_refused(tmp_path, ros_env):
    env = _env(ros_env, tmp_path)
    os.chmod(env["XDG_RUNTIME_DIR"], 0o777)
    r = subprocess.run([sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == EXIT_UNSAFE_RUNTIME_DIR
    assert "is writable by other users (mode 777): refusing to use it; chmod 700" in r.stderr
    r = subprocess.run([sys.executable, "-m", "reachy_mini.nodes.camera_node", "--ros-args", "-p", "use_sim:=true"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == EXIT_UNSAFE_RUNTIME_DIR and "writable by other users" in r.stderr


def test_clean_stop_under_the_supervisor_logs_no_error(tmp_path, ros_env):
    """The whole simulated stack, stopped as Ctrl-C / systemd stop do: motor_node
    turns the torque off before its simulated bus stops, and no line of the
    stop is an ERROR."""
    env = _env(ros_env, tmp_path)
    sup = _supervisor(tmp_path, env, "--web-port", str(18310 + os.getpid() % 80))
    try:
        _running(str(tmp_path / "state.json"))
        time.sleep(8.0)        # every node up and publishing
    finally:
        mark = time.monotonic()
        sup.send_signal(signal.SIGINT)
        out = sup.communicate(timeout=30)[0]
    stop = out[out.rfind("got signal"):]
    assert sup.returncode == 0 and "all nodes stopped" in stop, out[-3000:]
    bad = [line for line in stop.splitlines() if ERROR_LINE.search(line)]
    assert bad == [], "\n".join(bad)
    print(f"stop took {time.monotonic() - mark:.1f} s")


def _launch_file():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS 2 from PyPI wheels)")
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory("reachy_mini"), "launch", "bringup.launch.py")
    except (ImportError, LookupError, OSError):
        pytest.skip("reachy_mini is not installed in an ament index (colcon build)")


def _launch(env, *args):
    from test_launch import RUN_LAUNCH

    return subprocess.Popen([sys.executable, "-c", RUN_LAUNCH, _launch_file(), "use_sim:=true", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_second_launch_in_the_same_namespace_stops_and_clean_stop(tmp_path, ros_env):
    """ros2 launch twice in one namespace: the second stops at once (its nodes
    exit 4, launch shuts down); the first keeps running and, stopped with
    SIGINT, logs no ERROR line."""
    _launch_file()
    env = dict(_env(ros_env, tmp_path), ROS_LOG_DIR=str(tmp_path / "log"))
    first = _launch(env, "web_port:=18398")
    try:
        time.sleep(15.0)
        assert first.poll() is None
        t0 = time.monotonic()
        second = _launch(env, "web_port:=18399")
        out2 = second.communicate(timeout=60)[0]
        assert "reachy_mini is already running in namespace ''" in out2, out2[-3000:]
        assert "stopping this launch" in out2
        print(f"second launch stopped in {time.monotonic() - t0:.1f} s")
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        out = first.communicate(timeout=60)[0]
    stop = out[out.find("SIGINT"):] if "SIGINT" in out else out
    bad = [line for line in stop.splitlines() if ERROR_LINE.search(line)]
    assert bad == [], "\n".join(bad)


def test_signal_to_every_process_stops_motor_node_before_its_bus(tmp_path, ros_env):
    """systemd (a whole cgroup) and a terminal's Ctrl-C under ros2 launch (a
    whole process group) signal motor_node and its simulated bus at the same
    moment: the bus keeps running until motor_node has turned the torque off
    and closes it, so the stop logs no ERROR and leaves no simulator behind."""
    import psutil

    env = _env(ros_env, tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "reachy_mini.nodes.motor_node", "--ros-args", "-p", "use_sim:=true"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sim = wait_for(lambda: [c for c in psutil.Process(p.pid).children() if "reachy_mini.sim.cli" in c.cmdline()],
                       timeout=20, period=0.2)[0]
        wait_for(lambda: os.path.exists(tmp_path / "run" / "reachy_mini_run" / "motor_node.alive"), timeout=20)
        time.sleep(3.0)                      # connected, torque on
        for sig in (signal.SIGTERM, signal.SIGINT):
            os.kill(sim.pid, sig)            # both at once, the bus first
        os.kill(p.pid, signal.SIGTERM)
        out = p.communicate(timeout=20)[0]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out[-2000:]
    assert "motor_node up on" in out, out[-2000:]
    bad = [line for line in out.splitlines() if ERROR_LINE.search(line)]
    assert bad == [], "\n".join(bad)
    assert wait_for(lambda: not sim.is_running() or sim.status() == psutil.STATUS_ZOMBIE, timeout=5)
