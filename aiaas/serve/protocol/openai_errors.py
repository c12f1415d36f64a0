"""OpenAI's error envelope, ``{"error": {"message", "type", "param", "code"}}``.

The /v1 routes answer every failure in this shape, because OpenAI's clients read
``type``/``code`` from it and pick their exception class from the HTTP status. Our
own error kinds (aiaas.errors) map here by status, so the engine and the
repository never learn about OpenAI.
"""

from __future__ import annotations

from typing import Any

from aiaas.errors import AiaasError, InvalidArgument

#: OpenAI's ``type`` for each status (what its API answers for the same cause).
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


class OpenAIError(InvalidArgument):
    """A client mistake that names the request field it is about (OpenAI's ``param``)."""

    def __init__(
        self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.param = param
        self.http_status = status
        self.code = code

    @classmethod
    def invalid(cls, message: str, *, param: str | None = None) -> OpenAIError:
        return cls(message, param=param)


def envelope(error: AiaasError, param: str | None = None) -> dict[str, Any]:
    """The body for ``error``; ``param`` is used when the error does not name one."""
    status = error.http_status
    if isinstance(error, OpenAIError):
        param, code = error.param, error.code
    else:
        code = _CODES.get(status)
    return {
        "error": {
            "message": error.message,
            "type": _TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
    }


def internal_envelope() -> dict[str, Any]:
    return {
        "error": {
            "message": "internal server error",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
