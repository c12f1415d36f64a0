"""The `[federated]` section of a SPEC, checked on construction like the train sections.

The rest of the SPEC is a train job and is validated by `aiaas.train`, so a
federated run and a centralized one read the same file the same way. Nothing here
imports torch or flwr: a bad SPEC is refused before either is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiaas.train.config import ConfigError, JobConfig, _build, build_job_config
from aiaas.train.spec import apply_overrides, check_job_references, read_spec

StrategyName = Literal["fedavg", "fedprox", "fedadam"]


@dataclass(kw_only=True, frozen=True)
class FederatedConfig:
    """How the federation runs; local training itself is the train SPEC's business."""

    rounds: int = 10
    strategy: StrategyName = "fedavg"
    proximal_mu: float = 0.01
    server_lr: float = 0.1
    tau: float = 1e-3
    fraction_fit: float = 1.0
    fraction_evaluate: float = 1.0
    min_available_clients: int = 2
    min_fit_clients: int = 2
    local_epochs: int = 0
    dp_clip: float = 0.0
    dp_noise: float = 0.0
    secagg: bool = False
    round_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.rounds <= 0:
            raise ConfigError("rounds", f"must be positive, got {self.rounds}")
        if not 0.0 < self.fraction_fit <= 1.0:
            raise ConfigError("fraction_fit", f"must be in (0, 1], got {self.fraction_fit}")
        if not 0.0 <= self.fraction_evaluate <= 1.0:  # 0: no client-side evaluation
            raise ConfigError(
                "fraction_evaluate", f"must be in [0, 1], got {self.fraction_evaluate}"
            )
        for key in ("min_available_clients", "min_fit_clients"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be positive, got {getattr(self, key)}")
        for key in ("proximal_mu", "dp_clip", "dp_noise", "local_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(key, f"must not be negative, got {getattr(self, key)}")
        if self.server_lr <= 0 or self.tau <= 0 or self.round_timeout_s <= 0:
            raise ConfigError("server_lr", "server_lr, tau and round_timeout_s must be positive")
        if self.dp_noise > 0 and self.dp_clip == 0:
            raise ConfigError("dp_noise", "needs dp_clip: noise is scaled to the clipping norm")

    def epochs_per_round(self, job: JobConfig) -> int:
        """`local_epochs`, else the train SPEC's epochs, else one."""
        return self.local_epochs or job.training.epochs or 1

    def check_clients(self, clients: int) -> None:
        """A federation of `clients` must be able to meet the minimums at all."""
        if self.min_available_clients > clients:
            raise ConfigError(
                "federated.min_available_clients",
                f"{self.min_available_clients} exceeds the {clients} client(s)",
            )
        sampled = max(int(clients * self.fraction_fit), self.min_fit_clients)
        if sampled > clients:
            raise ConfigError(
                "federated.min_fit_clients",
                f"{self.min_fit_clients} exceeds the {clients} client(s)",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_secagg(federated: FederatedConfig, *, resume: bool, stop_after_round: int) -> None:
    """SecAgg+ runs on Flower's legacy workflow here: FedAvg only, no DP, no resume."""
    if not federated.secagg:
        return
    if federated.strategy != "fedavg" or federated.dp_clip > 0:
        raise ConfigError("federated.secagg", "works with strategy fedavg and without DP here")
    if resume or stop_after_round:
        raise ConfigError("federated.secagg", "runs cannot be stopped and resumed with SecAgg+")


@dataclass(kw_only=True, frozen=True)
class FederatedJob:
    """A train job plus its federation settings, and where the SPEC lives."""

    job: JobConfig
    federated: FederatedConfig
    base: Path
    spec_path: Path | None

    @property
    def run_path(self) -> Path:
        return Path(self.job.run_dir or f"runs/{self.job.name}-federated")


def load_federated_job(
    spec: Path | None, overrides: Iterable[tuple[str, Any]] = (), *, check_references: bool = True
) -> FederatedJob:
    """Read the SPEC, split off `[federated]`, and check both halves; one ConfigError if bad."""
    raw = apply_overrides(read_spec(spec), overrides)
    federated_raw = raw.pop("federated", {})
    raw.setdefault("name", spec.stem if spec is not None else "federated")
    job = build_job_config(raw)
    base = spec.parent if spec is not None else Path.cwd()
    if check_references:
        check_job_references(job, base)
    federated: FederatedConfig = _build(FederatedConfig, federated_raw, prefix="federated.")
    return FederatedJob(job=job, federated=federated, base=base, spec_path=spec)
