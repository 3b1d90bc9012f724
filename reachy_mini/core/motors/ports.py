"""Where the servo bus is, and why it cannot be opened: plain Python (no
rclpy, no compiled driver), so motor_node can wait for a robot that is not
plugged in yet and say exactly what it waits for."""
from __future__ import annotations

import os

VID_PID = (0x1A86, 0x55D3)                 # Reachy Mini Lite's USB serial adapter
WIRELESS_PORT = "/dev/ttyAMA3"             # Reachy Mini Wireless (CM4 UART)
UDEV_LINK = "/dev/reachy_mini_servo"       # config/udev/99-reachy-mini.rules


def find_adapter() -> str | None:
    """The udev link, else a USB serial port with VID:PID 1a86:55d3, else the
    Wireless UART if present."""
    from serial.tools import list_ports

    if os.path.exists(UDEV_LINK):
        return UDEV_LINK
    for p in list_ports.comports():
        if (p.vid, p.pid) == VID_PID:
            return p.device
    return WIRELESS_PORT if os.path.exists(WIRELESS_PORT) else None


def resolve_port(setting: str, find=find_adapter, exists=os.path.exists) -> tuple[str | None, str]:
    """(port, '') when the bus can be tried now, else (None, what we wait for)."""
    if setting == "auto":
        found = find()
        if found is None:
            return None, f"waiting for the servo adapter (no {VID_PID[0]:04x}:{VID_PID[1]:04x}, no {WIRELESS_PORT})"
        return found, ""
    if not exists(setting):
        return None, f"waiting for the servo adapter: {setting} does not exist"
    return setting, ""


def port_holders(path: str, proc: str = "/proc") -> list[tuple[int, str]]:
    """Processes that have `path` open (pid, command), e.g. the vendor's
    daemon holding the serial port. Only what this user may see."""
    try:
        target = os.path.realpath(path)
    except OSError:
        return []
    out = []
    for pid in filter(str.isdigit, os.listdir(proc)):
        if int(pid) == os.getpid():
            continue
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.path.realpath(os.path.join(fd_dir, fd)) == target:
                    with open(os.path.join(proc, pid, "cmdline"), "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    out.append((int(pid), cmd[:120]))
                    break
            except OSError:
                continue
    return out


def open_failure(path: str, error: str, holders=port_holders) -> str:
    """The message for a port that exists but does not open."""
    held = holders(path)
    if held:
        who = ", ".join(f"pid {pid} ({cmd})" for pid, cmd in held)
        return f"serial port {path} is busy: held by {who}"
    return f"cannot open {path}: {error}; retrying"
