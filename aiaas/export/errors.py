"""Export's failures, as the shared error kinds so the CLI maps them to exit codes.

A bad input (file, shape, flag) is the user's mistake and is an ``InvalidArgument``
(exit 2); a model that converts but disagrees with PyTorch, or uses an operator
ONNX cannot express, is a failed export (exit 1) and gets its own kinds here.
"""

from __future__ import annotations

from aiaas.errors import AiaasError


class ExportFailed(AiaasError):
    """The model could not be turned into a correct ONNX model."""

    http_status = 422
    grpc_code = "FAILED_PRECONDITION"


class UnsupportedOperator(ExportFailed):
    """An operator of the model has no ONNX translation."""


class ParityError(ExportFailed):
    """The ONNX model's outputs differ from PyTorch's beyond the tolerance."""
