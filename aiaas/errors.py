"""The error kinds every aiaas package raises and every front end translates.

Each kind carries its HTTP status and the *name* of its gRPC status code, so that
this module depends on nothing: the REST handler and the gRPC decorator read the
same table and can never disagree about what a client's mistake is called.
"""

from __future__ import annotations

import os
from typing import Any


class AiaasError(Exception):
    """Base of the errors a client may see; the message is shown to the client verbatim."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(AiaasError):
    """The request is malformed or does not fit the model."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotFound(AiaasError):
    """Unknown model, version, region or registry entry."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class AlreadyExists(AiaasError):
    """A name that must be unique is taken."""

    http_status = 409
    grpc_code = "ALREADY_EXISTS"


class PayloadTooLarge(AiaasError):
    """The request body or a passed file exceeds a configured bound."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(AiaasError):
    """Not ready, overloaded or timed out in the queue: retrying later may succeed."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


def cannot_listen(what: str, address: str, error: OSError) -> Unavailable:
    """A port or socket the server cannot take, in the one line every listener says it
    with: what it is for, where, and the system's reason."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return Unavailable(f"cannot listen for {what} on {address}: {reason}")


class Unauthenticated(AiaasError):
    """A write that needs the admin token came without it or with a wrong one."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class PermissionDenied(AiaasError):
    """The action is refused in this server's configuration."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class FailedPrecondition(AiaasError):
    """The action conflicts with the current state (e.g. deleting an aliased version)."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class InternalError(AiaasError):
    """Our own fault; the message is generic and the details go to the log."""

    http_status = 500
    grpc_code = "INTERNAL"


class TooManyRequests(AiaasError):
    """A bounded queue is full: the client should back off and retry (OpenAI answers 429)."""

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"


# ---- errors that cross a process boundary ------------------------------------------------

#: Every error kind by name: the far side raises the same class with the same message.
ERROR_KINDS: dict[str, type[AiaasError]] = {
    kind.__name__: kind
    for kind in list(globals().values())
    if isinstance(kind, type) and issubclass(kind, AiaasError)
}


def encode_error(error: AiaasError) -> list[str]:
    """[kind, message], the kind the nearest of ours (a package's own subclass travels as
    the kind it extends): what a `--workers` process sends of an error to another."""
    kind = next(k.__name__ for k in type(error).__mro__ if k.__name__ in ERROR_KINDS)
    return [kind, error.message]


def decode_error(record: Any) -> AiaasError:
    """The error the far side raised; a record that is not one is our own bug."""
    if isinstance(record, list) and len(record) == 2 and all(isinstance(x, str) for x in record):
        kind = ERROR_KINDS.get(record[0])
        if kind is not None:
            return kind(record[1])
    return InternalError("internal server error")
