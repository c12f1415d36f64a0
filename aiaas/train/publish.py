"""The run's last arrow: final weights -> parity-checked ONNX -> model repository -> registry.

Runs on rank 0 after the process group is gone. The ONNX model lands in a
Triton-layout repository (`aiaas serve --model-repository` serves it as is);
with a registry configured it is also registered as a new version whose lineage
names this run, its SPEC and resolved config, its final metrics and a content
hash of the training data.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aiaas.lineage import make_record
from aiaas.train.components import build_model
from aiaas.train.config import JobConfig
from aiaas.train.data import fetch, load_dataset
from aiaas.train.loop import TrainResult
from aiaas.train.rundir import RunDir

if TYPE_CHECKING:
    from aiaas.registry.records import ModelVersion

REGISTRY_ENV = "AIAAS_REGISTRY_URI"


def publish(job: JobConfig, run: RunDir, result: TrainResult, base: Path) -> dict[str, Any]:
    """Export (and register, if a registry is configured); returns what went where."""
    model = build_model(job.model)
    model.load_state_dict(result.state_dict)
    model.eval()
    dataset = load_dataset(job.data.dataset, job.data.kwargs, base)
    example_input = fetch(dataset, [0])[0]  # one real sample, with its batch axis
    return export_and_register(
        job,
        run,
        model,
        example_input,
        step="train",
        dataset_fingerprint=run.info().get("dataset_fingerprint"),
        register_version=functools.partial(register, job, run, result),
    )


def export_and_register(
    job: JobConfig,
    run: RunDir,
    model: torch.nn.Module,
    example_input: torch.Tensor,
    *,
    step: str,
    dataset_fingerprint: str | None,
    register_version: Callable[[Path, str, str], ModelVersion],
) -> dict[str, Any]:
    """The tail both `aiaas train` and `aiaas federated` end with: the export carries the
    run's lineage record (``step`` names the stage), then, when a registry is configured,
    ``register_version(onnx_path, name, registry_uri)``; returns what went where."""
    record = make_record(
        step,
        run_id=run.info()["run_id"],
        dataset_fingerprint=dataset_fingerprint,
        recipe=run_recipe(job, run),
    )
    onnx_path, name, outcome = export_model(
        job, model, example_input, run.model_repository, lineage=record
    )
    uri = registry_uri(job)
    if uri:
        version = register_version(onnx_path, name, uri)
        outcome["registered"] = version.uri
        if version.identical_to:  # said, not silently repeated
            outcome["identical_to"] = ", ".join(ref.uri for ref in version.identical_to)
    return outcome


def export_model(
    job: JobConfig,
    model: torch.nn.Module,
    example_input: torch.Tensor,
    repository: Path,
    *,
    lineage: Mapping[str, Any] | None = None,
) -> tuple[Path, str, dict[str, Any]]:
    """The export both `aiaas train` and `aiaas federated` end with: into the SPEC's
    repository (or ``repository``) under the SPEC's name, parity checked, carrying the
    ``lineage`` record; returns the ONNX path, the model name and what to report (paths
    absolute, so the record means the same wherever it is read)."""
    from aiaas.export import export_to_repository

    if job.export.repository:
        repository = Path(job.export.repository)
    repository = repository.absolute()
    name = job.export.name or job.name
    report = export_to_repository(
        model, {job.export.input_name: example_input}, repository, name, lineage=lineage
    )
    outcome: dict[str, Any] = {
        "onnx": str(report.path),
        "model_repository": str(repository),
        "parity_max_abs_error": report.max_abs_error,
    }
    return report.path, name, outcome


def run_recipe(job: JobConfig, run: RunDir) -> dict[str, Any]:
    """What made the run's weights: the SPEC as given and the resolved configuration. The
    registry's recipe and the file's recipe digest are of this one dict."""
    spec_path = run.root / "spec.toml"
    return {
        "spec": spec_path.read_text() if spec_path.is_file() else None,
        "config": job.to_dict(),
    }


def registry_uri(job: JobConfig) -> str:
    """The SPEC's registry, else AIAAS_REGISTRY_URI; empty means do not register."""
    return job.export.registry_uri or os.environ.get(REGISTRY_ENV, "")


def register(
    job: JobConfig, run: RunDir, result: TrainResult, onnx_path: Path, name: str, uri: str
) -> ModelVersion:
    """A new registry version of `name` carrying this run's lineage."""
    from aiaas.registry.api import Registry

    info = run.info()
    with Registry.open(uri=uri) as registry:
        version = registry.register(
            name,
            onnx_path.parent,
            description=f"trained by aiaas train, run {info['run_id']}",
            tags={"source": "aiaas.train", "dataset_fingerprint": info["dataset_fingerprint"]},
            metrics={key: float(value) for key, value in result.metrics.items()},
            run_id=info["run_id"],
            params={
                "dataset": job.data.dataset,
                "dataset_kwargs": job.data.kwargs,
                "dataset_fingerprint": info["dataset_fingerprint"],
                "strategy": job.parallel.strategy,
                "global_batch_size": job.training.global_batch_size,
                "seed": job.training.seed,
                "torch": torch.__version__,
                "run_dir": str(run.root.absolute()),
            },
            recipe=run_recipe(job, run),
        )
    return version
