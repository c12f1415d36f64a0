"""PyTorch -> ONNX export with a numerical parity check, into a servable model repository.

The names below load on first use: `aiaas.export.cli` is imported by the `aiaas`
command, and importing it must not pull torch into `aiaas serve`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiaas.export.api import ExportReport, export_onnx, export_to_repository
    from aiaas.export.errors import ExportFailed, ParityError, UnsupportedOperator

_LAZY = {
    "ExportReport": "aiaas.export.api",
    "export_onnx": "aiaas.export.api",
    "export_to_repository": "aiaas.export.api",
    "ExportFailed": "aiaas.export.errors",
    "ParityError": "aiaas.export.errors",
    "UnsupportedOperator": "aiaas.export.errors",
}

__all__ = [
    "ExportFailed",
    "ExportReport",
    "ParityError",
    "UnsupportedOperator",
    "export_onnx",
    "export_to_repository",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'aiaas.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
