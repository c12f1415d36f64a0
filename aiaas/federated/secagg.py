"""Secure aggregation (SecAgg+) with Flower's own protocol implementation.

In Flower 1.32 SecAgg+ lives in the workflow API: `SecAggPlusWorkflow` on the
server inside a `DefaultWorkflow`, `secaggplus_mod` on the client, both speaking
the legacy fit/evaluate records to a legacy strategy. So this path uses Flower's
legacy FedAvg and a NumPyClient around the same local training as the
message-API path; each round's server-side evaluation is where rounds.jsonl and
the checkpoint are written. The server only ever sees the masked sum of the
clients' weighted updates, never one client's update.

Not combined here with resume, DP or FedProx/FedAdam; `config.check_secagg` says so
before anything starts.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from flwr.app import Context
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid

from aiaas.federated import task
from aiaas.federated.client_app import SetupFn
from aiaas.federated.plot import plot_rounds
from aiaas.federated.rounds import ServerOutcome, ServerSettings, final_metrics
from aiaas.train.data import load_dataset


class _Client(NumPyClient):
    def __init__(self, setup: SetupFn, context: Context) -> None:
        self.client = setup(context)

    def _state(self, parameters: list[np.ndarray]) -> OrderedDict[str, torch.Tensor]:
        keys = task.initial_state(self.client.job).keys()
        return OrderedDict(
            (key, torch.from_numpy(np.array(value)))
            for key, value in zip(keys, parameters, strict=True)
        )

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        server_round = int(config["server-round"])
        result = task.train_local(
            self.client.job,
            self._state(parameters),
            self.client.dataset,
            epochs=int(config["local-epochs"]),
            seed=task.round_seed(int(config["seed"]), server_round, self.client.partition_id),
        )
        arrays = [value.numpy() for value in result.state_dict.values()]
        # SecAgg+ masks the update, not the fit metrics: what the client trained on (a hash
        # and a count, never the data) reaches the server's lineage as on the message path.
        metrics = {
            "train_loss": result.train_loss,
            "partition-id": self.client.partition_id,
            "dataset_fingerprint": self.client.data_fingerprint
            or task.data_fingerprint(self.client.dataset),
            "examples": result.num_examples,
        }
        return arrays, result.num_examples, metrics

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        scores = task.evaluate(self.client.job, self._state(parameters), self.client.dataset)
        size = len(self.client.dataset)  # type: ignore[arg-type]
        return scores["loss"], size, {"eval_accuracy": scores.get("accuracy", 0.0)}


def build_secagg_client_app(setup: SetupFn) -> ClientApp:
    return ClientApp(
        client_fn=lambda context: _Client(setup, context).to_client(), mods=[secaggplus_mod]
    )


def run_secagg_server(grid: Grid, context: Context, settings: ServerSettings) -> ServerOutcome:
    """Every round through SecAggPlusWorkflow; metrics and checkpoints from evaluate_fn."""
    fjob, run = settings.federated_job, settings.run
    job, federated = fjob.job, fjob.federated
    initial = task.initial_state(job)
    keys = list(initial)
    eval_data = load_dataset(job.data.eval_dataset, job.data.eval_kwargs, fjob.base)
    outcome = ServerOutcome(state=initial)
    clock = {"round_start": time.perf_counter()}
    #: The clients' reports of the round being aggregated (fit comes before evaluate_fn).
    reported: dict[str, dict[str, Any]] = {}

    def collect_fit_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        reported.clear()
        for _, metrics in results:
            reported[str(int(metrics["partition-id"]))] = {
                "dataset_fingerprint": str(metrics["dataset_fingerprint"]),
                "examples": int(metrics["examples"]),
            }
        return {}

    def evaluate_fn(
        server_round: int, arrays: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, dict[str, Any]]:
        pairs = zip(keys, arrays, strict=True)
        state = OrderedDict((key, torch.from_numpy(np.array(value))) for key, value in pairs)
        scores = task.evaluate(job, state, eval_data)
        if server_round > 0:
            outcome.state, outcome.last_round = state, server_round
            clients = sorted(int(client) for client in reported)
            line = {"round": server_round, "secagg": True, "clients": clients, "failed": []}
            line["client_data"] = dict(reported)
            line |= {f"server_eval_{key}": value for key, value in scores.items()}
            line["round_s"] = time.perf_counter() - clock["round_start"]
            run.save_checkpoint(server_round, {"state": state, "strategy": {}})
            run.record_round(line)
            plot_rounds(run.read_rounds(), run.plot, baseline_accuracy=settings.baseline_accuracy)
        clock["round_start"] = time.perf_counter()
        return scores["loss"], scores

    strategy = FedAvg(
        fraction_fit=federated.fraction_fit,
        fraction_evaluate=federated.fraction_evaluate,
        min_fit_clients=federated.min_fit_clients,
        min_evaluate_clients=federated.min_fit_clients,
        min_available_clients=federated.min_available_clients,
        evaluate_fn=evaluate_fn,
        fit_metrics_aggregation_fn=collect_fit_metrics,
        on_fit_config_fn=lambda server_round: {
            "server-round": server_round,
            "local-epochs": federated.epochs_per_round(job),
            "seed": job.training.seed,
        },
        initial_parameters=ndarrays_to_parameters([v.numpy() for v in initial.values()]),
    )
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=federated.rounds), strategy=strategy
    )
    # Every sampled client holds a share of every other's key; two thirds of them can
    # unmask the sum when some drop out mid-protocol.
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=0.67)
    )
    workflow(grid, legacy)
    outcome.finished = outcome.last_round == federated.rounds
    outcome.metrics = final_metrics(run.read_rounds(), outcome.last_round)
    return outcome
