"""The ServerApp's main loop: Flower's strategy and grid, one round at a time, written down.

Flower's `Strategy.start` runs every round in one call; this loop makes the same
calls (configure, send and receive, aggregate, evaluate) with what a service
needs between them: a checkpoint of the model and strategy state, one JSON line
of metrics, who failed, a progress line, and a deterministic order. Replies are
aggregated sorted by client, and each round's sampling and DP noise draw from
seeds derived from the SPEC's seed, so an interrupted-and-resumed run computes
exactly what an uninterrupted one does.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from rich.console import Console

from aiaas.federated import task
from aiaas.federated.config import FederatedJob
from aiaas.federated.plot import plot_rounds
from aiaas.federated.rundir import FederatedRunDir
from aiaas.federated.strategies import build_strategy, restore_strategy_state, strategy_state
from aiaas.train.data import load_dataset

# Redrawing the PNG costs about as much as a round of a small model: every 10 rounds and
# at the end (rounds.jsonl is the live record).
PLOT_EVERY = 10


class FederationFailed(RuntimeError):
    """Too few clients answered a round; the message says which round and how many."""


@dataclass(kw_only=True)
class ServerSettings:
    federated_job: FederatedJob
    run: FederatedRunDir
    clients: int
    resume: bool = False
    stop_after_round: int = 0
    baseline_accuracy: float | None = None
    quiet: bool = False


@dataclass
class ServerOutcome:
    state: OrderedDict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)
    finished: bool = False
    last_round: int = 0


def run_server(grid: Grid, settings: ServerSettings) -> ServerOutcome:
    """Every round from the first (or the one after the checkpoint) to `rounds`."""
    fjob, run = settings.federated_job, settings.run
    job, federated = fjob.job, fjob.federated
    strategy = build_strategy(federated, settings.clients)
    eval_data = None
    if job.data.eval_dataset:
        eval_data = load_dataset(job.data.eval_dataset, job.data.eval_kwargs, fjob.base)
    state, start = task.initial_state(job), 1
    checkpoint = run.load_latest_checkpoint() if settings.resume else None
    if checkpoint is not None:
        state, start = checkpoint["state"], checkpoint["round"] + 1
        restore_strategy_state(strategy, checkpoint["strategy"])
        run.truncate_rounds(checkpoint["round"])
    console = Console(stderr=True, quiet=settings.quiet)
    if checkpoint is not None:
        console.print(f"resumed from the checkpoint of round {checkpoint['round']}")
    names: dict[int, int] = {}  # Flower node id -> partition id, learnt from replies
    outcome = ServerOutcome(state=state, last_round=start - 1)
    stop = min(settings.stop_after_round or federated.rounds, federated.rounds)
    for server_round in range(start, stop + 1):
        started = time.perf_counter()
        line = _train_round(grid, strategy, settings, server_round, outcome, names)
        skip = {item["node_id"] for item in line["failed"]}
        line |= _evaluate_round(grid, strategy, settings, server_round, outcome.state, names, skip)
        if eval_data is not None:
            scores = task.evaluate(job, outcome.state, eval_data)
            line |= {f"server_eval_{key}": value for key, value in scores.items()}
        line["round_s"] = time.perf_counter() - started
        run.save_checkpoint(
            server_round, {"state": outcome.state, "strategy": strategy_state(strategy)}
        )
        run.record_round(line)
        console.print(progress_line(line, federated.rounds), soft_wrap=True)
        outcome.last_round = server_round
        if server_round % PLOT_EVERY == 0 and server_round != stop:
            plot_rounds(run.read_rounds(), run.plot, baseline_accuracy=settings.baseline_accuracy)
    plot_rounds(run.read_rounds(), run.plot, baseline_accuracy=settings.baseline_accuracy)
    outcome.finished = outcome.last_round == federated.rounds
    outcome.metrics = final_metrics(run.read_rounds(), outcome.last_round)
    return outcome


def _train_round(
    grid: Grid,
    strategy: Any,
    settings: ServerSettings,
    server_round: int,
    outcome: ServerOutcome,
    names: dict[int, int],
) -> dict[str, Any]:
    job, federated = settings.federated_job.job, settings.federated_job.federated
    seed = job.training.seed
    config = ConfigRecord(
        {"local-epochs": federated.epochs_per_round(job), "seed": seed, "server-round": 0}
    )
    arrays = ArrayRecord.from_torch_state_dict(outcome.state)
    random.seed(
        task.round_seed(seed, server_round, task.SAMPLING_STREAM)
    )  # Flower samples with `random`
    messages = list(strategy.configure_train(server_round, arrays, config, grid))
    replies = list(grid.send_and_receive(messages, timeout=federated.round_timeout_s))
    valid, failed = _split(replies, messages, names, "train")
    if len(valid) < federated.min_fit_clients:
        settings.run.record_round({"round": server_round, "aborted": True, "failed": failed})
        raise FederationFailed(
            f"round {server_round}: {len(valid)} client(s) answered, "
            f"min_fit_clients is {federated.min_fit_clients}; failed: {_names(failed)}"
        )
    norms = _update_norms(valid, outcome.state)
    np.random.seed(task.round_seed(seed, server_round, task.NOISE_STREAM))  # DP noise draws
    aggregated, metrics = strategy.aggregate_train(server_round, valid)
    if aggregated is not None:
        outcome.state = OrderedDict(aggregated.to_torch_state_dict())
    line: dict[str, Any] = {
        "round": server_round,
        "clients": sorted(_partition(reply) for reply in valid),
        "samples_per_client": {
            str(_partition(reply)): int(_metrics(reply)["num-examples"]) for reply in valid
        },
        "update_norms": norms,
        "failed": failed,
        "client_data": {
            str(_partition(reply)): dict(reply.content.config_records[task.CLIENT_DATA_RECORD])
            for reply in valid
            if task.CLIENT_DATA_RECORD in reply.content.config_records
        },
    }
    if metrics is not None:
        line |= {key: float(value) for key, value in metrics.items()}
    return line


def _evaluate_round(
    grid: Grid,
    strategy: Any,
    settings: ServerSettings,
    server_round: int,
    state: OrderedDict[str, torch.Tensor],
    names: dict[int, int],
    skip: set[int],
) -> dict[str, Any]:
    """Client-side evaluation of the new global model; clients that just failed are not asked."""
    federated = settings.federated_job.federated
    arrays = ArrayRecord.from_torch_state_dict(state)
    messages = [
        message
        for message in strategy.configure_evaluate(server_round, arrays, ConfigRecord(), grid)
        if message.metadata.dst_node_id not in skip
    ]
    if not messages:  # fraction_evaluate = 0
        return {}
    replies = list(grid.send_and_receive(messages, timeout=federated.round_timeout_s))
    valid, failed = _split(replies, messages, names, "evaluate")
    line: dict[str, Any] = {"evaluate_failed": failed} if failed else {}
    metrics = strategy.aggregate_evaluate(server_round, valid) if valid else None
    if metrics is not None:
        line |= {f"client_{key}": float(value) for key, value in metrics.items()}
    return line


def _split(
    replies: list[Message], sent: list[Message], names: dict[int, int], stage: str
) -> tuple[list[Message], list[dict[str, Any]]]:
    """Good replies sorted by client (a fixed summation order), and who failed how.

    An error reply may come from the SuperLink itself (a node that stopped sending
    heartbeats), so the failed node is the one the original message went to.
    """
    destination = {message.metadata.message_id: message.metadata.dst_node_id for message in sent}
    valid = [reply for reply in replies if not reply.has_error()]
    for reply in valid:
        names[reply.metadata.src_node_id] = _partition(reply)
    failed, answered = [], set()
    for reply in replies:
        node = destination.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
        answered.add(node)
        if reply.has_error():
            failed.append(_failure(node, reply.error.reason or "error", names, stage))
    for message in sent:  # a node that never answered within the timeout
        if message.metadata.dst_node_id not in answered:
            failed.append(_failure(message.metadata.dst_node_id, "no reply", names, stage))
    return sorted(valid, key=_partition), failed


def _failure(node_id: int, reason: str, names: dict[int, int], stage: str) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "partition_id": names.get(node_id),
        "stage": stage,
        "reason": reason[:300],
    }


def _names(failed: list[dict[str, Any]]) -> str:
    return (
        ", ".join(f"client {item['partition_id']} (node {item['node_id']})" for item in failed)
        or "none"
    )


def _metrics(reply: Message) -> Any:
    return next(iter(reply.content.metric_records.values()))


def _partition(reply: Message) -> int:
    return int(_metrics(reply)["partition-id"])


def _update_norms(valid: list[Message], state: OrderedDict[str, torch.Tensor]) -> dict[str, float]:
    """L2 norm of each client's update as the server received it (after any clipping)."""
    norms = {}
    for reply in valid:
        received = next(iter(reply.content.array_records.values()))
        squared = sum(
            float(((torch.from_numpy(received[key].numpy()) - value) ** 2).sum())
            for key, value in state.items()
        )
        norms[str(_partition(reply))] = squared**0.5
    return norms


