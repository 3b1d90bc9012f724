"""The standard main() of every node: init, build, spin, clean exit."""
from __future__ import annotations

from reachy_mini.common.instance import acquire_all, locked_by_parent
from reachy_mini.common.lifeline import adopt_lock, inherited_lock_fds
from reachy_mini.common.node_table import EXIT_BROKEN, namespace_of, process_label
from reachy_mini.core.health.nodes import is_hung
from reachy_mini.common.paths import heartbeat_file
from reachy_mini.ros.params import ParameterError


def run_node(factory, name: str, args=None) -> int:
    """Standard main() of one node: run_nodes() with it alone."""
    return run_nodes([(factory, name)], args)


def run_nodes(members: list[tuple], args=None, before_init=()) -> int:
    """Standard main(): init, build the nodes (one, or several sharing this
    process, its executor and its DDS participant: nodes/robot.py), spin,
    exit cleanly on SIGINT/SIGTERM; an invalid parameter exits with status 2
    and a clear message; a node whose worker thread died (node.workers():
    {name: Thread}) exits with status 3, to be restarted. Before anything
    else the process takes each node's instance lock (common/instance.py),
    unless the supervisor that started it holds them: a second copy in the
    same namespace exits with status 4 (5 for a runtime directory that is not
    private). The nodes shut down in reverse order of construction."""
    import os
    import signal
    import sys
    import time

    import rclpy
    from rclpy.executors import ExternalShutdownException

    import threading

    argv = args if args is not None else sys.argv
    names = [n for _, n in members]
    label = process_label(names)
    locks = []
    if locked_by_parent():   # the supervisor's locks, handed down: this process holds them too (common/lifeline.py)
        for fd in inherited_lock_fds():
            adopt_lock(fd, f"{label} of reachy-mini-bringup pid {os.getppid()}")
    else:
        locks, status, why = acquire_all([(namespace_of(argv), n, n) for n in names])   # held until exit
        if status is not None:
            print(f"[{label}] FATAL: {why}", file=sys.stderr, flush=True)
            return status
    for hook in before_init:
        hook()
    rclpy.init(args=argv, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    # The hang signal (core/health/nodes.py): the spin loop beats once a second,
    # for every node of the process (the supervisor gives the process one file).
    # While the nodes are being built (opening a port, starting the simulator on
    # a loaded machine) a helper thread beats instead, so that a slow start is
    # not taken for a hang.
    given = os.environ.get("REACHY_MINI_HEARTBEAT")
    beats = [given] if given else [heartbeat_file(namespace_of(argv), n) for n in names]
    try:
        for b in beats:
            os.makedirs(os.path.dirname(b), exist_ok=True)
    except OSError:
        beats = []

    def beat() -> None:
        for b in beats:
            try:
                with open(b, "w") as f:
                    f.write(f"{os.getpid()} {time.time():.3f}\n")
            except OSError:
                pass
    started = threading.Event()

    def beat_while_starting() -> None:
        while not started.wait(1.0):
            beat()
    beat()
    threading.Thread(target=beat_while_starting, name="startup-heartbeat", daemon=True).start()
    nodes = []
    try:
        for factory, name in members:
            nodes.append((name, factory()))
    except ParameterError as e:
        print(f"[{name}] FATAL: invalid parameter: {e}", file=sys.stderr, flush=True)
        _shutdown(nodes)
        rclpy.try_shutdown()
        return 2
    except Exception as e:  # noqa: BLE001 - report startup failures clearly
        print(f"[{name}] FATAL: startup failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        _shutdown(nodes)
        rclpy.try_shutdown()
        return 1
    finally:
        started.set()
    executor = _executor()
    for _, node in nodes:
        executor.add_node(node)
    import traceback

    spun = [time.monotonic()]
    health = next((n for name, n in nodes if name == "health_node"), None)
    if len(nodes) > 1 and not locked_by_parent() and (health is None or health.cfg.restart_hung_nodes):
        # Under ros2 launch, health_node kills a hung sibling; a process that
        # holds health_node too is watched by itself (reachy-mini-bringup
        # watches its children's heartbeats; core/health/nodes.py).
        timeout = health.cfg.hang_timeout_s if health is not None else HANG_TIMEOUT_S
        watch = HangWatch(lambda: time.monotonic() - spun[0], timeout, lambda age: _hung(label, age, nodes))
        threading.Thread(target=watch.run, name="hang-watch", daemon=True).start()
    beat_at = 0.0
    code = 0
    try:
        while not stop and rclpy.ok():
            spun[0] = time.monotonic()
            if spun[0] - beat_at >= 1.0:
                beat_at = spun[0]
                beat()
                # Alive but broken (a worker thread died): exit non-zero so that
                # the process manager restarts the node, instead of an ERROR forever.
                dead = [(name, w) for name, node in nodes
                        for w, t in getattr(node, "workers", dict)().items() if not t.is_alive()]
                if dead:
                    what = ", ".join(w if len(nodes) == 1 else f"{w} of {n}" for n, w in dead)
                    print(f"[{label}] FATAL: worker thread {what} died; "
                          f"exiting with status {EXIT_BROKEN} so that the node is restarted", file=sys.stderr,
                          flush=True)
                    code = EXIT_BROKEN
                    break
            try:
                executor.spin_once(timeout_sec=0.1)
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception:  # noqa: BLE001 - a failing callback must not take the node down
                tb = traceback.format_exc()
                node = _owner(tb, nodes)
                node.callback_errors = getattr(node, "callback_errors", 0) + 1
                print(f"[{node.get_name()}] ERROR in callback (#{node.callback_errors}):\n{tb}",
                      file=sys.stderr, flush=True)
    finally:
        _shutdown(nodes)
        executor.shutdown(timeout_sec=1.0)
        for _, node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
        for lock in locks:
            lock.release()
    return code


def _executor():
    """rclpy's EventsExecutor: its wait costs nothing per entity, where
    SingleThreadedExecutor rebuilds in Python a wait set of every entity of
    every node at each wake-up. Measured on the three core nodes idle (one run,
    CPU of the process tree): separate processes 11.4 -> 8.7 % of a core, one
    process 8.9 -> 7.3 % (docs/benchmarks.md, Footprint)."""
    from rclpy.experimental import EventsExecutor

    return EventsExecutor()


HANG_TIMEOUT_S = 10.0   # health_node's hang_timeout_s default, for a shared process without it


class HangWatch:
    """Calls on_hang(age) once the spin loop's age (seconds since it last
    ran) passes `timeout`, as core/health/nodes.is_hung rules; checks every
    `period` seconds until then."""

    def __init__(self, age, timeout: float, on_hang, period: float = 1.0) -> None:
        self.age, self.timeout, self.on_hang, self.period = age, timeout, on_hang, period

    def run(self) -> None:
        import time

        while True:
            a = self.age()
            if is_hung(a, True, None, self.timeout):
                self.on_hang(a)
                return
            time.sleep(self.period)


def _hung(label: str, age: float, nodes) -> None:
    """A shared process whose spin loop stopped: the motors' node releases its
    bus as on a clean exit (torque per on_exit; at most 3 s), then the process
    exits with EXIT_BROKEN for launch to respawn it."""
    import os
    import sys
    import threading

    print(f"[{label}] FATAL: the spin loop has not run for {age:.1f} s (hung); exiting with status {EXIT_BROKEN} "
          "so that the process is restarted", file=sys.stderr, flush=True)
    motor = [n for name, n in nodes if name == "motor_node"]
    if motor:
        t = threading.Thread(target=motor[0].shutdown, daemon=True)
        t.start()
        t.join(3.0)
    os._exit(EXIT_BROKEN)


def _owner(tb: str, nodes):
    """The node whose module raised (the deepest frame of a node file in the
    traceback); the first node if none."""
    best, at = nodes[0][1], -1
    for name, node in nodes:
        i = tb.rfind(f"/nodes/{name}.py")
        if i > at:
            best, at = node, i
    return best


def _shutdown(nodes) -> None:
    """Nodes owning threads or devices release them, the last built first."""
    import sys

    for name, node in reversed(nodes):
        try:
            if hasattr(node, "shutdown"):
                node.shutdown()
        except Exception as e:  # noqa: BLE001
            print(f"[{name}] error during shutdown: {e}", file=sys.stderr)
