"""Boot-time service files and bounded node logs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from reachy_mini.ops.systemd import main as service_main
from reachy_mini.ops.supervisor import RotatingLog

from conftest import wait_for


def test_install_writes_unit_and_udev_rules(tmp_path, capsys):
    assert service_main(["install", "--root", str(tmp_path), "--user", "reachy", "--no-systemctl"]) == 0
    unit = (tmp_path / "etc/systemd/system/reachy-mini.service").read_text()
    for line in ["User=reachy", "SupplementaryGroups=dialout video audio", "Restart=always",
                 "Type=notify", "NotifyAccess=main", "WatchdogSec=30", "StartLimitIntervalSec=0", "MemoryMax=1500M",
                 "Environment=MALLOC_ARENA_MAX=2", "LimitRTPRIO=50", "LimitMEMLOCK=infinity",
                 "WantedBy=multi-user.target", "StateDirectory=reachy-mini", "LogsDirectory=reachy-mini",
                 "--log-dir /var/log/reachy-mini", "--data-dir /var/lib/reachy-mini", "NoNewPrivileges=yes"]:
        assert line in unit, line
    exe = unit.split("ExecStart=")[1].split()[0]
    assert os.path.isabs(exe) and exe.endswith("reachy-mini-bringup") and os.path.exists(exe)
    rules = (tmp_path / "etc/udev/rules.d/99-reachy-mini.rules").read_text()
    assert 'ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="55d3", SYMLINK+="reachy_mini_servo"' in rules
    assert 'ATTRS{idVendor}=="38fb", ATTRS{idProduct}=="1002"' in rules and "reachy_mini_camera" in rules
    # the daily backup of the incident history: a timer and a oneshot service as the same user
    timer = (tmp_path / "etc/systemd/system/reachy-mini-backup.timer").read_text()
    for line in ["OnCalendar=daily", "Persistent=true", "WantedBy=timers.target"]:
        assert line in timer, line
    backup = (tmp_path / "etc/systemd/system/reachy-mini-backup.service").read_text()
    assert "Type=oneshot" in backup and "User=reachy" in backup
    cmd = backup.split("ExecStart=")[1].split("\n")[0].split()
    assert cmd[0].endswith("reachy-mini-incidents") and os.path.exists(cmd[0])
    assert cmd[1:] == ["backup", "--db", "/var/lib/reachy-mini/incidents.sqlite3", "--keep", "7"]
    assert service_main(["uninstall", "--root", str(tmp_path), "--no-systemctl"]) == 0
    assert not (tmp_path / "etc/systemd/system/reachy-mini.service").exists()
    assert not (tmp_path / "etc/systemd/system/reachy-mini-backup.timer").exists()
    assert service_main(["install", "--root", str(tmp_path), "--user", "reachy", "--no-systemctl",
                         "--no-backup-timer"]) == 0
    assert not (tmp_path / "etc/systemd/system/reachy-mini-backup.timer").exists()


def test_backup_service_command_backs_up(tmp_path):
    """The timer's command, run as written (minus the path), makes a checked backup."""
    from reachy_mini.core.health.incidents import Incident, IncidentWriter

    w = IncidentWriter(str(tmp_path / "data"))
    w.record(Incident(time.time(), "/R/x", 2, 0, "m"))
    assert w.flush()
    w.close()
    service_main(["install", "--root", str(tmp_path), "--user", "reachy", "--no-systemctl"])
    backup = (tmp_path / "etc/systemd/system/reachy-mini-backup.service").read_text()
    argv = backup.split("ExecStart=")[1].split("\n")[0].split()
    argv = [a.replace("/var/lib/reachy-mini", str(tmp_path / "data")) for a in argv]
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0 and "integrity check: ok" in r.stdout, r.stdout + r.stderr
    assert len(os.listdir(tmp_path / "data" / "backups")) == 1


