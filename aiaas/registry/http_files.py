"""A version's file over HTTP, resumable: one byte range (`Range: bytes=N-`), guarded by
the file's sha256 as its strong ETag (`If-Range`, `If-None-Match`).

A device on a poor link resumes a cut download where it stopped instead of starting
again; the ETag is the content hash, so a resumed file can only be the same file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from aiaas.registry.artifacts import CHUNK
from aiaas.registry.records import ArtifactFile

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def etag_matches(header: str | None, etag: str) -> bool:
    """`If-None-Match`: a list of entity tags, or `*`; weak tags compare weakly (RFC 9110)."""
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def byte_range(request: Request, size: int, etag: str) -> tuple[int, int] | None:
    """The one range asked for, inclusive; None for the whole file (no Range header, an
    If-Range that does not match, or a form we do not serve, as RFC 9110 allows).
    Raises ValueError for a range that starts past the end."""
    header = request.headers.get("range")
    if header is None:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        length = min(int(last), size)
        if length == 0:
            raise ValueError
        return size - length, size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError
    return start, end


def file_response(request: Request, item: ArtifactFile, handle: IO[bytes]) -> Response:
    """200 with the whole file, 206 with a range, 304 if the client has it, 416 past the end.
    Takes ownership of `handle`."""
    etag = f'"{item.sha256}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        handle.close()
        return Response(status_code=304, headers=headers)
    try:
        chosen = byte_range(request, item.size_bytes, etag)
    except ValueError:
        handle.close()
        headers["Content-Range"] = f"bytes */{item.size_bytes}"
        message = f"range not satisfiable: {item.path} has {item.size_bytes} bytes"
        return JSONResponse({"error": message}, status_code=416, headers=headers)
    start, end = chosen if chosen is not None else (0, item.size_bytes - 1)
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if chosen is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{item.size_bytes}"
    return StreamingResponse(
        _read(handle, start, end - start + 1),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


def _read(handle: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    """A plain iterator: Starlette runs it in its thread pool, off the event loop."""
    try:
        handle.seek(start)
        while length > 0:
            chunk = handle.read(min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()
