"""Start the simulator as a child process that dies with its parent."""
from __future__ import annotations

import ctypes
import signal
import subprocess
import sys


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_sim(link: str, wire_timing: bool = True, timeout: float = 10.0) -> tuple[subprocess.Popen, str, str]:
    """Returns (process, port path, control socket path)."""
    args = [sys.executable, "-m", "reachy_mini.sim.cli", "serve", "--link", link, "--until-stdin-closes"]
    if not wire_timing:
        args.append("--no-wire-timing")
    # Stopped by motor_node only, after the torque is off: in its own session
    # (a Ctrl-C in the terminal, SIGINT to the whole foreground process group
    # as under ros2 launch, does not reach it), deaf to SIGINT/SIGTERM (systemd
    # signals a whole cgroup), it stops when its stdin closes: stop_sim, or
    # motor_node's death (and PR_SET_PDEATHSIG as a last resort).
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True,
                            preexec_fn=_die_with_parent, start_new_session=True)
    lines = []
    for _ in range(2):
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout)
            raise RuntimeError(f"simulator exited with {proc.returncode} before printing its port")
        lines.append(line.strip())
    port = lines[0].split(": ", 1)[1]
    control = lines[1].split(": ", 1)[1]
    proc.stdout.close()
    return proc, port, control


def stop_sim(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
