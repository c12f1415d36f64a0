"""Flower strategies from the `[federated]` settings, plus the state a checkpoint must keep.

FedAvg, FedProx and FedAdam are Flower's own; DP wraps them in Flower's
client-side fixed-clipping wrapper (the clients clip with `fixedclipping_mod`,
the server adds Gaussian noise scaled to the clipping norm). Metrics are
averaged by sample count except the bookkeeping keys, which are not metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
    Strategy,
)

from aiaas.federated.config import FederatedConfig

WEIGHT_KEY = "num-examples"
_NOT_METRICS = {WEIGHT_KEY, "partition-id"}
# FedOpt-family server optimizer moments: what makes FedAdam's round r+1 depend on round r.
_STATEFUL_ATTRIBUTES = ("m_t", "v_t")


def sampled_per_round(federated: FederatedConfig, clients: int) -> int:
    """How many clients Flower's sampling picks per round (`fraction` but at least `min`)."""
    return min(clients, max(int(clients * federated.fraction_fit), federated.min_fit_clients))


def build_strategy(federated: FederatedConfig, clients: int) -> Strategy:
    common: dict[str, Any] = {
        "fraction_train": federated.fraction_fit,
        "fraction_evaluate": federated.fraction_evaluate,
        "min_train_nodes": federated.min_fit_clients,
        "min_evaluate_nodes": federated.min_fit_clients,
        "min_available_nodes": federated.min_available_clients,
        "weighted_by_key": WEIGHT_KEY,
        "train_metrics_aggr_fn": weighted_mean,
        "evaluate_metrics_aggr_fn": weighted_mean,
    }
    strategy: Strategy
    if federated.strategy == "fedprox":
        strategy = FedProx(proximal_mu=federated.proximal_mu, **common)
    elif federated.strategy == "fedadam":
        strategy = FedAdam(eta=federated.server_lr, tau=federated.tau, **common)
    else:
        strategy = FedAvg(**common)
    if federated.dp_clip > 0:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy,
            noise_multiplier=federated.dp_noise,
            clipping_norm=federated.dp_clip,
            num_sampled_clients=sampled_per_round(federated, clients),
        )
    return strategy


def weighted_mean(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Sample-weighted mean of each metric, leaving out the weight and the client id."""
    weights = [float(next(iter(r.metric_records.values()))[weight_key]) for r in records]  # type: ignore[arg-type]
    total = sum(weights) or 1.0
    merged: dict[str, float] = {}
    for record, weight in zip(records, weights, strict=True):
        for key, value in next(iter(record.metric_records.values())).items():
            if key not in _NOT_METRICS and isinstance(value, int | float):
                merged[key] = merged.get(key, 0.0) + float(value) * weight / total
    return MetricRecord(merged)  # type: ignore[arg-type]


def _inner(strategy: Strategy) -> Strategy:
    wrapped = getattr(strategy, "strategy", None)
    return wrapped if isinstance(wrapped, Strategy) else strategy


def strategy_state(strategy: Strategy) -> dict[str, Any]:
    """The server optimizer's moments (FedAdam), as plain numpy, for the checkpoint."""
    inner = _inner(strategy)
    state = {}
    for name in _STATEFUL_ATTRIBUTES:
        value = getattr(inner, name, None)
        if value:
            state[name] = {key: np.array(array) for key, array in value.items()}
    return state


def restore_strategy_state(strategy: Strategy, state: dict[str, Any]) -> None:
    inner = _inner(strategy)
    for name, value in state.items():
        setattr(inner, name, {key: np.array(array) for key, array in value.items()})
