"""ONNX Runtime's graph optimiser, run offline so the served file is already optimised.

Extended-level fusions (GELU, LayerNorm, attention, MatMul+Add) use ONNX Runtime's
contrib operators, which is fine for a model that ONNX Runtime serves; each level's
result is only kept when it still matches PyTorch (the caller checks parity).
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from aiaas.errors import InvalidArgument

#: Offline levels, most aggressive first. ORT_ENABLE_ALL adds layout transforms that
#: are specific to the machine that ran them, so it is left to load time.
LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def optimize(source: Path, destination: Path, level: str) -> Path:
    """Write ONNX Runtime's optimised graph of ``source`` to ``destination``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.optimized_model_filepath = str(destination)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return destination


def levels_from(requested: str) -> list[str]:
    """The levels to try for a requested one: it and the milder ones after it."""
    if requested == "none":
        return []
    if requested not in LEVELS:
        raise InvalidArgument(f"optimisation level '{requested}': use extended, basic or none")
    names = list(LEVELS)
    return names[names.index(requested) :]
