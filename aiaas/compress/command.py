"""What `aiaas compress` does once its flags are parsed: load, chain the steps, measure,
select, write the repository entry and the report, register the lineage.

The chain is fixed in the only order that works: PyTorch steps first (prune, then
distill), quantization last (it works on the ONNX file). Every intermediate model is
a candidate variant; each requested quantization mode branches from the chain's end.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
import typer

from aiaas import lineage
from aiaas.compress.pipeline import Compressor, Dataset
from aiaas.compress.report import as_json, print_table, write_json
from aiaas.compress.variants import SELECT_BY, Variant, select
from aiaas.errors import InvalidArgument
from aiaas.export import examples, inputs, loading, npz
from aiaas.export import repository as layout


@dataclass(frozen=True, kw_only=True)
class CompressRequest:
    model: str
    eval_data: Path
    out: Path
    weights: Path | None = None
    name: str | None = None
    prune: str | None = None
    train: Path | None = None
    epochs: int = 3
    lr: float = 1e-3
    distill: str | None = None
    student_weights: Path | None = None
    temperature: float = 4.0
    alpha: float = 0.7
    distill_epochs: int = 10
    quantize: list[str]
    calibration: Path | None = None
    calibration_method: str = "minmax"
    per_channel: bool = True
    exclude_ops: list[str]
    exclude_nodes: list[str]
    max_accuracy_drop: float = 0.01
    select_by: str = "batch16"
    threads: int = 1
    rounds: int = 30
    report: Path = Path("compress-report.json")
    output_names: list[str]
    dynamic_axes: list[str]
    atol: float = 1e-4
    rtol: float = 1e-3
    register: str | None = None
    registry: str | None = None

    def validate(self) -> None:
        if self.select_by not in SELECT_BY:
            raise InvalidArgument(f"--select-by '{self.select_by}': use {', '.join(SELECT_BY)}")
        for mode in self.quantize:
            if mode not in ("dynamic", "static"):
                raise InvalidArgument(f"--quantize '{mode}': use dynamic or static")
        if "static" in self.quantize and self.calibration is None:
            raise InvalidArgument("--quantize static needs --calibration data.npz")
        if self.distill and self.train is None:
            raise InvalidArgument("--distill needs --train data.npz to train the student on")
        if self.threads < 1 or self.rounds < 1:
            raise InvalidArgument("--threads and --rounds must be >= 1")
        if not self.prune and not self.distill and not self.quantize:
            raise InvalidArgument("nothing to do: give --prune, --distill and/or --quantize")


def run(request: CompressRequest) -> Variant:
    request.validate()
    prune_step = _parse_prune(request.prune) if request.prune else None
    with tempfile.TemporaryDirectory(prefix="aiaas-compress-") as workdir:
        source = inputs.open_input(
            request.model, Path(workdir) / "input", weights=request.weights,
            registry=request.registry,
        )  # fmt: skip
        return _compress(request, source, prune_step, Path(workdir))


def _compress(
    request: CompressRequest,
    source: inputs.InputModel,
    prune_step: tuple[str, float] | None,
    workdir: Path,
) -> Variant:
    if source.onnx is not None and (prune_step or request.distill):
        raise InvalidArgument("--prune and --distill need a PyTorch model, not an ONNX model")
    names = _onnx_input_names(source.onnx) if source.onnx is not None else None
    eval_data = _dataset(request.eval_data, "--eval", names)
    assert eval_data is not None  # --eval is a required flag
    names = list(eval_data.inputs)
    train = _dataset(request.train, "--train", names, eval_data.labels is not None)
    calibration = _dataset(request.calibration, "--calibration", names, False)
    compressor = Compressor(
        workdir / "variants", eval_data, output_names=request.output_names or None,
        dynamic_axes=examples.parse_dynamic_axes(request.dynamic_axes) or None,
        atol=request.atol, rtol=request.rtol, threads=request.threads, rounds=request.rounds,
    )  # fmt: skip
    if source.onnx is not None:
        original, baseline = compressor.from_onnx(source.onnx)
    else:
        original, baseline = compressor.from_torch(
            loading.load_model(request.model, request.weights)
        )
    variants = _chain(request, compressor, original, baseline, prune_step, train, calibration)
    compressor.evaluate(variants, baseline)
    selected = select(variants, baseline, request.max_accuracy_drop, request.select_by)
    print_table(variants, baseline, selected, compressor.metric_name)
    stamped = _Stamper(source, workdir / "stamped")
    model_name = request.name or source.name
    target = layout.install(stamped(selected), request.out, model_name)
    typer.echo(f"selected {selected.name}: written to {target}")
    settings = {
        "model": source.label, "parents": source.parents,
        "max_accuracy_drop": request.max_accuracy_drop, "select_by": request.select_by,
        "threads": request.threads, "repository_path": str(target.absolute()),
    }  # fmt: skip
    report = as_json(variants, baseline, selected, compressor.metric_name, settings)
    if request.register:
        registered = _register(request, source, variants, selected, stamped, compressor)
        report["registered"] = registered
        if registered:
            typer.echo(f"registered {registered[-1]}")
        else:
            typer.echo(f"nothing registered: {selected.name} is {source.label} itself")
    write_json(report, request.report)
    typer.echo(f"report: {request.report}")
    return selected


class _Stamper:
    """Each variant's file with its lineage record, copied once into ``folder``: the
    repository entry and the registry get the same bytes, and the input is never touched."""

    def __init__(self, source: inputs.InputModel, folder: Path) -> None:
        self.source = source
        self.folder = folder
        self.done: dict[str, Path] = {}

    def recipe(self, variant: Variant) -> dict[str, Any]:
        return {"source": self.source.label, "steps": variant.recipe}

    def __call__(self, variant: Variant) -> Path:
        if variant.name not in self.done:
            self.folder.mkdir(parents=True, exist_ok=True)
            record = self.source.derived_record("compress", self.recipe(variant))
            target = self.folder / f"{variant.name}.onnx"
            self.done[variant.name] = lineage.stamp_file(variant.path, record, dest=target)
        return self.done[variant.name]


def _chain(
    request: CompressRequest,
    compressor: Compressor,
    original: Variant,
    baseline: Variant,
    prune_step: tuple[str, float] | None,
    train: Dataset | None,
    calibration: Dataset | None,
) -> list[Variant]:
    # PyTorch steps start from the original model; the exported result is ORT-optimised anyway.
    variants, current = [original, baseline], original
    if prune_step:
        current = compressor.prune(
            current, *prune_step, train, epochs=request.epochs, lr=request.lr,
            reference=original.module,
        )  # fmt: skip
        variants.append(current)
    if request.distill and train is not None:
        student, factor, label = _student(request, current)
        current = compressor.distill(
            current, original.module, train, student=student, shrink_factor=factor,
            epochs=request.distill_epochs, temperature=request.temperature,
            alpha=request.alpha, student_name=label,
        )  # fmt: skip
        variants.append(current)
    for mode in request.quantize:
        quantized = compressor.quantize(
            current, mode, calibration=calibration, method=request.calibration_method,
            per_channel=request.per_channel, exclude_ops=tuple(request.exclude_ops),
            exclude_nodes=tuple(request.exclude_nodes),
        )  # fmt: skip
        variants.append(quantized)
    return variants


def _student(
    request: CompressRequest, current: Variant
) -> tuple[torch.nn.Module | None, float | None, str]:
    spec = request.distill or ""
    if spec == "current":
        return copy.deepcopy(current.module), None, "current"
    if spec.startswith("shrink:"):
        try:
            factor = float(spec.partition(":")[2])
        except ValueError:
            factor = 0.0
        if factor <= 1:
            raise InvalidArgument(f"--distill '{spec}': the shrink factor must be a number > 1")
        return None, factor, spec
    student = loading.call_factory(spec)
    if request.student_weights:
        loading.load_weights(student, request.student_weights)
    return student, None, spec.rpartition(":")[2]


def _parse_prune(spec: str) -> tuple[str, float]:
    method, _, raw = spec.partition(":")
    try:
        amount = float(raw)
    except ValueError:
        amount = -1.0
    if method not in ("structured", "unstructured") or not 0 < amount < 1:
        raise InvalidArgument(
            f"--prune '{spec}': expected structured:FRACTION or unstructured:FRACTION, e.g. "
            "structured:0.5"
        )
    return method, amount


def _dataset(
    path: Path | None, flag: str, names: list[str] | None, needs_labels: bool = False
) -> Dataset | None:
    if path is None:
        return None
    arrays = npz.read(path, flag)
    inputs = npz.inputs(arrays, names, flag)
    labels = npz.labels(arrays, flag) if needs_labels or npz.LABELS in arrays else None
    return Dataset(inputs=inputs, labels=labels)


def _onnx_input_names(path: Path) -> list[str]:
    if not path.is_file():
        raise InvalidArgument(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others
        raise InvalidArgument(f"{path} is not an ONNX model: {error}") from None
    initializers = {init.name for init in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in initializers]


def _register(
    request: CompressRequest,
    source: inputs.InputModel,
    variants: list[Variant],
    selected: Variant,
    stamped: _Stamper,
    compressor: Compressor,
) -> list[str]:
    """Register the chosen variant and its ancestors, oldest first, each the parent of the
    next; the first one's parent is the input version, when the input came from the
    registry (then the input itself is not registered again)."""
    from aiaas.export.registering import register_file

    by_name = {variant.name: variant for variant in variants}
    lineage_chain = [selected]
    while lineage_chain[-1].parent is not None:
        lineage_chain.append(by_name[lineage_chain[-1].parent])
    if source.version_uri is not None:
        lineage_chain = [v for v in lineage_chain if v.path != source.onnx]
    parents = [source.version_uri] if source.version_uri else []
    uris: list[str] = []
    for variant in reversed(lineage_chain):
        metrics = {
            compressor.metric_name: float(variant.metric or 0.0),
            "size_bytes": float(variant.size_bytes),
        }
        metrics |= {f"latency_p50_ms_b{k}": v for k, v in variant.latency_ms.items()}
        tags = {"variant": variant.name, **({"selected": "true"} if variant is selected else {})}
        uri = register_file(
            stamped(variant), request.register or "", request.registry,
            parents=(parents + uris)[-1:], recipe=stamped.recipe(variant), metrics=metrics,
            tags=tags,
        )  # fmt: skip
        uris.append(uri)
    return uris
