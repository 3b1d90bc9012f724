"""`reachy-mini-sim-bus`: run the simulated servo bus, or inject faults into
a running one.

    reachy-mini-sim-bus serve [--link <runtime dir>/reachy_mini_sim/ttyDXL] [--baud 1000000] [--no-wire-timing]
    reachy-mini-sim-bus inject overheat --id 12        # also: overload voltage encoder shock
    reachy-mini-sim-bus inject clear --id 12           # the cause goes away (bit stays latched until reboot)
    reachy-mini-sim-bus inject mute --id 14 | unmute --id 14
    reachy-mini-sim-bus inject corrupt --count 5 | --rate 0.2 --duration 3
    reachy-mini-sim-bus inject garbage --count 64
    reachy-mini-sim-bus inject latency --ms 30 --duration 2
    reachy-mini-sim-bus inject late --ms 12 --count 1  # the next reply comes after the master's deadline
    reachy-mini-sim-bus inject vanish --duration 3 | restore
    reachy-mini-sim-bus inject position_limits --id 12 --min 1000 --max 3000   # EEPROM limits
    reachy-mini-sim-bus inject reset | state

`serve` prints two lines: `port: <pty link>` and `control: <socket>`.
`inject` finds the socket through --control, or $REACHY_MINI_SIM_CONTROL,
or the `.ctl` of the robot's default link (`--namespace robot1` for a
robot started with a namespace).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from reachy_mini.common.paths import sim_link

COMMANDS = ["overheat", "overload", "voltage", "encoder", "shock", "clear", "mute", "unmute",
            "corrupt", "garbage", "latency", "late", "vanish", "restore", "reset", "state", "ping",
            "position_limits"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reachy-mini-sim-bus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action")
    s = sub.add_parser("serve", help="run the simulated bus (default)")
    s.add_argument("--link", default=None, help="stable path (symlink) to the pty (default: the robot's, "
                   "see --namespace)")
    s.add_argument("--namespace", default="", help="robot namespace: its own default link and control socket")
    s.add_argument("--until-stdin-closes", action="store_true",
                   help="run until stdin closes, ignoring SIGINT and SIGTERM (as motor_node's child: it stops "
                        "the bus after turning the torque off)")
    s.add_argument("--control", default=None, help="control socket path (default: <link>.ctl)")
    s.add_argument("--baud", type=int, default=1_000_000, help="baud rate used for wire timing")
    s.add_argument("--no-wire-timing", action="store_true", help="answer as fast as possible")
    s.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("inject", help="send a fault-injection command to a running simulator")
    i.add_argument("cmd", choices=COMMANDS)
    i.add_argument("--control", default=os.environ.get("REACHY_MINI_SIM_CONTROL"),
                   help="control socket (default: the robot's, see --namespace)")
    i.add_argument("--namespace", default="", help="robot namespace (ros2 launch namespace:=...)")
    i.add_argument("--id", default="all", help="motor id, or 'all'")
    i.add_argument("--count", type=int)
    i.add_argument("--rate", type=float)
    i.add_argument("--ms", type=float)
    i.add_argument("--duration", type=float, help="seconds the fault lasts (vanish, latency, corrupt)")
    i.add_argument("--min", type=int, help="position_limits: EEPROM min position limit (raw)")
    i.add_argument("--max", type=int, help="position_limits: EEPROM max position limit (raw)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "inject":
        from reachy_mini.sim.bus import send_command

        req = {"cmd": args.cmd, "id": args.id}
        control = args.control or sim_link(args.namespace) + ".ctl"
        for k in ("count", "rate", "ms", "duration", "min", "max"):
            if getattr(args, k) is not None:
                req[k] = getattr(args, k)
        try:
            print(json.dumps(send_command(control, req), indent=None))
        except (OSError, RuntimeError) as e:
            print(f"reachy-mini-sim-bus: {e}", file=sys.stderr)
            return 2
        return 0
    if args.action is None:
        args = _parser().parse_args(["serve"] + (argv if argv is not None else sys.argv[1:]))
    if args.baud <= 0:
        print("reachy-mini-sim-bus: --baud must be > 0", file=sys.stderr)
        return 2
    from reachy_mini.sim.bus import SimBus

    bus = SimBus(args.link or sim_link(args.namespace), args.control, args.baud, not args.no_wire_timing, seed=args.seed)

    def _stop(*_):
        # No lock in a signal handler: a second signal arriving while the first
        # holds Event.set()'s lock would deadlock the simulator for good.
        bus.stopping = True

    if args.until_stdin_closes:
        import threading

        def _watch_stdin():
            while sys.stdin.buffer.read(4096):
                pass
            bus.stopping = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        threading.Thread(target=_watch_stdin, name="stdin-watch", daemon=True).start()
    else:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    print(f"port: {bus.link}", flush=True)
    print(f"control: {bus.control_path}", flush=True)
    try:
        bus.serve_forever()
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
