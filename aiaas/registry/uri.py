"""Model URIs as MLflow spells them, and the names they may contain.

Names become folder names in a Triton model repository and path segments in
HTTP routes, so they are restricted to characters that are safe in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiaas.errors import InvalidArgument

SCHEME = "models:/"

#: Safe as a folder name, a URL path segment and a Triton model name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: An alias must not look like a version number, or `models:/m/3` and `models:/m@3` would blur.
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_RESERVED_ALIASES = frozenset({"latest"})
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ModelUri:
    """A parsed `models:/` URI: exactly one of version, alias or latest, or none (the model)."""

    name: str
    version: int | None = None
    alias: str | None = None
    latest: bool = False

    @property
    def is_model(self) -> bool:
        return self.version is None and self.alias is None and not self.latest

    def __str__(self) -> str:
        if self.version is not None:
            return f"{SCHEME}{self.name}/{self.version}"
        if self.alias is not None:
            return f"{SCHEME}{self.name}@{self.alias}"
        if self.latest:
            return f"{SCHEME}{self.name}/latest"
        return f"{SCHEME}{self.name}"


def version_uri(name: str, version: int) -> str:
    return f"{SCHEME}{name}/{version}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias in _RESERVED_ALIASES:
        raise InvalidArgument(
            f"invalid alias {alias!r}: use 1-64 letters, digits, '_' or '-', starting with a "
            "letter or '_' ('latest' is reserved)"
        )
    return alias


def check_version(version: int) -> int:
    """A version number given as a number (an HTTP body, Python): the range a stored
    version can have, so a huge one is the caller's mistake, not a database overflow."""
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version <= MAX_VERSION:
        raise InvalidArgument(f"invalid version {version!r}: expected 1 to {MAX_VERSION}")
    return version


def parse_version(text: str) -> int:
    """A version number as a user types it; 0, negatives and huge numbers are refused."""
    if (
        not text.isascii()
        or not text.isdigit()
        or len(text) > 10
        or not 0 < int(text) <= MAX_VERSION
    ):
        raise InvalidArgument(f"invalid version {text!r}: expected a positive integer")
    return int(text)


def parse_uri(text: str) -> ModelUri:
    """Parse `models:/NAME`, `models:/NAME/VERSION`, `models:/NAME/latest`, `models:/NAME@ALIAS`."""
    if not isinstance(text, str) or not text.startswith(SCHEME):
        raise InvalidArgument(
            f"invalid model URI {text!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    rest = text[len(SCHEME) :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return ModelUri(check_name(name), alias=check_alias(alias))
    if "/" in rest:
        name, version = rest.split("/", 1)
        if version == "latest":
            return ModelUri(check_name(name), latest=True)
        return ModelUri(check_name(name), version=parse_version(version))
    return ModelUri(check_name(rest))


def parse_version_uri(text: str) -> ModelUri:
    """A URI that must name one version (by number, alias or latest), not a whole model."""
    uri = parse_uri(text)
    if uri.is_model:
        raise InvalidArgument(f"{text!r} names a model; add /VERSION or @ALIAS to name a version")
    return uri
