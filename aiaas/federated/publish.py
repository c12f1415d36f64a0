"""The final global model -> parity-checked ONNX in a model repository -> registry version.

Export is `aiaas.export.export_to_repository`, as for `aiaas train`; the registry
is the one `aiaas train` would use (`export.registry_uri` in the SPEC, the
`--registry-uri` flag or AIAAS_REGISTRY_URI). The lineage says how the model was
federated: strategy and its settings, rounds, clients, samples per client
(counts only: nothing about a client's data leaves it but its size), partition
scheme and the final metrics, and each client's data as the client reported it (its
fingerprint and size: a hash, never the data); rounds.jsonl goes along as an artifact.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aiaas.federated import task
from aiaas.federated.config import FederatedJob
from aiaas.federated.rundir import FederatedRunDir
from aiaas.train.data import fetch, load_dataset
from aiaas.train.publish import export_and_register, run_recipe

if TYPE_CHECKING:
    from aiaas.registry.records import ModelVersion


def publish(
    fjob: FederatedJob,
    run: FederatedRunDir,
    state: OrderedDict[str, torch.Tensor],
    metrics: dict[str, float],
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """Export, and register when a registry is configured; returns what went where."""
    job = fjob.job
    model = task.model_with(job, state)
    model.eval()
    source, kwargs = job.data.eval_dataset, job.data.eval_kwargs
    if not source:
        source, kwargs = job.data.dataset, job.data.kwargs
    example_input = fetch(load_dataset(source, kwargs, fjob.base), [0])[0]
    return export_and_register(
        job,
        run,
        model,
        example_input,
        step="federated",
        dataset_fingerprint=lineage.get("dataset_fingerprint"),
        register_version=functools.partial(register, fjob, run, metrics=metrics, lineage=lineage),
    )


def register(
    fjob: FederatedJob,
    run: FederatedRunDir,
    onnx_path: Path,
    name: str,
    uri: str,
    metrics: dict[str, float],
    lineage: dict[str, Any],
) -> ModelVersion:
    from aiaas.registry.api import Registry

    info = run.info()
    with tempfile.TemporaryDirectory(prefix="aiaas-federated-") as staging_dir:
        staging = Path(staging_dir)
        shutil.copyfile(onnx_path, staging / "model.onnx")
        shutil.copyfile(run.rounds, staging / "rounds.jsonl")
        with Registry.open(uri=uri) as registry:
            version = registry.register(
                name,
                staging,
                description=f"trained by aiaas federated, run {info['run_id']}",
                tags={"source": "aiaas.federated", "strategy": fjob.federated.strategy},
                metrics=metrics,
                run_id=info["run_id"],
                params={
                    **lineage,
                    "federated": fjob.federated.to_dict(),
                    "dataset": fjob.job.data.dataset,
                    "seed": fjob.job.training.seed,
                    "torch": torch.__version__,
                    "run_dir": str(run.root.absolute()),
                },
                recipe=run_recipe(fjob.job, run),
            )
    return version
