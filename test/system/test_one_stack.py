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
        # the node lock's holder: the supervisor's motor_node, which holds it too (common/lifeline.py)
        assert re.search(rf"\[motor_node\] FATAL: reachy_mini is already running in namespace '' \(pid {pids['motor_node']}, "
                         rf"started [^,]+, motor_node of reachy-mini-bringup pid {first.pid}\)", lone.stderr), lone.stderr
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
    from test_supervisor import _get_json
    from tools.bench.stack import free_port

    port = free_port()
    sup = _supervisor(tmp_path, env, "--web-port", str(port))
    try:
        _running(str(tmp_path / "state.json"))
        # every node up and publishing: the robot's health answers, from every node's diagnostics
        wait_for(lambda: (h := _get_json(f"http://127.0.0.1:{port}/api/health")) and h.get("healthy"),
                 timeout=90, period=0.5)
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
    from tools.bench.stack import free_port

    first = _launch(env, f"web_port:={free_port()}")
    try:
        time.sleep(15.0)
        assert first.poll() is None
        t0 = time.monotonic()
        second = _launch(env, f"web_port:={free_port()}")
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
    log = tmp_path / "motor_node.log"
    p = subprocess.Popen([sys.executable, "-m", "reachy_mini.nodes.motor_node", "--ros-args", "-p", "use_sim:=true"],
                         env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)
    try:
        sim = wait_for(lambda: [c for c in psutil.Process(p.pid).children() if "reachy_mini.sim.cli" in c.cmdline()],
                       timeout=20, period=0.2)[0]
        wait_for(lambda: os.path.exists(tmp_path / "run" / "reachy_mini_run" / "motor_node.alive"), timeout=20)
        wait_for(lambda: "motor_node up on" in log.read_text(), timeout=60, period=0.2)   # connected, torque on
        for sig in (signal.SIGTERM, signal.SIGINT):
            os.kill(sim.pid, sig)            # both at once, the bus first
        os.kill(p.pid, signal.SIGTERM)
        p.wait(30)
        out = log.read_text()
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out[-2000:]
    assert "motor_node up on" in out, out[-2000:]
    bad = [line for line in out.splitlines() if ERROR_LINE.search(line)]
    assert bad == [], "\n".join(bad)
    assert wait_for(lambda: not sim.is_running() or sim.status() == psutil.STATUS_ZOMBIE, timeout=5)


def _stack_procs(sup_pid: int) -> list:
    import psutil

    return psutil.Process(sup_pid).children(recursive=True)


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _node_counts(tmp_path) -> dict[str, int]:
    """How many processes of each node run with this test's runtime directory."""
    import psutil

    from reachy_mini.common.node_table import NODES

    counts = {n.name: 0 for n in NODES}
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd, envs = p.info["cmdline"] or [], p.info["environ"] or {}
        except (psutil.Error, OSError):
            continue
        if envs.get("XDG_RUNTIME_DIR") != str(tmp_path / "run"):
            continue
        for n in NODES:
            if n.module in cmd:
                counts[n.name] += 1
    return counts


def test_killed_supervisor_takes_every_node_with_it(tmp_path, ros_env):
    """kill -9 of reachy-mini-bringup (the OOM killer, a crash): every process
    of the stack is gone within 5 s (each node gets SIGTERM from the kernel
    when its parent dies, common/lifeline.py), and a new start in the same
    namespace runs one of each node. A node that could not stop (here: frozen
    with SIGSTOP) still holds its instance lock, so no second stack starts
    beside it; once it is gone, one does."""
    import psutil

    env = _env(ros_env, tmp_path)
    state = str(tmp_path / "state.json")
    sup = _supervisor(tmp_path, env)
    try:
        pids = {k: n["pid"] for k, n in _running(state)["nodes"].items()}
        wait_for(lambda: len(_stack_procs(sup.pid)) > len(pids), timeout=30, period=0.2)   # the simulator too
        procs = _stack_procs(sup.pid)
        sup.kill()
        sup.wait(10)
        t0 = time.monotonic()
        wait_for(lambda: not any(_alive(p) for p in procs), timeout=5.0, period=0.1)
        print(f"{len(procs)} processes of the stack gone {time.monotonic() - t0:.2f} s after kill -9 of the "
              "supervisor")
        # a new start: one of each node
        os.unlink(state)
        sup = _supervisor(tmp_path, env)
        new = {k: n["pid"] for k, n in _running(state)["nodes"].items()}
        assert set(new) == set(pids) and not set(new.values()) & set(pids.values())
        counts = _node_counts(tmp_path)
        assert all(c == 1 for c in counts.values()), counts
        # a node that cannot die with its supervisor keeps its lock: no second stack beside the orphan
        hn = psutil.Process(new["health_node"])
        beat = tmp_path / f"reachy_mini_bringup.{sup.pid}" / "health_node.heartbeat"
        wait_for(lambda: beat.exists() and beat.read_text().startswith(f"{hn.pid} "), timeout=30, period=0.1)
        hn.suspend()   # (past its start: it holds its lock)
        others = [p for p in _stack_procs(sup.pid) if p.pid != hn.pid]
        sup.kill()
        sup.wait(10)
        wait_for(lambda: not any(_alive(p) for p in others), timeout=5.0, period=0.1)
        third = subprocess.run([sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--state-file",
                                str(tmp_path / "third.json")], env=env, capture_output=True, text=True, timeout=30)
        assert third.returncode == EXIT_ALREADY_RUNNING, third.stderr + third.stdout
        assert f"(pid {hn.pid}, started" in third.stderr and "health_node of reachy-mini-bringup" in third.stderr, \
            third.stderr
        hn.resume()   # its pending SIGTERM: it stops now
        wait_for(lambda: not _alive(hn), timeout=10, period=0.1)
        os.unlink(state)
        sup = _supervisor(tmp_path, env)
        _running(state)
        counts = _node_counts(tmp_path)
        assert all(c == 1 for c in counts.values()), counts
    finally:
        if sup.poll() is None:
            sup.send_signal(signal.SIGINT)
            sup.communicate(timeout=30)
        for p in psutil.process_iter(["environ"]):
            try:
                if (p.info["environ"] or {}).get("XDG_RUNTIME_DIR") == str(tmp_path / "run"):
                    p.resume()
                    p.kill()
            except (psutil.Error, OSError):
                pass
