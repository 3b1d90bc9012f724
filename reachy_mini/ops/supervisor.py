"""`reachy-mini-bringup`: start the whole stack without a ROS install.

Reads the same node table as launch/bringup.launch.py and passes the same
parameter file. Respawns crashed nodes with backoff, forwards SIGINT/SIGTERM
(every node gets SIGINT, then SIGKILL after --stop-timeout), and writes a
JSON state file (pids, restarts, last exit codes) for the health node and
for tests.

    reachy-mini-bringup --use-sim              # full stack on the simulated robot
    reachy-mini-bringup --only motor_node --no-respawn
    reachy-mini-bringup --one-process          # motor_node, health_node, web_bridge in one process
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from reachy_mini.core.health.nodes import is_hung
from reachy_mini.core.identity import check_robot_name
from reachy_mini.common.instance import LOCKED_BY_ENV, acquire_all
from reachy_mini.common.node_table import BY_NAME, EXIT_INVALID_PARAMETER, NODES, NOT_RESPAWNED, PROCESS_MODULE, \
    NodeSpec, log_level_args, normalize_namespace, process_groups, process_name, remappings
from reachy_mini.common.paths import config_path, robot_key
from reachy_mini.common.lifeline import spawn
from reachy_mini.ops.sdnotify import Notifier
from reachy_mini.web.config import WebBridgeConfig
from reachy_mini.common.paths import state_file as default_state_file


@dataclass
class Child:
    spec: NodeSpec
    argv: list[str]
    proc: subprocess.Popen | None = None
    starts: int = 0
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)
    last_exit: int | None = None
    next_start: float = 0.0
    started_at: float = 0.0
    hang_restarts: int = 0
    heartbeat: str = ""
    lock_fds: list[int] = field(default_factory=list)   # its nodes' instance locks, held by the supervisor too
    members: tuple[str, ...] = ()   # the nodes this process runs (--one-process: several), default spec.name

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.members or (self.spec.name,)

    def backoff(self, now: float, window_s: float = 60.0) -> float:
        """0.5 s after a crash, doubling for each crash in the last minute, max 10 s."""
        recent = [t for t in self.crashes if now - t < window_s]
        self.crashes = recent
        return min(10.0, 0.5 * 2 ** max(0, len(recent) - 1))


def override_file(directory: str, node: str, params: dict) -> str:
    """Writes node-scoped parameter overrides. rcl lets `/**/<node>` entries
    of a params file win over `-p` (which is `/**`), so overrides go in a
    second file with the same scope, loaded after the first."""
    import yaml

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{node}.overrides.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({f"/**/{node}": {"ros__parameters": params}}, f)
    return path


def node_argv(spec: NodeSpec | tuple[NodeSpec, ...], params_file: str | list[str], use_sim: bool, namespace: str,
              log_level: str, web_port: int | None, run_dir: str, data_dir: str | None = None,
              state_file: str | None = None, started: list[str] | None = None,
              hang_timeout: float | None = None, robot_name: str | None = None) -> list[str]:
    """The command line of a process running `spec` (a node), or several
    nodes together (a tuple: nodes/robot.py), each with its own overrides and
    log level."""
    members = spec if isinstance(spec, tuple) else (spec,)
    files = [params_file] if isinstance(params_file, str) else list(params_file)
    module = ["-m", members[0].module] if len(members) == 1 else ["-m", PROCESS_MODULE, *[m.name for m in members]]
    own = [a for m in members for a in ("--params-file", override_file(run_dir, m.name, _overrides(
        m, use_sim, web_port, data_dir, state_file, started, hang_timeout, robot_name)))]
    # --disable-external-lib-logs: no per-start log files under ~/.ros/log (they
    # would pile up with every respawn); node output goes to our stdout or to the
    # rotating files of --log-dir.
    # the files in their order (rcl: a later file overrides an earlier one), then the overrides
    argv = [sys.executable, *module, "--ros-args", *[a for f in files for a in ("--params-file", f)], *own,
            *[a for m in members for a in log_level_args(namespace, m.name, log_level)],
            "--disable-external-lib-logs"]
    if normalize_namespace(namespace) != "/":
        argv += ["-r", f"__ns:={normalize_namespace(namespace)}"]
        for src, dst in remappings(namespace):
            argv += ["-r", f"{src}:={dst}"]
    return argv


def _overrides(spec: NodeSpec, use_sim: bool, web_port: int | None, data_dir: str | None, state_file: str | None,
               started: list[str] | None, hang_timeout: float | None, robot_name: str | None) -> dict:
    overrides = {"use_sim": bool(use_sim)}
    if robot_name:
        overrides["robot_name"] = robot_name
    if spec.name == "health_node" and started is not None:
        overrides["expected_nodes"] = list(started)   # nodes left out on purpose are not "missing"
    if spec.name == "web_bridge" and web_port is not None:
        overrides["port"] = int(web_port)
    if spec.name in ("health_node", "web_bridge") and data_dir:
        overrides["data_dir"] = os.path.abspath(data_dir)
    if spec.name == "health_node" and state_file:
        overrides["state_file"] = os.path.abspath(state_file)
    if spec.name == "health_node" and hang_timeout:
        overrides["hang_timeout_s"] = float(hang_timeout)   # one hang rule: the supervisor's timeout is the health node's
    return overrides


class RotatingLog:
    """Size-rotated log file: <name>.log, <name>.log.1 ... .<backups>."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.f = open(path, "ab")
        self.size = self.f.tell()
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.size + len(data) > self.max_bytes and self.size > 0:
                self._rotate()
            self.f.write(data)
            self.f.flush()
            self.size += len(data)

    def _rotate(self) -> None:
        self.f.close()
        for i in range(self.backups - 1, 0, -1):
            if os.path.exists(f"{self.path}.{i}"):
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        if self.backups > 0:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self.f = open(self.path, "wb")
        self.size = 0


