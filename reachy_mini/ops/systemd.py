"""`reachy-mini-service`: run the stack at boot under systemd, as an
unprivileged user in the dialout group, with Restart=on-failure; plus udev
rules giving the servo adapter and the camera stable names, and the shared
audio PCMs in the user's ~/.asoundrc (merged, never clobbered).

    sudo .venv/bin/reachy-mini-service install --user reachy            # no ROS install (reachy-mini-bringup)
    sudo reachy-mini-service install --user reachy --mode ros2 \\
         --ros-setup /opt/ros/kilted/setup.bash --ws-setup ~/ros2_ws/install/setup.bash
    reachy-mini-service print                                           # show what would be written
    sudo reachy-mini-service uninstall

Files: /etc/systemd/system/reachy-mini.service, /etc/udev/rules.d/99-reachy-mini.rules,
and (unless --no-backup-timer) reachy-mini-backup.service + reachy-mini-backup.timer:
a daily backup of the incident history (`reachy-mini-incidents backup`: SQLite's
online backup API, integrity-checked, the newest 7 kept in <data>/backups).
Data (incidents, flight-recorder snapshots): /var/lib/reachy-mini. Logs: /var/log/reachy-mini (node logs
rotated by size, bounded count) and the journal (journalctl -u reachy-mini).
"""
from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import subprocess
import sys

from reachy_mini.common.paths import config_path

UNIT = "reachy-mini.service"
RULES = "99-reachy-mini.rules"
BACKUP_UNIT = "reachy-mini-backup.service"
BACKUP_TIMER = "reachy-mini-backup.timer"
BACKUPS_KEPT = 7


def render_backup(user: str, mode: str, exe_dir: str, ros_setup: str = "", ws_setup: str = "") -> tuple[str, str]:
    """(service, timer): a daily `reachy-mini-incidents backup` of the
    service's incident database, as the service's user, at idle priority."""
    if mode == "bringup":
        exec_start = (f"{shlex.quote(os.path.join(exe_dir, 'reachy-mini-incidents'))} backup "
                      f"--db /var/lib/reachy-mini/incidents.sqlite3 --keep {BACKUPS_KEPT}")
    else:   # a colcon install keeps console scripts off PATH: run the module after sourcing
        sources = " && ".join(f"source {shlex.quote(s)}" for s in (ros_setup, ws_setup) if s)
        cmd = f"{sources} && exec python3 -m reachy_mini.core.health.incidents backup --keep {BACKUPS_KEPT}"
        exec_start = f"/bin/bash -c {shlex.quote(cmd)}"
    service = "\n".join([
        "# Written by reachy-mini-service (daily backup of the incident history).",
        "[Unit]",
        "Description=Back up the Reachy Mini incident history (SQLite online backup, integrity-checked)",
        "",
        "[Service]",
        "Type=oneshot",
        f"User={user}",
        f"Group={user}",
        "StateDirectory=reachy-mini",
        f"ExecStart={exec_start}",
        "Nice=10",
        "IOSchedulingClass=idle",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=full",
        "",
    ])
    timer = "\n".join([
        "# Written by reachy-mini-service; `systemctl list-timers reachy-mini-backup.timer` shows the next run.",
        "[Unit]",
        "Description=Daily backup of the Reachy Mini incident history",
        "",
        "[Timer]",
        "OnCalendar=daily",
        "RandomizedDelaySec=30min",
        "Persistent=true",                # a robot that was off at midnight backs up at its next boot
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])
    return service, timer


