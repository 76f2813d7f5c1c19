"""How the server runs: where it listens, which Host headers it answers, the launch token."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """``launch_token``: signs in whoever started the server, as an admin, for as long as it runs (like Jupyter's
    token: printed in the URL ``serve`` shows). ``allowed_hosts``: Host headers answered besides the loopback names
    (a server on loopback answers only those, against DNS rebinding; one on another address answers any, unless
    this lists them)."""

    host: str = "127.0.0.1"
    port: int = 8151
    launch_token: str = field(default_factory=lambda: "vl_launch_" + secrets.token_urlsafe(32))
    allowed_hosts: tuple[str, ...] = ()
    secure_cookies: bool = False  # behind HTTPS (a proxy): cookies only over TLS

    def answers_host(self, header: str) -> bool:
        """The request's Host header (``name[:port]``) names this server."""
        name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
        name = name.strip("[]").lower()
        if name in LOOPBACK_NAMES or name in self.allowed_hosts:
            return True
        return not is_loopback(self.host) and not self.allowed_hosts
