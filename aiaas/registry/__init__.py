"""The versioned model registry: models, versions, aliases, lineage, artifacts.

Imports nothing of the other aiaas packages (only `aiaas.errors`); they reach it
through `Registry`. The names below load on first use, so that importing the CLI
(`aiaas.registry.cli`) does not pull in SQLAlchemy, Alembic and onnx for every
`aiaas` command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiaas.registry.api import Registry
    from aiaas.registry.records import (
        ArtifactFile,
        Lineage,
        LineageNode,
        ModelVersion,
        RegisteredModel,
        Signature,
        VersionRef,
    )
    from aiaas.registry.uri import ModelUri, parse_uri
    from aiaas.tensors import TensorSpec

_LAZY = {
    "Registry": "aiaas.registry.api",
    "ArtifactFile": "aiaas.registry.records",
    "Lineage": "aiaas.registry.records",
    "LineageNode": "aiaas.registry.records",
    "ModelVersion": "aiaas.registry.records",
    "RegisteredModel": "aiaas.registry.records",
    "Signature": "aiaas.registry.records",
    "TensorSpec": "aiaas.tensors",
    "VersionRef": "aiaas.registry.records",
    "ModelUri": "aiaas.registry.uri",
    "parse_uri": "aiaas.registry.uri",
}

__all__ = [
    "ArtifactFile",
    "Lineage",
    "LineageNode",
    "ModelUri",
    "ModelVersion",
    "RegisteredModel",
    "Registry",
    "Signature",
    "TensorSpec",
    "VersionRef",
    "parse_uri",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'aiaas.registry' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
