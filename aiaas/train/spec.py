"""From a SPEC file plus command-line overrides to a checked `JobConfig`.

The launcher and every worker call `load_job_config` with the same arguments, so
a job started by `aiaas train` and one started by `torchrun -m aiaas.train.worker`
resolve to the same configuration. Overrides are dotted keys (`training.steps=20`)
whose values are TOML literals, which keeps one parser for files and flags.
"""

from __future__ import annotations

import difflib
import importlib
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiaas.train.config import ConfigError, JobConfig, build_job_config, is_reference


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with `value` read as a TOML literal, or as a plain string if it is not one."""
    key, sep, literal = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", f"{text!r} is not KEY=VALUE")
    try:
        value = tomllib.loads(f"value = {literal.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = literal.strip()
    return key, value


def format_override(key: str, value: Any) -> str:
    """The inverse of `parse_override`, for handing flags on to workers."""
    if isinstance(value, bool):
        literal = "true" if value else "false"
    elif isinstance(value, int | float):
        literal = repr(value)
    else:
        literal = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{key}={literal}"


def read_spec(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError("", f"SPEC {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError("", f"SPEC {path} is not valid TOML: {error}") from None


def apply_overrides(raw: dict[str, Any], overrides: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    for key, value in overrides:
        *sections, leaf = key.split(".")
        table = merged
        for section in sections:
            nested = table.setdefault(section, {})
            if not isinstance(nested, dict):
                raise ConfigError(key, f"{section} is not a table")
            table = nested
        table[leaf] = value
    return merged


def load_job_config(
    spec: Path | None, overrides: Iterable[tuple[str, Any]] = (), *, check_references: bool = True
) -> JobConfig:
    """Read, merge and check; with `check_references`, also import every named factory."""
    raw = apply_overrides(read_spec(spec), overrides)
    raw.setdefault("name", spec.stem if spec is not None else "train")
    config = build_job_config(raw)
    if check_references:
        check_job_references(config, base=spec.parent if spec is not None else Path.cwd())
    return config


def check_job_references(config: JobConfig, base: Path) -> None:
    """Fail now, in the launcher, on a factory that does not import or a missing data file."""
    resolve_reference(config.model.factory, "model.factory")
    for key in ("dataset", "eval_dataset"):
        value = getattr(config.data, key)
        if value.endswith(".npz"):
            _check_npz(resolve_path(value, base), f"data.{key}")
        elif value:
            resolve_reference(value, f"data.{key}")
    if is_reference(config.training.loss):
        resolve_reference(config.training.loss, "training.loss")


def resolve_path(value: str, base: Path) -> Path:
    """Relative data paths in a SPEC are relative to the SPEC, like includes in most tools."""
    path = Path(value).expanduser()
    return path if path.is_absolute() or path.exists() else base / path


def resolve_reference(reference: str, key: str) -> Any:
    """Import `module:attribute` and return the attribute, or raise a one-line `ConfigError`."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(key, f"cannot import module {module_name!r}: {error}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [name for name in dir(target) if not name.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean '{module_name}:{close[0]}'?)" if close else ""
            raise ConfigError(key, f"{module_name!r} has no attribute {part!r}{hint}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(key, f"{reference} is not callable")
    return target


def _check_npz(path: Path, key: str) -> None:
    import numpy as np

    if not path.is_file():
        raise ConfigError(key, f"{path} does not exist")
    try:
        with np.load(path) as arrays:
            missing = {"x", "y"} - set(arrays.files)
            lengths = {len(arrays[name]) for name in ("x", "y") if name in arrays.files}
    except (OSError, ValueError) as error:
        raise ConfigError(key, f"{path} is not a readable .npz: {error}") from None
    if missing:
        raise ConfigError(key, f"{path} lacks array(s) {', '.join(sorted(missing))}")
    if len(lengths) != 1:
        raise ConfigError(key, f"{path}: x and y differ in length")
