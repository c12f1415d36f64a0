"""Local training and evaluation: what one client does with the global model in one round.

The pieces come from `aiaas.train` (model, loss and optimizer factories, the
dataset loader), so a federated client trains exactly the model a centralized
run would. Each round starts a fresh optimizer, as in FedAvg: the server sends
weights, not optimizer state. The data order is a pure function of (seed,
round, client), which makes a run repeatable and a resumed run identical.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from aiaas.train.components import LossFn, build_loss, build_model, build_optimizer
from aiaas.train.config import JobConfig
from aiaas.train.data import fetch, fingerprint

StateDict = OrderedDict[str, torch.Tensor]
# Server-side random streams, kept apart from the clients' (stream = partition id).
SAMPLING_STREAM = 2**31 - 1
NOISE_STREAM = 2**31 - 2
#: The ConfigRecord of a client's train reply that says what it trained on.
CLIENT_DATA_RECORD = "client-data"


@dataclass
class LocalResult:
    state_dict: StateDict
    num_examples: int
    train_loss: float


def initial_state(job: JobConfig) -> StateDict:
    """The global model of round 0: the factory's initialisation under the SPEC's seed."""
    torch.manual_seed(job.training.seed)
    return OrderedDict(build_model(job.model).state_dict())


def model_with(job: JobConfig, state: StateDict) -> nn.Module:
    model = build_model(job.model)
    model.load_state_dict(state)
    return model


def round_seed(seed: int, server_round: int, stream: int) -> int:
    """Distinct, reproducible randomness per (run seed, round, client or server stream)."""
    return int(np.random.SeedSequence([seed, server_round, stream]).generate_state(1)[0])


def train_local(
    job: JobConfig,
    state: StateDict,
    dataset: Dataset[Any],
    *,
    epochs: int,
    seed: int,
    proximal_mu: float = 0.0,
) -> LocalResult:
    """`epochs` passes over the client's data from the global weights `state`.

    FedProx adds (mu/2)·||w - w_global||² to every batch loss, which keeps
    clients with skewed data from drifting far from the global model.
    """
    torch.manual_seed(seed)
    model = model_with(job, state)
    model.train()
    optimizer = build_optimizer(model, job.optimizer)
    loss_fn = build_loss(job.training.loss)
    anchors = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else []
    size = len(dataset)  # type: ignore[arg-type]
    batch = job.training.global_batch_size
    generator = torch.Generator().manual_seed(seed)
    loss_sum, seen = 0.0, 0
    for _epoch in range(epochs):
        order = torch.randperm(size, generator=generator).tolist()
        for start in range(0, size, batch):
            inputs, targets = fetch(dataset, order[start : start + batch])
            loss = loss_fn(model(inputs), targets)
            loss_sum += float(loss.detach()) * len(targets)
            seen += len(targets)
            if anchors:
                loss = loss + proximal_mu / 2 * _squared_distance(model, anchors)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return LocalResult(
        state_dict=OrderedDict(model.state_dict()),
        num_examples=size,
        train_loss=loss_sum / max(seen, 1),
    )


def _squared_distance(model: nn.Module, anchors: list[torch.Tensor]) -> torch.Tensor:
    terms = [((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchors, strict=True)]
    return torch.stack(terms).sum()


@torch.no_grad()
def evaluate(job: JobConfig, state: StateDict, dataset: Dataset[Any]) -> dict[str, float]:
    """Mean loss and, for class labels, accuracy of the weights `state` on `dataset`."""
    model = model_with(job, state)
    model.eval()
    loss_fn: LossFn = build_loss(job.training.loss)
    size = len(dataset)  # type: ignore[arg-type]
    batch = max(job.training.global_batch_size, 256)
    loss_sum, correct, labels = 0.0, 0.0, 0
    for start in range(0, size, batch):
        inputs, targets = fetch(dataset, list(range(start, min(size, start + batch))))
        outputs = model(inputs)
        loss_sum += float(loss_fn(outputs, targets)) * len(targets)
        if not targets.is_floating_point() and outputs.shape[:-1] == targets.shape:
            correct += float((outputs.argmax(dim=-1) == targets).sum())
            labels += targets.numel()
    metrics = {"loss": loss_sum / max(size, 1)}
    if labels:
        metrics["accuracy"] = correct / labels
    return metrics


def arrays_of(dataset: Dataset[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as numpy, for partitioning and for writing partition files."""
    if isinstance(dataset, TensorDataset):
        inputs, targets = dataset.tensors[0], dataset.tensors[1]
    else:
        inputs, targets = fetch(dataset, list(range(len(dataset))))  # type: ignore[arg-type]
    return inputs.numpy(), targets.numpy()


def subset(dataset: Dataset[Any], indices: np.ndarray) -> TensorDataset:
    """A client's share of the dataset as a TensorDataset (fast batched fetches)."""
    inputs, targets = fetch(dataset, indices.tolist())
    return TensorDataset(inputs, targets)


def data_fingerprint(dataset: Dataset[Any], source: str = "") -> str:
    """What a client trained on, as `aiaas train` fingerprints its data: the .npz file's
    hash when it has one, else a hash of the arrays. Only the hash leaves the client."""
    return fingerprint(dataset, source, Path("/"))


def combined_fingerprint(fingerprints: Iterable[str]) -> str | None:
    """One fingerprint for the federation's data: of the clients' fingerprints, sorted, so
    the same clients with the same files give the same string in any order."""
    parts = sorted(fingerprints)
    if not parts:
        return None
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def client_data(rounds: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each client's latest report of its data (fingerprint, examples) over the rounds."""
    latest: dict[int, dict[str, Any]] = {}
    for line in rounds:
        for client, data in (line.get("client_data") or {}).items():
            latest[int(client)] = {"client": int(client), **data}
    return [latest[client] for client in sorted(latest)]
