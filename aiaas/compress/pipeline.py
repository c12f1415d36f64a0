"""Compression steps on variants, each producing a new variant: PyTorch steps (prune,
distill) export again with a parity check; quantization works on the ONNX file.

A `Compressor` owns a work directory and the held-out data every variant is
measured on. The CLI strings steps into one chain; the benchmark builds branches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aiaas.compress import evaluate, prune, quantize, shrink, training
from aiaas.compress.variants import Variant
from aiaas.errors import InvalidArgument
from aiaas.export.api import export_onnx, inference_mode
from aiaas.export.optimize import optimize

EXAMPLE_ROWS = 16


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """Model inputs by name and, for classification, integer labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise InvalidArgument("a dataset needs at least one input array")


class Compressor:
    def __init__(
        self,
        workdir: Path,
        eval_data: Dataset,
        *,
        output_names: list[str] | None = None,
        dynamic_axes: dict[str, list[int]] | None = None,
        atol: float = 1e-4,
        rtol: float = 1e-3,
        threads: int = 1,
        rounds: int = 30,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.eval_data = eval_data
        self.export_options: dict[str, Any] = {
            "output_names": output_names, "dynamic_axes": dynamic_axes, "atol": atol, "rtol": rtol,
        }  # fmt: skip
        self.threads = threads
        self.rounds = rounds
        self.metric_name = "accuracy" if eval_data.labels is not None else "cosine"
        self.examples = {
            name: torch.from_numpy(np.ascontiguousarray(array[:EXAMPLE_ROWS]))
            for name, array in eval_data.inputs.items()
        }

    # --- starting points ----------------------------------------------------------------------
    def from_torch(self, model: nn.Module) -> tuple[Variant, Variant]:
        """The original as exported (no graph optimisation) and its ORT-optimised form."""
        inference_mode(model)
        raw = self.workdir / "fp32.onnx"
        optimized = self._export(model, "fp32-ort", raw_copy=raw)
        original = Variant("fp32", raw, None, [], raw, model, optimize_at_load=False)
        tuned = Variant("fp32-ort", optimized, "fp32", [{"step": "ort-optimize"}], raw, model)
        return original, tuned

    def from_onnx(self, path: Path) -> tuple[Variant, Variant]:
        if not path.is_file():
            raise InvalidArgument(f"model file {path} does not exist")
        optimized = optimize(path, self.workdir / "fp32-ort.onnx", "extended")
        original = Variant("fp32", path, None, [], path, optimize_at_load=False)
        tuned = Variant("fp32-ort", optimized, "fp32", [{"step": "ort-optimize"}], path)
        return original, tuned

    # --- steps --------------------------------------------------------------------------------
    def prune(
        self,
        parent: Variant,
        method: str,
        amount: float,
        train: Dataset | None,
        *,
        epochs: int = 3,
        lr: float = 1e-3,
        reference: nn.Module | None = None,
    ) -> Variant:
        """`unstructured` (global magnitude) or `structured` (neurons/channels removed)."""
        module = self._module(parent, "pruning")
        details: dict[str, Any] = {}
        if method == "unstructured":
            pruned = prune.magnitude_prune(module, amount)
        elif method == "structured":
            pruned, changes = shrink.shrink(module, amount)
            details["layers"] = {c.name: [list(c.before), list(c.after)] for c in changes}
        else:
            raise InvalidArgument(f"prune method '{method}': use structured or unstructured")
        if train is not None and epochs > 0:
            training.fine_tune(
                pruned, train.inputs, train.labels, epochs=epochs, lr=lr,
                reference=reference or module, description=f"fine-tuning {method} {amount:.0%}",
            )  # fmt: skip
        details["fine_tune_epochs"] = epochs if train is not None else 0
        pruned = prune.make_permanent(pruned)
        details["sparsity"] = round(prune.sparsity(pruned), 4)
        step = {"step": "prune", "method": method, "amount": amount, "epochs": epochs}
        return self._torch_variant(f"{method}-{round(amount * 100)}", parent, pruned, step, details)

    def distill(
        self,
        parent: Variant,
        teacher: nn.Module,
        train: Dataset,
        *,
        student: nn.Module | None = None,
        shrink_factor: float | None = None,
        epochs: int = 10,
        temperature: float = 4.0,
        alpha: float = 0.7,
        lr: float = 3e-3,
        student_name: str = "student",
    ) -> Variant:
        """Train a student (given, or the parent with hidden widths / ``shrink_factor``)."""
        details: dict[str, Any] = {}
        if student is None:
            if not shrink_factor or shrink_factor <= 1:
                raise InvalidArgument("distillation needs a student or a shrink factor > 1")
            student, changes = shrink.shrink(
                self._module(parent, "distillation"), 1 - 1 / shrink_factor
            )
            details["layers"] = {c.name: [list(c.after)] for c in changes}
            student_name = f"shrink-{shrink_factor:g}x"
        if train.labels is None:  # embeddings: match the teacher's outputs
            training.fine_tune(
                student,
                train.inputs,
                None,
                epochs=epochs,
                lr=lr,
                reference=teacher,
                description="distilling",
            )
        else:
            training.distill(
                teacher,
                student,
                train.inputs,
                train.labels,
                epochs=epochs,
                temperature=temperature,
                alpha=alpha,
                lr=lr,
            )
        details["parameters"] = sum(p.numel() for p in student.parameters())
        step = {
            "step": "distill",
            "student": student_name,
            "temperature": temperature,
            "alpha": alpha,
            "epochs": epochs,
        }
        return self._torch_variant(f"distilled-{student_name}", parent, student, step, details)

    def quantize(
        self,
        parent: Variant,
        mode: str,
        *,
        calibration: Dataset | None = None,
        method: str = "minmax",
        per_channel: bool = True,
        exclude_ops: tuple[str, ...] = (),
        exclude_nodes: tuple[str, ...] = (),
    ) -> Variant:
        """`dynamic` or `static` int8 of the parent's plain export."""
        source = parent.quantizable_path or parent.path
        name = self._child_name(parent, f"int8-{mode}")
        destination = self.workdir / f"{name}.onnx"
        options: dict[str, Any] = {
            "per_channel": per_channel,
            "exclude_ops": exclude_ops,
            "exclude_nodes": exclude_nodes,
        }
        if mode == "dynamic":
            quantize.quantize_dynamic(source, destination, **options)
            step: dict[str, Any] = {
                "step": "quantize",
                "mode": "dynamic",
                "per_channel": per_channel,
            }
        elif mode == "static":
            if calibration is None:
                raise InvalidArgument("static quantization needs --calibration data")
            quantize.quantize_static(
                source, destination, calibration.inputs, method=method, **options
            )
            step = {
                "step": "quantize",
                "mode": "static",
                "method": method,
                "per_channel": per_channel,
            }
        else:
            raise InvalidArgument(f"quantize mode '{mode}': use dynamic or static")
        if exclude_ops or exclude_nodes:
            step.update(exclude_ops=list(exclude_ops), exclude_nodes=list(exclude_nodes))
        details = {"int8_nodes": quantize.int8_node_count(destination)}
        return Variant(name, destination, parent.name, [*parent.recipe, step], details=details)

    # --- measuring ----------------------------------------------------------------------------
    def evaluate(self, variants: list[Variant], baseline: Variant) -> None:
        """Quality against the labels or the baseline's outputs, size, interleaved latency."""
        sessions = {
            v.name: evaluate.session(v.path, self.threads, v.optimize_at_load) for v in variants
        }
        reference = evaluate.outputs(sessions[baseline.name], self.eval_data.inputs)
        for variant in variants:
            produced = evaluate.outputs(sessions[variant.name], self.eval_data.inputs)
            if self.eval_data.labels is not None:
                variant.metric = evaluate.accuracy(produced, self.eval_data.labels)
            else:
                variant.metric, variant.spearman = evaluate.fidelity(produced, reference)
            variant.size_bytes = evaluate.file_size(variant.path)
        timings = evaluate.latencies(sessions, self.eval_data.inputs, rounds=self.rounds)
        for variant in variants:
            variant.latency_ms = timings[variant.name]

    # --- helpers ------------------------------------------------------------------------------
    def _torch_variant(
        self,
        base: str,
        parent: Variant,
        module: nn.Module,
        step: dict[str, Any],
        details: dict[str, Any],
    ) -> Variant:
        name = self._child_name(parent, base)
        raw = self.workdir / f"{name}.raw.onnx"
        path = self._export(module, name, raw_copy=raw)
        return Variant(
            name, path, parent.name, [*parent.recipe, step], raw, module, details=details
        )

    def _export(self, module: nn.Module, name: str, raw_copy: Path) -> Path:
        path = self.workdir / f"{name}.onnx"
        export_onnx(module, self.examples, path, unoptimized_copy=raw_copy, **self.export_options)
        return path

    @staticmethod
    def _child_name(parent: Variant, step: str) -> str:
        return step if parent.name in ("fp32", "fp32-ort") else f"{parent.name}+{step}"

    @staticmethod
    def _module(parent: Variant, step: str) -> nn.Module:
        if parent.module is None:
            raise InvalidArgument(f"{step} needs a PyTorch model, not an ONNX file")
        module: nn.Module = copy.deepcopy(parent.module)
        try:
            module.train(False)
        except NotImplementedError:  # a torch.export program's module cannot be trained
            raise InvalidArgument(
                f"{step} needs a module:factory model; a .pt2 program cannot be trained"
            ) from None
        return module
