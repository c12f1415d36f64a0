"""The model a step starts from (compress, export): a `models:/` URI, an ONNX file, a
`.pt2` program or a `module:factory` with its weights.

A URI is downloaded from the registry into the step's work folder; a file is read where
it is. Either way the step learns what its lineage needs: the parent (the version's URI
and sha256, or the file's absolute path and sha256), the record the parent carries (its
run and data are inherited) and the registry version to link a registered result to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiaas import lineage
from aiaas.errors import InvalidArgument

URI_SCHEME = "models:/"


@dataclass(frozen=True, kw_only=True)
class InputModel:
    #: How the step names its source in recipes: the version URI, an absolute path, or
    #: the `module:factory` as given.
    label: str
    #: The model name a result gets unless told otherwise.
    name: str
    #: The ONNX file, for a URI or an .onnx file; None for PyTorch sources.
    onnx: Path | None = None
    #: The version folder a URI was downloaded into (its sidecar files beside model.onnx).
    folder: Path | None = None
    parents: list[dict[str, str]] = field(default_factory=list)
    #: The lineage record the source carries, if any: its run and data are inherited.
    record: dict[str, Any] | None = None
    #: `models:/NAME/VERSION` when the source is a registry version: a registered result's
    #: parent edge.
    version_uri: str | None = None

    def derived_record(self, step: str, recipe: Mapping[str, Any]) -> dict[str, Any]:
        """The record of a file this step made from this source."""
        known = self.record or {}
        return lineage.make_record(
            step,
            run_id=known.get("run_id"),
            dataset_fingerprint=known.get("dataset_fingerprint"),
            recipe=recipe,
            parents=self.parents,
        )


def is_model_uri(text: str) -> bool:
    return text.startswith(URI_SCHEME)


def open_input(
    spec: str, workdir: Path, *, weights: Path | None = None, registry: str | None = None
) -> InputModel:
    """The source ``spec`` names; a URI's files land under ``workdir``."""
    if is_model_uri(spec):
        if weights is not None:
            raise InvalidArgument("--weights applies to a module:factory, not a models:/ URI")
        return from_registry(spec, workdir, registry)
    if spec.endswith(".onnx"):
        return from_onnx_file(Path(spec))
    parents = []
    if spec.endswith(".pt2") and Path(spec).is_file():
        parents.append(lineage.file_parent(spec))
    if weights is not None and weights.is_file():
        parents.append(lineage.file_parent(weights))
    label = str(Path(spec).absolute()) if spec.endswith(".pt2") else spec
    return InputModel(label=label, name=default_name(spec), parents=parents)


def from_registry(uri: str, workdir: Path, registry: str | None) -> InputModel:
    """Download the version ``uri`` names now (an alias is pinned to its version number)."""
    from aiaas.registry import Registry

    with Registry.open(registry, create=False) as opened:
        version = opened.resolve(uri)
        folder = opened.download_version(version, workdir / f"{version.name}-{version.version}")
    path = folder / "model.onnx"
    return InputModel(
        label=version.uri,
        name=version.name,
        onnx=path,
        folder=folder,
        parents=[{"uri": version.uri, "sha256": version.sha256}],
        record=lineage.read_file(path),
        version_uri=version.uri,
    )


def from_onnx_file(path: Path) -> InputModel:
    if not path.is_file():
        raise InvalidArgument(f"model file {path} does not exist")
    try:
        record = lineage.read_file(path)
    except Exception as error:  # onnx raises DecodeError and others
        raise InvalidArgument(f"{path} is not an ONNX model: {error}") from None
    return InputModel(
        label=str(path.absolute()),
        name=path.stem,
        onnx=path,
        parents=[lineage.file_parent(path)],
        record=record,
    )


def default_name(model_spec: str) -> str:
    if is_model_uri(model_spec):
        return model_spec[len(URI_SCHEME) :].split("/")[0].split("@")[0]
    if model_spec.endswith((".pt2", ".onnx")):
        return Path(model_spec).stem
    return model_spec.rpartition(":")[2].rpartition(".")[2]
