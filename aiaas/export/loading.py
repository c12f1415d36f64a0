"""Models named on the command line: `module.path:factory` (+ state dict) or a `.pt2` file.

Each failure becomes one ``InvalidArgument`` line naming the flag's value, so the
CLI can answer a typo with exit code 2 instead of a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aiaas.errors import InvalidArgument


def load_model(spec: str, weights: Path | None = None) -> torch.nn.Module:
    """A `.pt2` program file or a `module:factory`, with optional weights, in eval mode."""
    if spec.endswith(".pt2"):
        if weights is not None:
            raise InvalidArgument("--weights applies to a module:factory, not a .pt2 program")
        # An exported program is already in inference form and refuses .eval().
        module: torch.nn.Module = load_program(Path(spec)).module()
        return module
    model = call_factory(spec)
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def load_program(path: Path) -> torch.export.ExportedProgram:
    if not path.is_file():
        raise InvalidArgument(f"program file {path} does not exist")
    try:
        return torch.export.load(str(path))
    except Exception as error:  # torch.export.load raises whatever its unpickler hit
        raise InvalidArgument(f"{path} is not a torch.export program: {error}") from None


def resolve(spec: str) -> Callable[..., Any]:
    """Import `module.path:attribute`; the current directory counts as a source root."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidArgument(f"model '{spec}' is neither module.path:factory nor a .pt2 file")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidArgument(f"cannot import '{module_name}': {error}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise InvalidArgument(f"module '{module_name}' has no attribute '{attribute}'")
        target = getattr(target, part)
    if not callable(target):
        raise InvalidArgument(f"'{spec}' is not callable")
    return target  # type: ignore[no-any-return]


def call_factory(spec: str, **kwargs: Any) -> torch.nn.Module:
    model = resolve(spec)(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgument(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a state dict (bare, or under 'state_dict'/'model' as training loops save it)."""
    if not path.is_file():
        raise InvalidArgument(f"weights file {path} does not exist")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike
        raise InvalidArgument(f"{path} is not a PyTorch state dict: {error}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise InvalidArgument(f"{path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        first = details[0] if details else str(error)
        raise InvalidArgument(f"weights in {path} do not fit the model: {first}") from None
