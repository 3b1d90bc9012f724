"""systemd's notify protocol (sd_notify(3)) without libsystemd: datagrams
"READY=1", "WATCHDOG=1", "STATUS=..." to $NOTIFY_SOCKET (a path, or an
abstract socket when it starts with '@'). A no-op outside systemd."""
from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, environ=os.environ) -> None:
        addr = environ.get("NOTIFY_SOCKET", "")
        self.addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = environ.get("WATCHDOG_USEC", "")
        # Ping at half the watchdog period, as sd_watchdog_enabled(3) advises.
        self.watchdog_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.addr else None

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *fields: str) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(fields).encode(), self.addr)
            return True
        except OSError:
            return False
