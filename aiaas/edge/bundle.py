"""`aiaas edge bundle`: one model version as a flat, self-checking folder for a device.

The bundle is assembled in a staging folder beside ``--out`` and renamed into place
once complete (and signed), so ``--out`` is a whole bundle or absent. Its files:
manifest.json (+ manifest.sig), run.py (the runner, a copy of ``runner.py``), the
model (model.onnx, or model.ort + required_operators.config), and the version's
sidecar files (tokenizer.json, generation.json, labels).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiaas import lineage as lineage_record
from aiaas.edge import manifest as bundle_format
from aiaas.edge.source import MODEL_FILENAME, Source, is_registry_uri, local_source, registry_source
from aiaas.edge.variants import choose
from aiaas.errors import InvalidArgument
from aiaas.registry.files import materialize

RUNNER_SOURCE = Path(__file__).with_name("runner.py")
ORT_FILENAME = "model.ort"
OPERATORS_FILENAME = "required_operators.config"
LABELS_FILENAME = "labels.txt"
#: Oldest onnxruntime a plain ONNX bundle is known to run on; MatMulNBits' accuracy
#: level (4-bit) needs 1.18; an ORT-format file is read by the version that wrote it on.
MIN_ONNXRUNTIME = {"fp32": "1.16", "int8": "1.16", "int4": "1.18"}


@dataclass(frozen=True)
class BundleRequest:
    uri: str
    out: Path
    variant: str | None = None
    ort_format: bool = False
    sign_key: Path | None = None
    registry_uri: str | None = None


@dataclass
class Bundled:
    """A bundle in place, with the source version it is measured against."""

    path: Path
    manifest: dict[str, Any]
    bundled: Source
    #: The version the URI named (fp32 when a variant was asked for).
    reference: Source
    signed: bool


def open_work(out: Path) -> Path:
    """A work folder beside ``--out`` (the same file system as the bundle, room as it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=out.parent))


def build(request: BundleRequest, work: Path) -> Bundled:
    """Resolve, pick the variant, assemble into ``request.out``; ``work`` holds the
    downloads and must outlive the measuring."""
    out = request.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidArgument(f"{out} already exists and is not empty; choose another --out")
    if request.sign_key is not None:
        bundle_format.load_private_key(request.sign_key)  # a bad key fails before the work
    if is_registry_uri(request.uri):
        reference = registry_source(request.uri, request.registry_uri, work)
    else:
        reference = local_source(Path(request.uri))
    bundled = choose(reference, request.variant, work, request.registry_uri)
    holder: dict[str, Any] = {}

    def assemble(staging: Path) -> None:
        holder["manifest"] = _assemble(staging, bundled, reference, request)

    materialize(out, assemble)
    return Bundled(out, holder["manifest"], bundled, reference, request.sign_key is not None)


def _assemble(
    staging: Path, bundled: Source, reference: Source, request: BundleRequest
) -> dict[str, Any]:
    for item in sorted(bundled.folder.iterdir()):
        if item.is_file() and not item.name.startswith(".") and item.name != MODEL_FILENAME:
            shutil.copyfile(item, staging / item.name)
    if bundled.labels is not None and not (staging / LABELS_FILENAME).exists():
        shutil.copyfile(bundled.labels, staging / LABELS_FILENAME)
    shutil.copyfile(RUNNER_SOURCE, staging / bundle_format.RUNNER)
    model = bundled.folder / MODEL_FILENAME
    signature, props = read_model(model)
    if request.ort_format:
        _to_ort_format(model, staging)
        model_file = ORT_FILENAME
    else:
        shutil.copyfile(model, staging / MODEL_FILENAME)
        model_file = MODEL_FILENAME
    fields = manifest_fields(bundled, reference, signature, props, model_file, request.ort_format)
    if (staging / LABELS_FILENAME).is_file():
        fields["labels_file"] = LABELS_FILENAME
    data = bundle_format.write_manifest(staging, fields)
    if request.sign_key is not None:
        bundle_format.sign(staging, request.sign_key)
    manifest: dict[str, Any] = json.loads(data)
    return manifest


def manifest_fields(
    bundled: Source,
    reference: Source,
    signature: dict[str, Any],
    props: dict[str, str],
    model_file: str,
    ort_format: bool,
) -> dict[str, Any]:
    import onnxruntime

    variant = bundled.variant
    min_version = MIN_ONNXRUNTIME.get(variant, "1.16")
    if ort_format:
        min_version = ".".join(onnxruntime.__version__.split(".")[:2])
    return {
        "name": bundled.name,
        "version": bundled.version,
        "source_uri": bundled.uri,
        "task": bundled.task,
        "variant": variant,
        "model_file": model_file,
        "signature": signature,
        "metrics": bundled.metrics,
        "lineage": {
            "registry_version": bundled.uri if is_registry_uri(bundled.uri) else None,
            "requested": reference.uri,
            "made": bundled.made,
            "record": lineage_record.summary(lineage_record.from_metadata(props)),
        },
        "min_onnxruntime": min_version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def read_model(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The graph's signature (the registry's shape) and its metadata properties."""
    import onnx

    from aiaas.registry.signature import read_signature

    signature = read_signature(path).to_dict()
    model = onnx.load(str(path), load_external_data=False)
    return signature, {prop.key: prop.value for prop in model.metadata_props}


def _to_ort_format(model: Path, staging: Path) -> None:
    """onnxruntime's own converter: model.ort and the operator list a reduced build needs."""
    with tempfile.TemporaryDirectory(prefix="aiaas-ort-", dir=staging.parent) as scratch:
        source = Path(scratch) / MODEL_FILENAME
        source.symlink_to(model.resolve())
        converted = Path(scratch) / "out"
        command = [
            sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source),
            "--output_dir", str(converted), "--optimization_style", "Fixed",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit {result.returncode}"
            raise InvalidArgument(
                f"ONNX Runtime could not convert the model to ORT format: {reason}"
            )
        shutil.move(converted / ORT_FILENAME, staging / ORT_FILENAME)
        configs = sorted(converted.glob("*.config"))
        if not configs:
            raise InvalidArgument("ONNX Runtime's converter wrote no required operators config")
        # The converter names its scratch path in a comment; the bundle names its own file.
        text = configs[0].read_text().replace(str(converted / ORT_FILENAME), ORT_FILENAME)
        (staging / OPERATORS_FILENAME).write_text(text)