def test_ros2_mode_unit(tmp_path):
    assert service_main(["install", "--root", str(tmp_path), "--user", "reachy", "--no-systemctl", "--mode", "ros2",
                         "--ros-setup", "/opt/ros/kilted/setup.bash", "--ws-setup", "/home/reachy/ws/install/setup.bash"
                         ]) == 0
    unit = (tmp_path / "etc/systemd/system/reachy-mini.service").read_text()
    assert "source /opt/ros/kilted/setup.bash && source /home/reachy/ws/install/setup.bash && exec ros2 launch " \
           "reachy_mini bringup.launch.py" in unit
    assert "ROS_LOG_DIR=/var/log/reachy-mini/ros" in unit and "-mtime +7" in unit
    backup = (tmp_path / "etc/systemd/system/reachy-mini-backup.service").read_text()
    assert "source /home/reachy/ws/install/setup.bash && exec python3 -m reachy_mini.core.health.incidents backup" \
        in backup
    with pytest.raises(SystemExit):
        service_main(["install", "--root", str(tmp_path), "--mode", "ros2", "--no-systemctl"])


def test_one_process_reaches_the_unit_in_both_modes(tmp_path):
    from reachy_mini.ops.systemd import render_unit

    unit = render_unit("reachy", "bringup", "/opt/rm/bin", one_process=True)
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert start.split()[0].endswith("reachy-mini-bringup") and " --one-process" in start, start
    assert " --one-process" not in render_unit("reachy", "bringup", "/opt/rm/bin")
    ros2 = render_unit("reachy", "ros2", "/opt/rm/bin", ros_setup="/opt/ros/kilted/setup.bash", one_process=True)
    assert "bringup.launch.py web_port:=8000 one_process:=true" in ros2


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze(tmp_path):
    service_main(["install", "--root", str(tmp_path), "--user", "root", "--no-systemctl"])
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "etc/systemd/system/reachy-mini.service"),
                        str(tmp_path / "etc/systemd/system/reachy-mini-backup.service"),
                        str(tmp_path / "etc/systemd/system/reachy-mini-backup.timer")],
                       capture_output=True, text=True)
    assert "Unknown key" not in r.stderr and "Invalid" not in r.stderr, r.stderr


def test_rotating_log_is_bounded(tmp_path):
    log = RotatingLog(str(tmp_path / "n.log"), 10_000, 2)
    for i in range(5000):
        log.write(f"line {i} {'x' * 50}\n".encode())
    files = sorted(os.listdir(tmp_path))
    assert files == ["n.log", "n.log.1", "n.log.2"]
    assert all(os.path.getsize(tmp_path / f) <= 10_000 for f in files)
    assert b"line 4999" in (tmp_path / "n.log").read_bytes()


def test_supervisor_node_logs_rotate(tmp_path, ros_env):
    """Debug logging of the whole stack for a while: every node log rotates and
    the directory stays under its bound (nodes x (backups + 1) x max size)."""
    logs = tmp_path / "logs"
    argv = [sys.executable, "-m", "reachy_mini.ops.supervisor", "--use-sim", "--state-file", str(tmp_path / "s.json"),
            "--data-dir", str(tmp_path / "data"), "--log-dir", str(logs), "--log-max-bytes", "10000",
            "--log-backups", "1", "--log-level", "debug", "--only", "motor_node", "camera_node", "health_node"]
    sup = subprocess.Popen(argv, env=dict(ros_env, XDG_RUNTIME_DIR=str(tmp_path)), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: os.path.exists(logs / "motor_node.log.1"), timeout=40, period=0.5)
        time.sleep(3)
    finally:
        sup.terminate()
        sup.communicate(timeout=20)
    names = sorted(os.listdir(logs))
    assert set(names) <= {"bringup.log", "bringup.log.1"} | {f"{n}.log{s}" for n in
                                                              ("motor_node", "camera_node", "health_node")
                                                              for s in ("", ".1")}, names
    total = sum(os.path.getsize(logs / n) for n in names)
    assert total <= 4 * 2 * 11_000, total
    motor = (logs / "motor_node.log").read_bytes() + (logs / "motor_node.log.1").read_bytes()
    assert b"[DEBUG]" in motor and b"[motor_node]: bus " in motor
    # log_level is our nodes' level, not rcl's (whose debug output drowned ours)
    everything = b"".join((logs / n).read_bytes() for n in names)
    assert b"] [rcl" not in everything and b"] [rmw" not in everything