def render_unit(user: str, mode: str, exe_dir: str, ros_setup: str = "", ws_setup: str = "",
                web_host: str = "127.0.0.1", web_port: int = 8000, log_max_mb: int = 10, log_backups: int = 3,
                use_sim: bool = False, one_process: bool = False) -> str:
    common = [
        "Environment=PYTHONUNBUFFERED=1",
        "Environment=ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST",
        "Environment=REACHY_MINI_STATE_FILE=/run/reachy-mini/state.json",
        "Environment=MALLOC_ARENA_MAX=2",
        "EnvironmentFile=-/etc/default/reachy-mini",   # REACHY_MINI_WEB_TOKEN=..., ROS_DOMAIN_ID=...
    ]
    sim = (" --use-sim" if use_sim else "") + (" --one-process" if one_process else "")
    if mode == "bringup":
        exec_start = (f"{shlex.quote(os.path.join(exe_dir, 'reachy-mini-bringup'))}{sim} "
                      f"--state-file /run/reachy-mini/state.json --data-dir /var/lib/reachy-mini "
                      f"--log-dir /var/log/reachy-mini --log-max-bytes {log_max_mb * 1_000_000} "
                      f"--log-backups {log_backups} --web-port {web_port}")
        pre = []
        # The supervisor speaks sd_notify: READY=1 when every node runs,
        # WATCHDOG=1 while it and the health node are alive.
        service_type = ["Type=notify", "NotifyAccess=main", "WatchdogSec=30", "TimeoutStartSec=120"]
    else:
        if not ros_setup:
            raise ValueError("--mode ros2 needs --ros-setup (e.g. /opt/ros/kilted/setup.bash)")
        sources = " && ".join(f"source {shlex.quote(s)}" for s in (ros_setup, ws_setup) if s)
        launch = (f"ros2 launch reachy_mini bringup.launch.py web_port:={web_port}"
                  f"{' use_sim:=true' if use_sim else ''}{' one_process:=true' if one_process else ''}")
        exec_start = f"/bin/bash -c {shlex.quote(f'{sources} && exec {launch}')}"
        common += ["Environment=ROS_LOG_DIR=/var/log/reachy-mini/ros"]
        # ros2 launch writes one directory per start: keep a week of them.
        pre = ["ExecStartPre=/usr/bin/find /var/log/reachy-mini/ros -mindepth 1 -maxdepth 1 -mtime +7 "
               "-exec rm -rf {} +"]
        service_type = ["Type=simple"]
    return "\n".join([
        "# Written by reachy-mini-service; re-run it to change, `reachy-mini-service uninstall` to remove.",
        "[Unit]",
        "Description=Reachy Mini robot stack (reachy_mini)",
        "Wants=network-online.target",
        "After=network-online.target",
        "StartLimitIntervalSec=0",        # never give up for good
        "",
        "[Service]",
        *service_type,
        f"User={user}",
        f"Group={user}",
        "SupplementaryGroups=dialout video audio",
        *common,
        "RuntimeDirectory=reachy-mini",
        "StateDirectory=reachy-mini",
        "LogsDirectory=reachy-mini",
        *pre,
        f"ExecStart={exec_start}",
        "Restart=always",
        "RestartSec=5",
        "MemoryHigh=1200M",
        "MemoryMax=1500M",
        "LimitRTPRIO=50",                 # motor_node's realtime_priority (SCHED_FIFO) may be granted
        "LimitMEMLOCK=infinity",          # and lock_memory
        "KillSignal=SIGTERM",
        "KillMode=mixed",                 # SIGTERM to the supervisor only: it stops the nodes in order
                                          # (then SIGKILL to what is left after TimeoutStopSec)
        "TimeoutStopSec=20",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=full",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def render_rules() -> str:
    with open(config_path(os.path.join("udev", RULES))) as f:
        return f.read()


def _check_user(user: str) -> list[str]:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return [f"user {user!r} does not exist: sudo useradd --system --create-home --groups dialout,video,audio "
                f"{user}"]
    import grp

    notes = []
    for g in ("dialout", "video", "audio"):
        try:
            if user not in grp.getgrnam(g).gr_mem and pw.pw_gid != grp.getgrnam(g).gr_gid:
                notes.append(f"user {user!r} is not in group {g!r} (the unit adds it as a supplementary group; "
                             f"for interactive use: sudo usermod -aG {g} {user})")
        except KeyError:
            pass
    return notes


def _bringup_dir() -> str | None:
    """Where reachy-mini-bringup is: beside this program (a venv's bin/), on
    PATH, or in a colcon install's lib/reachy_mini/ (setup.cfg script_dir)."""
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    candidates = [here, os.path.dirname(shutil.which("reachy-mini-bringup") or "")]
    try:
        from ament_index_python.packages import get_package_prefix

        candidates.append(os.path.join(get_package_prefix("reachy_mini"), "lib", "reachy_mini"))
    except Exception:  # noqa: BLE001 - no ament index, or the package is not in it
        pass
    candidates.append(os.path.join(sys.prefix, "bin"))
    for d in candidates:
        if d and os.access(os.path.join(d, "reachy-mini-bringup"), os.X_OK):
            return d
    return None


def install_asoundrc(user: str, root: str = "/") -> str:
    """The shared audio PCMs (reachymini_audio_src/sink, dmix/dsnoop) in the
    service user's ~/.asoundrc, merged with what is there (core/media/alsa)."""
    from reachy_mini.core.media import alsa

    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return f"note: no user {user!r}: ~/.asoundrc (shared audio PCMs) not written"
    home = os.path.join(root, pw.pw_dir.lstrip("/"))
    if not os.path.isdir(home):
        return f"note: {home} does not exist: ~/.asoundrc (shared audio PCMs) not written"
    try:
        path, done = alsa.install_asoundrc(home)
        if done != "unchanged" and os.geteuid() == 0:
            os.chown(path, pw.pw_uid, pw.pw_gid)
    except OSError as e:
        return f"warning: cannot write {home}/.asoundrc: {e}"
    return f"{done} {path} (shared audio PCMs {alsa.SRC} / {alsa.SINK})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="reachy-mini-service", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["install", "uninstall", "print"])
    p.add_argument("--user", default=os.environ.get("SUDO_USER") or "reachy")
    p.add_argument("--mode", choices=["bringup", "ros2"], default="bringup")
    p.add_argument("--ros-setup", default="")
    p.add_argument("--ws-setup", default="")
    p.add_argument("--web-port", type=int, default=8000)
    p.add_argument("--use-sim", action="store_true", help="run on the simulated robot (demo machines)")
    p.add_argument("--one-process", action="store_true",
                   help="motor_node, health_node and web_bridge in one process (a Raspberry Pi CM4)")
    p.add_argument("--root", default="/", help="install under this root (packaging, tests)")
    p.add_argument("--no-systemctl", action="store_true", help="write files only")
    p.add_argument("--no-backup-timer", action="store_true",
                   help="no daily backup of the incident history (reachy-mini-backup.timer)")
    a = p.parse_args(argv)
    exe_dir = ""
    if a.mode == "bringup":
        exe_dir = _bringup_dir()
        if exe_dir is None:
            p.error("cannot find the reachy-mini-bringup executable (beside this program, on PATH, or in the "
                    "colcon install's lib/reachy_mini/); use --mode ros2 for a ROS 2 workspace")
    try:
        unit = render_unit(a.user, a.mode, exe_dir, a.ros_setup, a.ws_setup, web_port=a.web_port,
                           use_sim=a.use_sim, one_process=a.one_process)
    except ValueError as e:
        p.error(str(e))
    rules = render_rules()
    unit_path = os.path.join(a.root, "etc/systemd/system", UNIT)
    rules_path = os.path.join(a.root, "etc/udev/rules.d", RULES)
    files = [(unit_path, unit), (rules_path, rules)]
    backup_paths = [os.path.join(a.root, "etc/systemd/system", n) for n in (BACKUP_UNIT, BACKUP_TIMER)]
    if not a.no_backup_timer:
        files += list(zip(backup_paths, render_backup(a.user, a.mode, exe_dir, a.ros_setup, a.ws_setup)))
    if a.action == "print":
        print("\n".join(f"# {path}\n{text}" for path, text in files))
        return 0
    live = os.path.abspath(a.root) == "/" and not a.no_systemctl
    if os.path.abspath(a.root) == "/" and os.geteuid() != 0:
        print("reachy-mini-service: run with sudo (writes to /etc)", file=sys.stderr)
        return 1
    if a.action == "uninstall":
        if live:
            subprocess.run(["systemctl", "disable", "--now", UNIT, BACKUP_TIMER], check=False)
        for f in (unit_path, rules_path, *backup_paths):
            if os.path.exists(f):
                os.unlink(f)
                print(f"removed {f}")
        if live:
            subprocess.run(["systemctl", "daemon-reload"], check=False)
            subprocess.run(["udevadm", "control", "--reload"], check=False)
        return 0
    for note in _check_user(a.user):
        print(f"note: {note}")
    for path, text in files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}")
    print(install_asoundrc(a.user, a.root))
    if live:
        for cmd in (["udevadm", "control", "--reload"], ["udevadm", "trigger"], ["systemctl", "daemon-reload"],
                    ["systemctl", "enable", "--now", UNIT]) + \
                (() if a.no_backup_timer else (["systemctl", "enable", "--now", BACKUP_TIMER],)):
            r = subprocess.run(cmd, check=False)
            if r.returncode:
                print(f"warning: {' '.join(cmd)} exited with {r.returncode}", file=sys.stderr)
        print("started: systemctl status reachy-mini; journalctl -u reachy-mini -f; logs in /var/log/reachy-mini")
    return 0


if __name__ == "__main__":
    sys.exit(main())
