"""HTTP content codings for infer bodies, as `tritonclient.http` uses them: requests
with ``Content-Encoding: gzip | deflate``, responses compressed when the client's
``Accept-Encoding`` asks. Pure functions on bytes, so the size bound on a
decompressed body (a small compressed body can expand to gigabytes) is checked
in one place.
"""

from __future__ import annotations

import zlib

from aiaas.errors import InvalidArgument, PayloadTooLarge

#: Content coding -> zlib window bits: gzip framing, or the zlib structure that
#: HTTP calls "deflate".
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
#: Raw deflate streams, which some clients send as "deflate" despite the RFC.
_RAW_DEFLATE = -zlib.MAX_WBITS


def decode_body(body: bytes, coding: str | None, limit: int) -> bytes:
    """Undo the request's Content-Encoding, refusing output larger than ``limit``."""
    name = (coding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in _WBITS:
        raise InvalidArgument(
            f"Content-Encoding '{coding}' is not supported; use gzip, deflate or identity"
        )
    try:
        return _inflate(body, _WBITS[name], limit)
    except zlib.error:
        if name != "deflate":
            raise InvalidArgument("the request body is not valid gzip data") from None
    try:
        return _inflate(body, _RAW_DEFLATE, limit)
    except zlib.error:
        raise InvalidArgument("the request body is not valid deflate data") from None


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the decompressed request body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise zlib.error("truncated stream")
    return out


def choose_coding(accept_encoding: str | None) -> str | None:
    """The response coding to use: the first of gzip/deflate the client accepts."""
    if not accept_encoding:
        return None
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if name in _WBITS and not _refused(params):
            return name
    return None


def _refused(params: str) -> bool:
    """True for ``q=0``: the client lists the coding only to refuse it."""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value) == 0.0
            except ValueError:
                return False
    return False


def encode_body(body: bytes, coding: str) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, _WBITS[coding])
    return compressor.compress(body) + compressor.flush()
