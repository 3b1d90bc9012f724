"""web_bridge's typed configuration (its ROS parameters)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from reachy_mini.core.config import NodeConfig, absolute_or_empty, setting


WILDCARD_HOSTS = ("0.0.0.0", "::", "")   # listen on every interface


def _relative_name(v: str) -> str | None:
    return None if v and not v.startswith("/") and " " not in v else "must be a relative node name"


@dataclass
class WebBridgeConfig(NodeConfig):
    use_sim: bool = setting(False, "unused; accepted for a uniform command line")
    host: str = setting("127.0.0.1", "listen address (0.0.0.0 to serve the LAN)")
    port: int = setting(8000, "listen port", 1, 65535)
    data_dir: str = setting("", "health_node's data directory (incident history); '' = the robot's own "
                            "(~/.local/share/reachy_mini[/<namespace>])", check=absolute_or_empty)
    token_file: str = setting("", "file holding the owner's bearer token (else env REACHY_MINI_WEB_TOKEN): "
                              "writes; and every read but /api/health when host is not loopback")
    metrics_token_file: str = setting("", "file holding a read-only scrape token for GET /metrics only (else env "
                                      "REACHY_MINI_METRICS_TOKEN); '' = none, /metrics then takes the owner's token")
    certfile: str = setting("", "TLS certificate (PEM) to serve https; with keyfile; '' = plain http",
                            check=absolute_or_empty)
    keyfile: str = setting("", "TLS private key (PEM) of certfile; with certfile", check=absolute_or_empty)
    read_rate: int = setting(120, "protected reads (and stream connections, logins) allowed per client per "
                             "read_window_s when host is not loopback", 1, 100000, runtime=True)
    read_window_s: float = setting(10.0, "rate-limit window for reads", 1.0, 3600.0, runtime=True)
    history_minutes: float = setting(30.0, "length of the temperature / loop-rate history", 1.0, 1440.0)
    write_rate: int = setting(5, "writes allowed per client per write_window_s", 1, 1000, runtime=True)
    write_window_s: float = setting(10.0, "rate-limit window for writes", 1.0, 3600.0, runtime=True)
    service_timeout_s: float = setting(3.0, "how long a write waits for motor_node", 0.1, 30.0, runtime=True)
    health_stale_s: float = setting(3.0, "the robot's health is STALE (503) when the health node has been silent "
                                    "this long (default: 3 x its 1 s period)", 0.5, 600.0, runtime=True)
    motor_node: str = setting("motor_node", "name of the motor node (its services, relative to this namespace)",
                              check=_relative_name)
    sdk_enabled: bool = setting(True, "serve the vendor SDK's websocket /ws/sdk and the vendor daemon's HTTP API "
                                "(/api/daemon, /api/state, /api/move, ...: apps and tools written for `reachy-mini`)")
    sdk_open_to_network: bool = setting(False, "let non-loopback clients use /ws/sdk and the vendor HTTP API: they "
                                        "take no credential, so anyone on the network could move the robot "
                                        "(diagnostic WARN)")
    sdk_max_commands_per_s: int = setting(1000, "SDK commands (and vendor HTTP API writes) accepted per client per "
                                          "second; beyond, frames are dropped (HTTP: 429), and a client that keeps "
                                          "flooding /ws/sdk is closed", 10, 100000)
    head_kinematics_file: str = setting("", "head geometry for SDK gotos (IK), in the form of the vendor's "
                                        "kinematics_data.json; '' = the package's config/kinematics_data.json "
                                        "(as motor_node)", check=absolute_or_empty)

    def validate(self) -> list[str]:
        if bool(self.certfile) != bool(self.keyfile):
            return ["parameters 'certfile' and 'keyfile': set both (https) or neither (http)"]
        return []

    @staticmethod
    def _read_token(param: str, path: str, env: str, environ) -> str | None:
        if path:
            try:
                with open(path) as f:
                    tok = f.read().strip()
            except OSError as e:
                raise ValueError(f"parameter '{param}' = {path!r}: {e.strerror}") from None
            if len(tok) < 16:
                raise ValueError(f"parameter '{param}': the token must be at least 16 characters")
            return tok
        tok = environ.get(env, "").strip()
        if tok and len(tok) < 16:
            raise ValueError(f"{env} must be at least 16 characters")
        return tok or None

    def token(self, environ=os.environ) -> str | None:
        """The owner's bearer token (token_file, else REACHY_MINI_WEB_TOKEN);
        None disables writes. Raises ValueError naming the parameter."""
        return self._read_token("token_file", self.token_file, "REACHY_MINI_WEB_TOKEN", environ)

    def metrics_token(self, environ=os.environ) -> str | None:
        """The read-only scrape token for /metrics (metrics_token_file, else
        REACHY_MINI_METRICS_TOKEN), or None. Raises ValueError naming the parameter."""
        return self._read_token("metrics_token_file", self.metrics_token_file, "REACHY_MINI_METRICS_TOKEN", environ)

    def exposed(self) -> bool:
        """host is not a loopback address: reads need the token too."""
        from reachy_mini.web.security import is_loopback

        return not is_loopback(self.host)

    def secrets(self, environ=os.environ) -> tuple[str | None, str | None]:
        """(owner token, scrape token), checked together with `host`: an exposed
        server without a token does not start. Raises ValueError naming the parameters."""
        token, scrape = self.token(environ), self.metrics_token(environ)
        if self.exposed() and token is None:
            raise ValueError(f"parameter 'host' = {self.host!r} is not a loopback address, so every read but "
                             "/api/health needs the owner's token, and none is set: set parameter 'token_file' "
                             "(or env REACHY_MINI_WEB_TOKEN), or serve on host 127.0.0.1")
        if scrape is not None and scrape == token:
            raise ValueError("parameter 'metrics_token_file': the scrape token must differ from the owner's token "
                             "(it is stored in Prometheus' configuration; leave it '' to scrape with the owner's)")
        return token, scrape

    def tls(self) -> dict:
        """uvicorn's ssl_certfile / ssl_keyfile, {} for plain http; checked now
        (readable, PEM, key matches) so a bad file fails at start naming the
        parameter instead of killing the server thread."""
        if not self.certfile:
            return {}
        import ssl

        for param, path, marker in (("certfile", self.certfile, "CERTIFICATE-----"),
                                    ("keyfile", self.keyfile, "PRIVATE KEY-----")):
            try:
                with open(path, "rb") as f:
                    text = f.read(1 << 20)
            except OSError as e:
                raise ValueError(f"parameter '{param}' = {path!r}: {e.strerror}") from None
            if b"-----BEGIN " not in text or marker.encode() not in text:
                raise ValueError(f"parameter '{param}' = {path!r}: not a PEM file with a {marker.strip('-').lower()}")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.certfile, self.keyfile)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"parameters 'certfile' = {self.certfile!r} and 'keyfile' = {self.keyfile!r}: "
                             f"cannot be used together ({e})") from None
        return {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile}

    def url(self) -> str:
        """Where the page is served: https with a certificate; for a wildcard
        host, this machine's name (the server listens on every interface)."""
        import socket

        host = socket.gethostname() if self.host in WILDCARD_HOSTS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.certfile else 'http'}://{host}:{self.port}"

    def token_file_exposed(self) -> list[str]:
        """The token files other users may read (chmod 600 them)."""
        return [p for p in (self.token_file, self.metrics_token_file, self.keyfile)
                if p and os.path.exists(p) and os.stat(p).st_mode & 0o077]

    def public(self) -> dict:
        """What /api/system/info may show (no secret paths)."""
        d = self.as_dict()
        for k in ("token_file", "metrics_token_file", "keyfile"):
            d.pop(k)
        return d | {"token_file_set": bool(self.token_file), "metrics_token_file_set": bool(self.metrics_token_file),
                    "tls": bool(self.certfile)}