def progress_line(line: dict[str, Any], rounds: int) -> str:
    """One round as the terminal shows it; the CLI of a deployed server prints these too."""
    parts = [f"round {line['round']}/{rounds}"]
    for key, label in (
        ("train_loss", "train_loss"),
        ("server_eval_accuracy", "accuracy"),
        ("client_eval_accuracy", "client_accuracy"),
    ):
        if key in line:
            parts.append(f"{label} {line[key]:.4f}")
    parts.append("SecAgg+" if line.get("secagg") else f"clients {len(line['clients'])}")
    if line["failed"]:
        parts.append(f"[red]failed {_names(line['failed'])}[/red]")
    parts.append(f"{line['round_s']:.2f}s")
    return "  ".join(parts)


def final_metrics(rounds: list[dict[str, Any]], last_round: int) -> dict[str, float]:
    """The last round's metrics: what the registry records and the summary prints."""
    lines = [line for line in rounds if line.get("round") == last_round and "round_s" in line]
    if not lines:
        return {}
    keys = (
        "train_loss",
        "server_eval_loss",
        "server_eval_accuracy",
        "client_eval_loss",
        "client_eval_accuracy",
    )
    metrics = {key: float(lines[-1][key]) for key in keys if key in lines[-1]}
    metrics["rounds"] = float(last_round)
    return metrics
