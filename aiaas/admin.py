"""Who may change what a server serves: the one rule every admin action obeys.

Admin actions (model load and unload, shared-memory registration, registry writes)
decide what every client is answered by. With an admin token they need it
(`Authorization: Bearer <token>`, over gRPC the `authorization` metadata); without
one they are open only where the caller said so: to loopback clients of a server
that listens on loopback (as Triton users expect locally), or to everyone when the
operator asked for it explicitly. Imports our error table only, so the registry
and the server share it without importing each other.
"""

from __future__ import annotations

import hmac
import ipaddress
from enum import StrEnum

from aiaas.errors import PermissionDenied, Unauthenticated


class OpenTo(StrEnum):
    """Who may act when no token is configured."""

    NOBODY = "nobody"
    LOOPBACK = "loopback"
    EVERYONE = "everyone"


class AdminGuard:
    """Checks one admin action; raises 401 / UNAUTHENTICATED or 403 / PERMISSION_DENIED."""

    def __init__(self, token: str | None, open_to: OpenTo = OpenTo.NOBODY) -> None:
        self._token = token.encode() if token else None
        self.open_to = open_to

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def check(self, authorization: str | None, client_host: str | None, action: str) -> None:
        """``authorization`` is the header's (or metadata's) value as sent; it is compared
        in constant time and never repeated in a message."""
        if self._token is not None:
            scheme, _, given = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self._token
            ):
                raise Unauthenticated(f"{action} needs 'Authorization: Bearer <admin token>'")
            return
        if self.open_to is OpenTo.EVERYONE:
            return
        if self.open_to is OpenTo.LOOPBACK and is_loopback(client_host):
            return
        if self.open_to is OpenTo.LOOPBACK:
            raise PermissionDenied(f"{action} without an admin token is loopback-only")
        raise PermissionDenied(
            f"{action} is disabled: configure an admin token (or listen on loopback only)"
        )


def is_loopback(host: str | None) -> bool:
    """An IP loopback address or `localhost`."""
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def serving_guard(token: str | None, host: str, allow_open: bool) -> AdminGuard:
    """The guard of a server listening on ``host``: refuses (PermissionDenied) to build
    one that would leave admin actions open beyond loopback without being told to."""
    if token:
        return AdminGuard(token)
    if is_loopback(host):
        return AdminGuard(None, OpenTo.LOOPBACK)
    if allow_open:
        return AdminGuard(None, OpenTo.EVERYONE)
    raise PermissionDenied(
        f"refusing to serve on {host} with admin actions (load, unload, shared memory, "
        "registry writes) open to the network: set --admin-token (or AIAAS_ADMIN_TOKEN), "
        "or pass --allow-open-admin"
    )
