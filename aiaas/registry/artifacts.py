"""The content-addressed artifact store: every file is a blob named by its sha256.

Any fsspec URL works as the root (a directory by default, an object store later).
A blob is written under a unique temporary name, read back and verified, then
renamed into place, so a blob path either holds exactly its content or nothing;
a process killed halfway leaves only a temporary file that nobody refers to and
`gc` removes once it is old.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec import AbstractFileSystem

from aiaas.errors import FailedPrecondition, Unavailable
from aiaas.registry.faults import pause_point

CHUNK = 1024 * 1024
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Blob:
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size_bytes: int
    age_s: float


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    def __init__(self, root: str) -> None:
        self.url = root
        self.fs: AbstractFileSystem
        self.fs, self.root = fsspec.core.url_to_fs(os.path.expanduser(root))
        self.root = self.root.rstrip("/")

    def blob_path(self, sha256: str) -> str:
        return f"{self.root}/blobs/sha256/{sha256[:2]}/{sha256}"

    def put(self, source: Path) -> Blob:
        """Store one file; a blob already there is reused (and marked as freshly used)."""
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
        temporary = f"{self.root}/tmp/{uuid.uuid4().hex}.part"
        try:
            blob = self._write_temporary(source, temporary)
            pause_point("artifact-temp-written")
            final = self.blob_path(blob.sha256)
            if self._holds(final, blob.size_bytes):
                self._touch(final)
            else:
                self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                self.fs.mv(temporary, final)
        except OSError as error:
            # A full disk (or a file size limit): nothing was stored, retrying later may work.
            raise Unavailable(
                f"cannot write {source.name} to the artifact store {self.url}: "
                f"{error.strerror or error}"
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(temporary)
        return blob

    def fetch(self, sha256: str, size_bytes: int, dest: Path, what: str) -> None:
        """Copy a blob to `dest`, verifying size and hash; a mismatch is never left behind."""
        temporary = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        try:
            with self._open_blob(sha256, what) as source, open(temporary, "wb") as target:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    target.write(chunk)
            size = temporary.stat().st_size
            if digest.hexdigest() != sha256 or size != size_bytes:
                raise FailedPrecondition(
                    f"{what} is corrupt in the artifact store: sha256 {digest.hexdigest()} "
                    f"({size} bytes), expected {sha256} ({size_bytes} bytes)"
                )
            temporary.replace(dest)
        finally:
            temporary.unlink(missing_ok=True)

    def blobs(self) -> list[StoredBlob]:
        base = f"{self.root}/blobs/sha256"
        if not self.fs.exists(base):
            return []
        found = []
        for path, info in self.fs.find(base, detail=True).items():
            name = path.rsplit("/", 1)[-1]
            if len(name) == 64 and set(name) <= _HEX:
                found.append(StoredBlob(name, int(info.get("size") or 0), self._age(path)))
        return found

    def temporaries(self) -> list[tuple[str, float]]:
        """Leftovers of interrupted writes: (path, age in seconds)."""
        base = f"{self.root}/tmp"
        if not self.fs.exists(base):
            return []
        return [(path, self._age(path)) for path in self.fs.find(base)]

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def _write_temporary(self, source: Path, temporary: str) -> Blob:
        digest = hashlib.sha256()
        size = 0
        with open(source, "rb") as reader, self.fs.open(temporary, "wb") as writer:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
            _sync(writer)
        blob = Blob(digest.hexdigest(), size)
        self._verify(temporary, blob, f"the copy of {source}")
        return blob

    def _verify(self, path: str, blob: Blob, what: str) -> None:
        digest = hashlib.sha256()
        with self.fs.open(path, "rb") as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != blob.sha256:
            raise FailedPrecondition(f"{what} does not read back as written (sha256 mismatch)")

    def _holds(self, path: str, size_bytes: int) -> bool:
        try:
            return int(self.fs.size(path)) == size_bytes
        except FileNotFoundError:
            return False

    def _touch(self, path: str) -> None:
        """Reset a reused blob's age, so that a concurrent `gc` keeps it until our row commits."""
        with contextlib.suppress(NotImplementedError, OSError):
            self.fs.touch(path, truncate=False)

    def open_blob(self, sha256: str, what: str) -> IO[bytes]:
        """A blob for reading (seekable), for the HTTP API's ranged downloads."""
        return self._open_blob(sha256, what)

    def _open_blob(self, sha256: str, what: str) -> IO[bytes]:
        try:
            handle: IO[bytes] = self.fs.open(self.blob_path(sha256), "rb")
        except FileNotFoundError:
            raise FailedPrecondition(
                f"{what} is missing from the artifact store {self.url} (blob {sha256})"
            ) from None
        return handle

    def _age(self, path: str) -> float:
        try:
            modified = self.fs.modified(path)
        except (NotImplementedError, FileNotFoundError):
            return 0.0  # unknown age counts as new: never removed by mistake
        return max(0.0, time.time() - float(modified.timestamp()))


def _sync(writer: Any) -> None:
    """Flush a local file to disk before it is renamed into place; object stores need not."""
    writer.flush()
    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        os.fsync(writer.fileno())
