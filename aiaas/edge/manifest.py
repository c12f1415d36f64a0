"""A bundle's manifest and its ed25519 signature: what a device checks before it
trusts a single byte of a model.

The manifest lists every other file of the bundle with its sha256 and size; the
signature (``manifest.sig``, the raw 64 bytes) covers the manifest's exact bytes,
so signing one small file vouches for all of them. Keys are PEM files made by
``aiaas edge keygen``: PKCS#8 private key (mode 0600), SubjectPublicKeyInfo public key.

A bundle is a flat folder::

    manifest.json   manifest.sig (optional)   run.py
    model.onnx (or model.ort + required_operators.config)   tokenizer.json ...

The runner shipped inside a bundle (run.py) repeats the checks with nothing but the
standard library and ``cryptography`` when a key is given; this module is the
source of truth for the format it checks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aiaas.errors import InvalidArgument

FORMAT = "aiaas-edge-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
RUNNER = "run.py"
PRIVATE_KEY = "edge.key"
PUBLIC_KEY = "edge.pub"
#: Files never listed in the manifest: the manifest and its signature.
UNLISTED = frozenset({MANIFEST, SIGNATURE})


class BundleRejected(InvalidArgument):
    """A bundle that fails a check: one plain line says which file and why."""


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(folder: Path) -> list[dict[str, Any]]:
    """Every file of the bundle but the manifest and signature, sorted by path."""
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative not in UNLISTED:
            entries.append(
                {"path": relative, "sha256": file_sha256(path), "size_bytes": path.stat().st_size}
            )
    return entries


def write_manifest(folder: Path, fields: Mapping[str, Any]) -> bytes:
    """Write manifest.json listing the folder's files; ``fields`` adds name, version,
    source_uri, task, variant, signature, metrics, lineage, min_onnxruntime..."""
    manifest = {"format": FORMAT, **fields, "files": list_files(folder)}
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (folder / MANIFEST).write_bytes(data)
    return data


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleRejected(f"{folder} is not a bundle: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as error:
        raise BundleRejected(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleRejected(f"{path} is not an {FORMAT} manifest")
    return manifest


def verify_files(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Every listed file present with its size and sha256, and no file unlisted."""
    listed = {entry["path"]: entry for entry in manifest.get("files", [])}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    extra = sorted(present - set(listed) - UNLISTED)
    if extra:
        raise BundleRejected(f"{folder}: file not in the manifest: {extra[0]}")
    for relative, entry in listed.items():
        path = folder / relative
        if not path.is_file():
            raise BundleRejected(f"{folder}: missing file {relative}")
        if path.stat().st_size != entry["size_bytes"] or file_sha256(path) != entry["sha256"]:
            raise BundleRejected(f"{folder}: {relative} does not match its sha256 in {MANIFEST}")


def sign(folder: Path, private_key: Path) -> None:
    data = (folder / MANIFEST).read_bytes()
    (folder / SIGNATURE).write_bytes(load_private_key(private_key).sign(data))


def verify_signature(folder: Path, public_key: Path) -> None:
    signature = folder / SIGNATURE
    if not signature.is_file():
        raise BundleRejected(f"{folder} is not signed (no {SIGNATURE}) and a public key was given")
    try:
        load_public_key(public_key).verify(signature.read_bytes(), (folder / MANIFEST).read_bytes())
    except InvalidSignature:
        raise BundleRejected(
            f"{folder}: the signature does not match {MANIFEST} under {public_key}"
        ) from None


def verify(folder: Path, public_key: Path | None = None) -> dict[str, Any]:
    """All checks a device makes before loading; returns the manifest."""
    manifest = read_manifest(folder)
    if public_key is not None:
        verify_signature(folder, public_key)
    verify_files(folder, manifest)
    return manifest


def keygen(folder: Path) -> KeyPair:
    """A new ed25519 key pair; refuses to overwrite a key that exists."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(folder / PRIVATE_KEY, folder / PUBLIC_KEY)
    for path in (pair.private, pair.public):
        if path.exists():
            raise InvalidArgument(f"{path} exists; keygen never overwrites a key")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(pair.private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    pair.public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pair


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise InvalidArgument(f"{path} is not a readable ed25519 private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgument(f"{path} is not an ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"{path} is not a readable ed25519 public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidArgument(f"{path} is not an ed25519 public key")
    return key
