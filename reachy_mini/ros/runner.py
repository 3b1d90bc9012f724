"""The standard main() of every node: init, build, spin, clean exit."""
from __future__ import annotations

from reachy_mini.common.instance import acquire_all, locked_by_parent
from reachy_mini.common.node_table import EXIT_BROKEN, namespace_of
from reachy_mini.common.paths import heartbeat_file
from reachy_mini.ros.params import ParameterError


def run_node(factory, name: str, args=None) -> int:
    """Standard main(): init, build the node, spin, exit cleanly on SIGINT/
    SIGTERM; an invalid parameter exits with status 2 and a clear message;
    a node whose worker thread died (node.workers(): {name: Thread}) exits
    with status 3, to be restarted. Before anything else the node takes its
    instance lock (common/instance.py), unless the supervisor that started it
    holds it: a second copy in the same namespace exits with status 4 (5 for
    a runtime directory that is not private)."""
    import os
    import signal
    import sys
    import time

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    import threading

    argv = args if args is not None else sys.argv
    locks = []
    if not locked_by_parent():
        locks, status, why = acquire_all([(namespace_of(argv), name, name)])   # held until exit
        if status is not None:
            print(f"[{name}] FATAL: {why}", file=sys.stderr, flush=True)
            return status
    rclpy.init(args=argv, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    # The hang signal (core/health/nodes.py): the spin loop beats once a second.
    # While the node is being built (opening a port, starting the simulator on
    # a loaded machine) a helper thread beats instead, so that a slow start is
    # not taken for a hang.
    heartbeat = os.environ.get("REACHY_MINI_HEARTBEAT") or heartbeat_file(namespace_of(argv), name)
    try:
        os.makedirs(os.path.dirname(heartbeat), exist_ok=True)
    except OSError:
        heartbeat = None

    def beat() -> None:
        if heartbeat:
            try:
                with open(heartbeat, "w") as f:
                    f.write(f"{os.getpid()} {time.time():.3f}\n")
            except OSError:
                pass
    started = threading.Event()

    def beat_while_starting() -> None:
        while not started.wait(1.0):
            beat()
    beat()
    threading.Thread(target=beat_while_starting, name="startup-heartbeat", daemon=True).start()
    try:
        node = factory()
    except ParameterError as e:
        print(f"[{name}] FATAL: invalid parameter: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    except Exception as e:  # noqa: BLE001 - report startup failures clearly
        print(f"[{name}] FATAL: startup failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 1
    finally:
        started.set()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    import traceback

    beat_at = 0.0
    code = 0
    try:
        while not stop and rclpy.ok():
            if time.monotonic() - beat_at >= 1.0:
                beat_at = time.monotonic()
                beat()
                # Alive but broken (a worker thread died): exit non-zero so that
                # the process manager restarts the node, instead of an ERROR forever.
                dead = [n for n, t in getattr(node, "workers", dict)().items() if not t.is_alive()]
                if dead:
                    print(f"[{name}] FATAL: worker thread {', '.join(dead)} died; exiting with status "
                          f"{EXIT_BROKEN} so that the node is restarted", file=sys.stderr, flush=True)
                    code = EXIT_BROKEN
                    break
            try:
                executor.spin_once(timeout_sec=0.1)
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception:  # noqa: BLE001 - a failing callback must not take the node down
                node.callback_errors = getattr(node, "callback_errors", 0) + 1
                print(f"[{name}] ERROR in callback (#{node.callback_errors}):\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)
    finally:
        try:
            if hasattr(node, "shutdown"):  # nodes owning threads or devices release them here
                node.shutdown()
        except Exception as e:  # noqa: BLE001
            print(f"[{name}] error during shutdown: {e}", file=sys.stderr)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
        for lock in locks:
            lock.release()
    return code
