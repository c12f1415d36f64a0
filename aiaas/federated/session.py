"""A federated run from start to published model, shared by simulation and deployment.

`start_run` refuses to overwrite a run that has checkpoints unless resuming (as
`aiaas train` does); `finish` writes the final weights and publishes them once
every round is done. `simulate_job` is the whole simulation: partition, build
the ClientApp and ServerApp from the SPEC, run Flower's Simulation Runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aiaas.federated import task
from aiaas.federated.config import FederatedJob
from aiaas.federated.partition import PartitionScheme, partition_indices
from aiaas.federated.rounds import ServerOutcome, ServerSettings, run_server
from aiaas.federated.rundir import FederatedRunDir
from aiaas.train.config import ConfigError
from aiaas.train.rundir import write_json


def start_run(
    fjob: FederatedJob, *, mode: str, clients: int, partition: str, resume: bool
) -> FederatedRunDir:
    run = FederatedRunDir(fjob.run_path)
    if run.has_checkpoint() and not resume:
        raise ConfigError(
            "--resume", f"{run.root} already holds checkpoints; pass --resume or another --run-dir"
        )
    config = {
        "mode": mode,
        "clients": clients,
        "partition": partition,
        "federated": fjob.federated.to_dict(),
        "job": fjob.job.to_dict(),
    }
    run.start(spec=fjob.spec_path, config=config, name=fjob.job.name)
    return run


def finish(
    fjob: FederatedJob, run: FederatedRunDir, outcome: ServerOutcome, lineage: dict[str, Any]
) -> dict[str, Any]:
    """Final weights and metrics on disk; export and register if the run is complete."""
    run.write_final(outcome.state, {**outcome.metrics, "finished": outcome.finished})
    if not outcome.finished:
        return {"stopped_after_round": outcome.last_round}
    published: dict[str, Any] = {}
    if fjob.job.export.enabled:
        from aiaas.federated.publish import publish

        published = publish(fjob, run, outcome.state, outcome.metrics, lineage)
    write_json(run.final / "publish.json", published)
    return published


@dataclass
class SimulationResult:
    outcome: ServerOutcome
    published: dict[str, Any]
    labels: np.ndarray
    parts: list[np.ndarray]
    run: FederatedRunDir


def simulate_job(
    fjob: FederatedJob,
    *,
    clients: int,
    scheme: PartitionScheme,
    on_partitioned: Callable[[np.ndarray, list[np.ndarray]], None] | None = None,
    **options: Any,
) -> SimulationResult:
    """Partition the SPEC's dataset, then `simulate_partitions` (options are its keywords)."""
    from aiaas.train.data import load_dataset

    job = fjob.job
    dataset = load_dataset(job.data.dataset, job.data.kwargs, fjob.base)
    _, labels = task.arrays_of(dataset)
    parts = partition_indices(labels, clients, scheme, job.training.seed)
    if on_partitioned is not None:
        on_partitioned(labels, parts)
    subsets = [task.subset(dataset, part) for part in parts]
    result = simulate_partitions(fjob, subsets, partition=str(scheme), **options)
    result.labels, result.parts = labels, parts
    return result


def simulate_partitions(
    fjob: FederatedJob,
    subsets: list[Any],
    *,
    partition: str,
    resume: bool = False,
    stop_after_round: int = 0,
    baseline_accuracy: float | None = None,
    workers: int = 1,
    quiet: bool = False,
) -> SimulationResult:
    """One simulated SuperNode per dataset in `subsets`, Flower's Simulation Runtime between."""
    from flwr.serverapp import ServerApp

    from aiaas.federated.client_app import ClientSetup, build_client_app
    from aiaas.federated.simulation import simulate

    clients = len(subsets)
    run = start_run(fjob, mode="simulation", clients=clients, partition=partition, resume=resume)

    fingerprints: dict[int, str] = {}

    def setup(context: Any) -> ClientSetup:
        partition_id = int(context.node_config["partition-id"])
        subset = subsets[partition_id]
        if partition_id not in fingerprints:
            fingerprints[partition_id] = task.data_fingerprint(subset)
        return ClientSetup(
            job=fjob.job,
            dataset=subset,
            partition_id=partition_id,
            data_fingerprint=fingerprints[partition_id],
        )

    settings = ServerSettings(
        federated_job=fjob,
        run=run,
        clients=clients,
        resume=resume,
        stop_after_round=stop_after_round,
        baseline_accuracy=baseline_accuracy,
        quiet=quiet,
    )
    holder: dict[str, ServerOutcome] = {}
    server_app = ServerApp()

    secagg = fjob.federated.secagg
    if secagg:
        from aiaas.federated.secagg import build_secagg_client_app, run_secagg_server

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        if secagg:
            holder["outcome"] = run_secagg_server(grid, context, settings)
        else:
            holder["outcome"] = run_server(grid, settings)

    client_app = build_secagg_client_app(setup) if secagg else build_client_app(setup)
    simulate(server_app, client_app, clients, workers=workers)
    outcome = holder["outcome"]
    sizes = [len(subset) for subset in subsets]
    lineage = lineage_of(fjob, clients, partition, sizes, outcome, run.read_rounds())
    published = finish(fjob, run, outcome, lineage)
    return SimulationResult(outcome, published, np.zeros(0), [], run)


def lineage_of(
    fjob: FederatedJob,
    clients: int,
    partition: str,
    samples_per_client: list[int],
    outcome: ServerOutcome,
    rounds: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """What the federation did, for the registry's params: each client's data as the
    client reported it (fingerprint, examples) and one fingerprint of all of them."""
    reported = task.client_data(rounds)
    return {
        "mode": "federated",
        "strategy": fjob.federated.strategy,
        "rounds": outcome.last_round,
        "clients": clients,
        "samples_per_client": samples_per_client,
        "partition": partition,
        "client_data": reported,
        "dataset_fingerprint": task.combined_fingerprint(
            item["dataset_fingerprint"] for item in reported if "dataset_fingerprint" in item
        ),
        "final_metrics": outcome.metrics,
    }
