"""Where a bundle's model comes from: a registry version (`models:/NAME/N`, `@ALIAS`)
or a local model folder (Triton's `NAME/` with config.pbtxt and version folders, or one
version folder), turned into one version folder on disk and what is known about it.

A registry version is downloaded (every hash checked) into the bundler's work folder;
a local folder is read in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiaas.errors import InvalidArgument, NotFound

MODEL_FILENAME = "model.onnx"
GENERATION_FILENAME = "generation.json"
TOKENIZER_FILENAME = "tokenizer.json"
#: config.pbtxt's `task` parameter -> the bundle's task.
CONFIG_TASKS = {"text-generation": "text-generation", "feature-extraction": "embedding"}
TASKS = ("tensor", "text-generation", "embedding")


@dataclass
class Source:
    """One model version as a folder, with what the registry or its config says of it."""

    folder: Path
    name: str
    version: int
    #: `models:/NAME/N` for a registry version, the absolute folder for a local one.
    uri: str
    task: str
    labels: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    #: The registry record's fields that describe it (recipe, tags, parents), if any.
    registry: dict[str, Any] | None = None
    #: Which variant this is (fp32 unless its recipe says int8/int4).
    variant: str = "fp32"
    #: Set when the bundler made the variant itself: how (a recipe), for the lineage.
    made: dict[str, Any] | None = None


def is_registry_uri(text: str) -> bool:
    return text.startswith("models:/")


def local_source(path: Path) -> Source:
    """A Triton model folder (its highest numbered version) or one version folder."""
    path = path.resolve()
    if not path.is_dir():
        raise NotFound(f"{path} is not a model folder")
    if (path / MODEL_FILENAME).is_file():
        version_dir, model_dir = path, path.parent
    else:
        versions = sorted(
            (int(child.name), child)
            for child in path.iterdir()
            if child.is_dir() and child.name.isdigit() and (child / MODEL_FILENAME).is_file()
        )
        if not versions:
            raise InvalidArgument(f"{path} holds no {MODEL_FILENAME} nor version folders with one")
        version_dir, model_dir = versions[-1][1], path
    parameters, labels = _read_config(model_dir)
    version = int(version_dir.name) if version_dir.name.isdigit() else 1
    name = model_dir.name if version_dir is not model_dir else version_dir.name
    return Source(
        folder=version_dir,
        name=name,
        version=version,
        uri=str(version_dir),
        task=task_of(version_dir, parameters),
        labels=labels,
        variant=folder_variant(version_dir),
    )


def registry_source(uri: str, registry_uri: str | None, work: Path) -> Source:
    """Resolve and download the version URI names into ``work``."""
    from aiaas.registry import Registry

    with Registry.open(registry_uri, create=False) as registry:
        version = registry.resolve(uri)
        folder = registry.download_version(version, work / f"{version.name}-{version.version}")
        record = version.to_dict()
    return source_from_record(record, folder)


def source_from_record(record: dict[str, Any], folder: Path) -> Source:
    labels = next(
        (folder / name for name in ("labels.txt", "labels.json") if (folder / name).is_file()),
        None,
    )
    return Source(
        folder=folder,
        name=record["name"],
        version=record["version"],
        uri=record["uri"],
        task=task_of(folder, {}),
        labels=labels,
        metrics=dict(record.get("metrics") or {}),
        registry={key: record.get(key) for key in ("recipe", "tags", "parents", "sha256", "run")},
        variant=record_variant(record) or "fp32",
    )


def record_variant(record: dict[str, Any]) -> str | None:
    """int8/int4 when a registry version was made by `aiaas compress` (llm: its recipe's
    `variant`; a classifier: a quantize step in its recipe), else None."""
    recipe = record.get("recipe") or {}
    if recipe.get("variant") in ("int8", "int4"):
        return str(recipe["variant"])
    steps = recipe.get("steps") or []
    if any(isinstance(step, dict) and step.get("step") == "quantize" for step in steps):
        return "int8"
    return None


def folder_variant(folder: Path) -> str:
    """A language model's variant, from the recipe its generation.json keeps."""
    import json

    generation = folder / GENERATION_FILENAME
    if not generation.is_file():
        return "fp32"
    try:
        recipe = json.loads(generation.read_text()).get("source", {}).get("recipe", {})
    except (OSError, ValueError, AttributeError):
        return "fp32"
    return str(recipe.get("variant") or "fp32")


def task_of(version_dir: Path, parameters: dict[str, str]) -> str:
    """The config's `task` when it has one; else what the folder holds."""
    task = parameters.get("task")
    if task is not None:
        return CONFIG_TASKS.get(task, "tensor")
    if (version_dir / GENERATION_FILENAME).is_file():
        return "text-generation"
    if (version_dir / TOKENIZER_FILENAME).is_file():
        return "embedding"
    return "tensor"


def _read_config(model_dir: Path) -> tuple[dict[str, str], Path | None]:
    """config.pbtxt's string parameters and the first output's label file, if any."""
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        return {}, None
    from aiaas.serve.config import parse_pbtxt, string_parameters

    config = parse_pbtxt(config_path.read_text())
    parameters = string_parameters(config)
    labels = next(
        (
            model_dir / output.label_filename
            for output in config.output
            if output.label_filename and (model_dir / output.label_filename).is_file()
        ),
        None,
    )
    return parameters, labels
