"""web_bridge's typed configuration (its ROS parameters)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from reachy_mini.core.config import NodeConfig, absolute_or_empty, setting


def _relative_name(v: str) -> str | None:
    return None if v and not v.startswith("/") and " " not in v else "must be a relative node name"


@dataclass
class WebBridgeConfig(NodeConfig):
    use_sim: bool = setting(False, "unused; accepted for a uniform command line")
    host: str = setting("127.0.0.1", "listen address (0.0.0.0 to serve the LAN)")
    port: int = setting(8000, "listen port", 1, 65535)
    data_dir: str = setting("", "health_node's data directory (incident history); '' = the robot's own "
                            "(~/.local/share/reachy_mini[/<namespace>])", check=absolute_or_empty)
    token_file: str = setting("", "file holding the bearer token for writes (else env REACHY_MINI_WEB_TOKEN)")
    history_minutes: float = setting(30.0, "length of the temperature / loop-rate history", 1.0, 1440.0)
    write_rate: int = setting(5, "writes allowed per client per write_window_s", 1, 1000, runtime=True)
    write_window_s: float = setting(10.0, "rate-limit window for writes", 1.0, 3600.0, runtime=True)
    service_timeout_s: float = setting(3.0, "how long a write waits for motor_node", 0.1, 30.0, runtime=True)
    health_stale_s: float = setting(3.0, "the robot's health is STALE (503) when the health node has been silent "
                                    "this long (default: 3 x its 1 s period)", 0.5, 600.0, runtime=True)
    motor_node: str = setting("motor_node", "name of the motor node (its services, relative to this namespace)",
                              check=_relative_name)

    def token(self, environ=os.environ) -> str | None:
        """The bearer token for writes (token_file, else REACHY_MINI_WEB_TOKEN);
        None disables writes. Raises ValueError naming the parameter."""
        if self.token_file:
            try:
                with open(self.token_file) as f:
                    tok = f.read().strip()
            except OSError as e:
                raise ValueError(f"parameter 'token_file' = {self.token_file!r}: {e.strerror}") from None
            if len(tok) < 16:
                raise ValueError("parameter 'token_file': the token must be at least 16 characters")
            return tok
        tok = environ.get("REACHY_MINI_WEB_TOKEN", "").strip()
        if tok and len(tok) < 16:
            raise ValueError("REACHY_MINI_WEB_TOKEN must be at least 16 characters")
        return tok or None

    def token_file_exposed(self) -> bool:
        return bool(self.token_file) and bool(os.stat(self.token_file).st_mode & 0o077)

    def public(self) -> dict:
        """What /api/system/info may show (no token path)."""
        d = self.as_dict()
        d.pop("token_file")
        return d | {"token_file_set": bool(self.token_file)}
