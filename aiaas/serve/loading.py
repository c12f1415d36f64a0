"""Building model versions from a folder, off the event loop: choosing versions by
policy, completing the config, creating the runtime sessions, and the fingerprints
that tell the repository whether a folder changed since it was loaded.

Everything here is blocking and touches no shared state; the repository swaps
what it returns into service on the event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from aiaas import lineage
from aiaas.errors import AiaasError, InvalidArgument
from aiaas.serve import config as model_config
from aiaas.serve import memory_guard, provenance
from aiaas.serve.llm.model import LLMModel, is_language_model, load_language_model
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.serve.runtimes.onnx import OnnxModel
from aiaas.serve.serving_config import ServingConfig, runtime_options, serving_config
from aiaas.serve.sources import ModelFolder, read_model_folder


@dataclass(frozen=True, slots=True)
class Prepared:
    """A version built off the event loop, before its batcher exists; no runtime = unchanged."""

    version: int
    fingerprint: str
    config: pb.ModelConfig | None = None
    serving: ServingConfig | None = None
    runtime: OnnxModel | None = None
    labels: dict[str, list[str]] = field(default_factory=dict)
    #: A text-generation model's tokenizer and settings beside its runtime.
    llm: LLMModel | None = None
    #: The model file's sha256 and the lineage record in its metadata, read once here.
    file_sha256: str = ""
    file_lineage: dict[str, Any] | None = None
    #: Built in a model's own engine process (`--workers`): what stands for it here,
    #: and the provenance that process gave it.
    hosted: Any = None
    provenance: provenance.Provenance | None = None


def chosen_versions(config: pb.ModelConfig, folder: ModelFolder) -> list[int]:
    available = sorted(folder.versions)
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        chosen = available
    elif choice == "specific":
        missing = [v for v in policy.specific.versions if v not in folder.versions]
        if missing:
            raise InvalidArgument(
                f"version_policy.specific: version {missing[0]} has no folder "
                f"(found {available or 'none'})"
            )
        chosen = sorted(policy.specific.versions)
    else:
        count = policy.latest.num_versions if choice == "latest" else 1
        if count <= 0:
            raise InvalidArgument("version_policy.latest.num_versions must be > 0")
        chosen = available[-count:]
    if not chosen:
        raise InvalidArgument(f"no version folders (positive integers) in {folder.path}")
    return chosen


def base_config(folder: ModelFolder, override: pb.ModelConfig | None) -> pb.ModelConfig:
    if override is not None:
        return override
    if folder.config_text is None:
        return pb.ModelConfig()
    return model_config.parse_pbtxt(folder.config_text)


def model_fingerprint(prepared: list[Prepared]) -> str:
    return "|".join(f"{item.version}:{item.fingerprint}" for item in prepared)


def folder_fingerprint(name: str, path: Path) -> str:
    """What model_fingerprint would say after loading the folder as it is now."""
    try:
        folder = read_model_folder(name, path)
        versions = chosen_versions(base_config(folder, None), folder)
    except (AiaasError, OSError):
        # No versions to name: the config text (or its absence) identifies the state.
        config = path / "config.pbtxt"
        return "broken:" + (config.read_text() if config.is_file() else "")
    return "|".join(f"{v}:{folder.fingerprint([v])}" for v in versions)


def prepare_model(
    folder: ModelFolder,
    override: pb.ModelConfig | None,
    loaded: Mapping[int, str],
    max_model_bytes: int | None = None,
) -> list[Prepared]:
    """Build every chosen version that changed (blocking: creates sessions); all or nothing.
    A version whose files exceed `max_model_bytes` (None: a share of MemAvailable) is refused."""
    base = base_config(folder, override)
    versions = chosen_versions(base, folder)
    # Each override is its own state: loading a different override must rebuild.
    marker = "" if override is None else "override:" + _config_digest(override)
    prepared: list[Prepared] = []
    try:
        for version in versions:
            fingerprint = folder.fingerprint([version]) + marker
            if loaded.get(version) == fingerprint:
                prepared.append(Prepared(version, fingerprint))
            else:
                prepared.append(
                    _prepare_version(folder, base, version, fingerprint, max_model_bytes)
                )
    except Exception:
        for item in prepared:
            if item.runtime is not None:
                item.runtime.close()
        raise
    return prepared


def generates_text(folder: ModelFolder, override: pb.ModelConfig | None) -> bool:
    """Whether any chosen version of the model is a language model, read from its config
    and files without loading it."""
    base = base_config(folder, override)
    parameters = model_config.string_parameters(base)
    return any(
        is_language_model(parameters, folder.versions[version])
        for version in chosen_versions(base, folder)
    )


def _config_digest(config: pb.ModelConfig) -> str:
    return hashlib.sha256(config.SerializeToString(deterministic=True)).hexdigest()[:16]


def _prepare_version(
    folder: ModelFolder,
    base: pb.ModelConfig,
    version: int,
    fingerprint: str,
    max_model_bytes: int | None = None,
) -> Prepared:
    options = runtime_options(base)
    filename = _plain_filename(base.default_model_filename or model_config.DEFAULT_MODEL_FILENAME)
    model_path = folder.versions[version] / filename
    if not model_path.is_file():
        raise InvalidArgument(f"version {version}: no model file {filename}")
    try:
        memory_guard.check_fits(folder.versions[version], max_model_bytes)
        runtime = OnnxModel(model_path, options)
    except InvalidArgument as error:
        raise InvalidArgument(f"version {version}: {error}") from None
    try:
        completed = model_config.complete(base, folder.name, runtime.inputs, runtime.outputs)
        serving = serving_config(completed)
        labels = _read_labels(folder, serving)
        llm = None
        if is_language_model(serving.parameters, folder.versions[version]):
            llm = load_language_model(folder.versions[version], runtime, serving.parameters)
        sha256 = provenance.file_sha256(model_path)
    except InvalidArgument as error:
        runtime.close()
        raise InvalidArgument(f"version {version}: {error}") from None
    except Exception:
        runtime.close()
        raise
    record = lineage.from_metadata(runtime.custom_metadata)
    return Prepared(version, fingerprint, completed, serving, runtime, labels, llm, sha256, record)


def _plain_filename(filename: str) -> str:
    """default_model_filename names a file in the version folder, as in Triton: a path (which
    a load request's config override could send) would read outside the repository."""
    if PurePosixPath(filename).name != filename or filename in (".", "..") or "\\" in filename:
        raise InvalidArgument(f"default_model_filename '{filename}' must be a plain file name")
    if "\x00" in filename:
        raise InvalidArgument("default_model_filename may not hold a NUL character")
    return filename


def _read_labels(folder: ModelFolder, serving: ServingConfig) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for output, filename in serving.label_filenames.items():
        path = folder.path / filename
        if not path.is_file() or Path(filename).name != filename:
            raise InvalidArgument(
                f"output '{output}'.label_filename: no file '{filename}' in the model folder"
            )
        labels[output] = path.read_text().splitlines()
    return labels