def _pump(stream, log: RotatingLog, prefix: bytes) -> None:
    for line in iter(stream.readline, b""):
        log.write(prefix + line)
    stream.close()


class Supervisor:
    BEAT_FRESH_S = 3.0   # a spin loop beats every second

    def __init__(self, children: list[Child], respawn: bool = True, state_file: str | None = None,
                 stop_timeout: float = 4.0, hang_timeout: float = 15.0, log_dir: str | None = None,
                 log_max_bytes: int = 10_000_000, log_backups: int = 3) -> None:
        self.children = children
        self.hang_timeout = hang_timeout
        self.logs = {c.spec.name: RotatingLog(os.path.join(log_dir, f"{c.spec.name}.log"), log_max_bytes, log_backups)
                     for c in children} if log_dir else {}
        self.own_log = RotatingLog(os.path.join(log_dir, "bringup.log"), log_max_bytes, log_backups) \
            if log_dir else None
        self.respawn = respawn
        self.state_file = state_file
        self.stop_timeout = stop_timeout
        self.stopping = threading.Event()
        self.notifier = Notifier()
        self.ready = False
        self.pinged = 0.0
        try:   # the process's start time, for readers to check that the pid is still this supervisor
            import psutil

            self.started = psutil.Process().create_time()
        except Exception:  # noqa: BLE001
            self.started = time.time()

    def _start(self, c: Child) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env[LOCKED_BY_ENV] = str(os.getpid())   # this supervisor holds the child's instance lock
        env.setdefault("MALLOC_ARENA_MAX", "2")   # bounded glibc arenas: RSS stays flat over months
        if c.heartbeat:
            env["REACHY_MINI_HEARTBEAT"] = c.heartbeat
            try:
                os.unlink(c.heartbeat)
            except FileNotFoundError:
                pass
        log = self.logs.get(c.spec.name)
        # the node dies with this supervisor and holds its lock (common/lifeline.py)
        if log is None:
            c.proc = spawn(c.argv, env, c.lock_fds, start_new_session=True)
        else:
            c.proc = spawn(c.argv, env, c.lock_fds, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} reachy-mini-bringup: started pid {c.proc.pid}\n".encode())
            threading.Thread(target=_pump, args=(c.proc.stdout, log, b""), daemon=True).start()
        c.started_at = time.time()
        c.starts += 1
        self._log(f"started {c.spec.name} (pid {c.proc.pid})")

    def _log(self, msg: str) -> None:
        print(f"[reachy-mini-bringup] {msg}", flush=True)
        if self.own_log is not None:
            self.own_log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n".encode())

    def write_state(self) -> None:
        if not self.state_file:
            return
        state = {"supervisor_pid": os.getpid(), "supervisor_started": self.started, "stamp": time.time(), "nodes": {
            name: {"pid": c.proc.pid if c.proc and c.proc.poll() is None else None, "started": c.started_at,
                   "starts": c.starts, "restarts": c.restarts, "last_exit": c.last_exit,
                   "hang_restarts": c.hang_restarts, "heartbeat": c.heartbeat, "process": c.spec.name}
            for c in self.children for name in c.nodes}}
        tmp = self.state_file + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_file)

    def restart(self, name: str, reason: str) -> bool:
        """Kills a (hung) node's process (`name`: a node or a process) and its
        process group; the loop respawns it."""
        for c in self.children:
            if name in (c.spec.name,) + c.nodes and c.proc and c.proc.poll() is None:
                self._log(f"restarting {name}: {reason}")
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return True
        return False

    def _watchdog(self) -> None:
        """The hang rule (core/health/nodes.is_hung) on each child's spin-loop
        heartbeat: a hung child is killed and respawned. Under this supervisor
        it is the only one that kills; health_node reports."""
        if self.hang_timeout <= 0:
            return
        now = time.time()
        for c in self.children:
            if not (c.heartbeat and c.proc and c.proc.poll() is None) or now - c.started_at < self.hang_timeout:
                continue
            try:
                beat = os.stat(c.heartbeat).st_mtime
            except FileNotFoundError:
                beat = c.started_at
            if is_hung(now - beat, True, now - c.started_at, self.hang_timeout) and self.restart(
                    c.spec.name, f"no heartbeat for {now - beat:.1f} s (hung or stopped)"):
                c.hang_restarts += 1

    def _beat_age(self, c: Child, now: float) -> float | None:
        if not (c.heartbeat and c.proc and c.proc.poll() is None):
            return None
        try:
            return now - os.stat(c.heartbeat).st_mtime
        except FileNotFoundError:
            return None

    def _notify(self) -> None:
        """systemd Type=notify: READY=1 once every node's spin loop runs;
        WATCHDOG=1 only while this loop and the health node's heartbeat live
        (a hung health node stops the pings; systemd restarts the unit if the
        supervisor's own hang handling does not bring it back in time)."""
        if not self.notifier.enabled:
            return
        now = time.time()
        ages = {c.spec.name: self._beat_age(c, now) for c in self.children}
        fresh = {n for n, a in ages.items() if a is not None and a < self.BEAT_FRESH_S}
        if not self.ready and len(fresh) == len(self.children):
            self.ready = self.notifier.send("READY=1", f"STATUS=all {len(fresh)} processes running")
        health = [c for c in self.children if "health_node" in c.nodes]
        if self.notifier.watchdog_s and now - self.pinged >= self.notifier.watchdog_s:
            if not health or health[0].spec.name in fresh:
                self.notifier.send("WATCHDOG=1")
                self.pinged = now

    def run(self) -> int:
        for c in self.children:
            self._start(c)
        self.write_state()
        while not self.stopping.is_set():
            now = time.monotonic()
            changed = False
            self._watchdog()
            self._notify()
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None:
                    c.last_exit = c.proc.returncode
                    c.proc = None
                    changed = True
                    if not self.respawn or self.stopping.is_set():
                        self._log(f"{c.spec.name} exited with {c.last_exit}; not respawning")
                        continue
                    if c.last_exit in NOT_RESPAWNED:
                        why = "invalid parameter" if c.last_exit == EXIT_INVALID_PARAMETER else "refused to start"
                        self._log(f"{c.spec.name} exited with {c.last_exit} ({why}): not respawning")
                        continue
                    c.crashes.append(now)
                    delay = c.backoff(now)
                    c.next_start = now + delay
                    self._log(f"{c.spec.name} exited with {c.last_exit}; respawning in {delay:.1f} s")
                elif c.proc is None and self.respawn and c.next_start and now >= c.next_start \
                        and c.last_exit not in NOT_RESPAWNED:
                    c.next_start = 0.0
                    c.restarts += 1
                    self._start(c)
                    changed = True
            if changed:
                self.write_state()
            if all(c.proc is None and not c.next_start for c in self.children):
                self._log("no node left running")
                self.shutdown()
                return 1 if any(c.last_exit for c in self.children) else 0
            self.stopping.wait(0.1)
        return self.shutdown()

    def shutdown(self) -> int:
        self.stopping.set()
        live = [c for c in self.children if c.proc and c.proc.poll() is None]
        for c in live:
            try:
                c.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_timeout
        for c in live:
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"{c.spec.name} did not stop within {self.stop_timeout} s: killing")
                os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
        self.write_state()
        self._log("all nodes stopped")
        return 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="reachy-mini-bringup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params-file", action="append", dest="params_files", metavar="PARAMS_FILE",
                   help="a ROS 2 parameters file (/**: ros__parameters); may be given several times, applied in "
                        "order, a later file overriding an earlier one (as --ros-args --params-file). "
                        "Default: the package's config/reachy_mini.yaml (give it first to layer on it)")
    p.add_argument("--use-sim", action="store_true", help="simulated bus, camera and audio")
    p.add_argument("--namespace", default="", help="robot namespace: its topics, services, diagnostics, "
                   "simulated bus, state file and incident database are its own")
    p.add_argument("--robot-name", default="", help="the robot's name (page title, hardware ids, incidents, "
                   "metric label); default: the namespace, else the host name")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("--no-respawn", action="store_true")
    p.add_argument("--web-port", type=int, default=None)
    p.add_argument("--only", nargs="+", choices=[n.name for n in NODES], help="start only these nodes")
    p.add_argument("--one-process", action="store_true",
                   help="run motor_node, health_node and web_bridge in one process (one executor, one DDS "
                        "participant: less CPU and memory, for a Raspberry Pi CM4); camera_node and "
                        "audio_node keep their own")
    for n in NODES:
        p.add_argument(f"--disable-{n.name.replace('_', '-')}", action="store_true", dest=f"disable_{n.name}")
    p.add_argument("--state-file", default=os.environ.get("REACHY_MINI_STATE_FILE"))
    p.add_argument("--stop-timeout", type=float, default=4.0)
    p.add_argument("--hang-timeout", type=float, default=10.0,
                   help="kill and respawn a node whose spin loop has not run this long (0: off); "
                        "also health_node's hang_timeout_s")
    p.add_argument("--data-dir", default=None, help="incident database directory (health_node data_dir)")
    p.add_argument("--log-dir", default=None,
                   help="write each node's output to <dir>/<node>.log, rotated by size (default: this terminal)")
    p.add_argument("--log-max-bytes", type=int, default=10_000_000, help="rotate a node log at this size")
    p.add_argument("--log-backups", type=int, default=3, help="rotated files kept per node")
    a = p.parse_args(argv)
    a.params_files = a.params_files or [config_path("reachy_mini.yaml")]
    for f in a.params_files:
        if not os.path.isfile(f):
            p.error(f"--params-file {f}: no such file")
    if a.log_max_bytes < 10_000 or a.log_backups < 0:
        p.error("--log-max-bytes must be >= 10000 and --log-backups >= 0")
    if a.web_port is not None and not 1 <= a.web_port <= 65535:
        p.error(f"--web-port {a.web_port}: must be within 1..65535")
    try:
        robot_key(a.namespace)
    except ValueError as e:
        p.error(f"--namespace: {e}")
    err = check_robot_name(a.robot_name)
    if err:
        p.error(f"--robot-name {a.robot_name!r}: {err}")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    specs = [n for n in NODES if (not a.only or n.name in a.only) and not getattr(a, f"disable_{n.name}")]
    # One stack per robot per machine: the robot's lock and each node's, held
    # until this process exits (common/instance.py), before anything is touched.
    locks, status, why = acquire_all(
        [(a.namespace, None, "reachy-mini-bringup")]
        + [(a.namespace, s.name, f"{s.name} of reachy-mini-bringup pid {os.getpid()}") for s in specs])
    if status is not None:
        print(f"reachy-mini-bringup: {why}", file=sys.stderr, flush=True)
        return status
    if a.state_file is None:
        a.state_file = default_state_file(a.namespace)
    run_dir = os.path.join(os.path.dirname(os.path.abspath(a.state_file)), f"reachy_mini_bringup.{os.getpid()}")
    fds = {s.name: lock.fd for s, lock in zip(specs, locks[1:])}
    children = []
    for group in process_groups([s.name for s in specs], a.one_process):
        members = tuple(BY_NAME[n] for n in group)
        spec = members[0] if len(members) == 1 else NodeSpec(
            process_name(group), PROCESS_MODULE, "a shared process: " + ", ".join(group),
            max(m.stale_timeout_s for m in members))
        children.append(Child(spec, node_argv(members, a.params_files, a.use_sim, a.namespace, a.log_level,
                                              a.web_port, run_dir, a.data_dir, a.state_file,
                                              [x.name for x in specs], a.hang_timeout, a.robot_name),
                              heartbeat=os.path.join(run_dir, f"{spec.name}.heartbeat"),
                              lock_fds=[fds[n] for n in group], members=group))
    sup = Supervisor(children, respawn=not a.no_respawn, state_file=a.state_file, stop_timeout=a.stop_timeout,
                     hang_timeout=a.hang_timeout, log_dir=a.log_dir, log_max_bytes=a.log_max_bytes,
                     log_backups=a.log_backups)

    def _stop(signum, _frame):
        sup._log(f"got signal {signum}: stopping")
        sup.stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if "web_bridge" in [s.name for s in specs]:
        try:   # as web_bridge will read it (a bad file is reported by the nodes themselves)
            web = WebBridgeConfig.from_params_file(a.params_files, "web_bridge")
            sup._log(f"web status page: {web.replaced({'port': a.web_port} if a.web_port else {}).url()}")
        except (ValueError, TypeError):
            pass
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
