"""The thread a model file carries with it: which run, data and recipe made it.

Every model file aiaas writes stores one JSON record under the ONNX metadata key
``aiaas.lineage``, so the thread survives the file being copied out of the
registry, mailed, or served from a bare folder. The registry keeps the same facts
in its own columns (run, params, recipe, parent edges); this record is what a file
knows without a registry. Serving reads it from ONNX Runtime's model metadata, so
neither onnx nor torch is imported on the serving path.

A record (all keys present, values may be null)::

    {"tool": "aiaas", "tool_version": "0.1.0", "step": "compress",
     "run_id": "digits-small-20261204-...",   # the run that trained the weights,
     "dataset_fingerprint": "sha256:...",      # inherited through compress/export
     "recipe_digest": "sha256:...",            # of this step's recipe (canonical JSON)
     "parents": [{"uri": "models:/digits-small/1", "sha256": "..."},
                 {"path": "/abs/path/model.onnx", "sha256": "..."}],
     "created_at": "2026-12-04T22:50:00+00:00"}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiaas

#: The ONNX metadata_props key that holds the JSON record.
LINEAGE_KEY = "aiaas.lineage"
#: The keys of a record, in the order they are written.
FIELDS = (
    "tool",
    "tool_version",
    "step",
    "run_id",
    "dataset_fingerprint",
    "recipe_digest",
    "parents",
    "created_at",
)
#: What a server shows of a record: the thread without the bookkeeping.
SUMMARY_FIELDS = ("run_id", "dataset_fingerprint", "recipe_digest", "parents", "step")


def recipe_digest(recipe: Mapping[str, Any] | None) -> str | None:
    """A content hash of a recipe, so two files made the same way say so with one string."""
    if recipe is None:
        return None
    canonical = json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def make_record(
    step: str,
    *,
    run_id: str | None = None,
    dataset_fingerprint: str | None = None,
    recipe: Mapping[str, Any] | None = None,
    parents: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """A new record for a file made by ``step`` (train, federated, export, compress,
    convert); ``parents`` are ``{"uri" or "path": ..., "sha256": ...}``."""
    return {
        "tool": "aiaas",
        "tool_version": aiaas.__version__,
        "step": step,
        "run_id": run_id,
        "dataset_fingerprint": dataset_fingerprint,
        "recipe_digest": recipe_digest(recipe),
        "parents": [dict(parent) for parent in parents],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def derive(
    parent_record: Mapping[str, Any] | None,
    step: str,
    *,
    parent: Mapping[str, str],
    recipe: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of a file made from another (compress, export of a registered model):
    the run and data are the parent's, the recipe and parent are this step's."""
    known = parent_record or {}
    return make_record(
        step,
        run_id=known.get("run_id"),
        dataset_fingerprint=known.get("dataset_fingerprint"),
        recipe=recipe,
        parents=[parent],
    )


def encode(record: Mapping[str, Any]) -> str:
    return json.dumps({key: record.get(key) for key in FIELDS}, sort_keys=False)


def decode(text: str | None) -> dict[str, Any] | None:
    """A record from its metadata string; None for a missing or unreadable one, because
    a file with a damaged record is still a model to serve."""
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def from_metadata(props: Mapping[str, str]) -> dict[str, Any] | None:
    """The record from a file's metadata map (onnx ``metadata_props`` turned into a dict,
    or onnxruntime's ``get_modelmeta().custom_metadata_map``)."""
    return decode(props.get(LINEAGE_KEY))


def summary(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {key: record.get(key) for key in SUMMARY_FIELDS}


def set_on_model(model: Any, record: Mapping[str, Any]) -> None:
    """Write the record into an in-memory ``onnx.ModelProto``, keeping its other props."""
    props = {prop.key: prop.value for prop in model.metadata_props}
    props[LINEAGE_KEY] = encode(record)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_file(path: Any) -> dict[str, Any] | None:
    """The record of an ONNX file on disk, without loading external weight files."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return from_metadata({prop.key: prop.value for prop in model.metadata_props})


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_parent(path: str | Path) -> dict[str, str]:
    """A parent that is a plain file: its absolute path (never one relative to where the
    command ran) and its content hash, which still names it once the path is gone."""
    return {"path": str(Path(path).absolute()), "sha256": file_sha256(path)}


def stamp_file(
    path: str | Path, record: Mapping[str, Any], *, dest: str | Path | None = None
) -> Path:
    """Write the record into the ONNX file at ``path`` (or a stamped copy at ``dest``).

    Only the graph is loaded: weights stored as external data stay where they are, and
    the new file replaces the old one in one rename, so a reader never sees half of it.
    A copy to another folder must not use external data (its references would break).
    """
    import onnx

    source = Path(path)
    target = Path(dest) if dest is not None else source
    model = onnx.load(str(source), load_external_data=False)
    set_on_model(model, record)
    staging = target.with_name(f".{target.name}.{os.getpid()}.lineage")
    try:
        onnx.save_model(model, str(staging))
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target
