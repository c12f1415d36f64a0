"""Split one dataset into N client partitions: IID, Dirichlet label skew, or label shards.

flwr-datasets does this for Hugging Face datasets, which are not installed here;
these three schemes are the ones the FedAvg and FedProx papers evaluate, written
with numpy and a seeded generator so that the same seed always gives the same
partitions (the simulation and the partition files of a deployment agree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aiaas.train.config import ConfigError

_SCHEME = re.compile(r"^(iid|dirichlet:(?P<alpha>[^:]+)|shards:(?P<shards>[^:]+))$")


@dataclass(frozen=True)
class PartitionScheme:
    """`iid`, `dirichlet:ALPHA` (smaller ALPHA, more skew) or `shards:K` (K label shards each)."""

    kind: str
    alpha: float = 0.0
    shards_per_client: int = 0

    def __str__(self) -> str:
        if self.kind == "dirichlet":
            return f"dirichlet:{self.alpha:g}"
        if self.kind == "shards":
            return f"shards:{self.shards_per_client}"
        return "iid"


def parse_scheme(text: str) -> PartitionScheme:
    match = _SCHEME.match(text.strip())
    if not match:
        raise ConfigError("--partition", f"{text!r} is not iid, dirichlet:ALPHA or shards:K")
    if match.group("alpha") is not None:
        try:
            alpha = float(match.group("alpha"))
        except ValueError:
            raise ConfigError("--partition", f"ALPHA in {text!r} is not a number") from None
        if not alpha > 0:
            raise ConfigError("--partition", f"dirichlet ALPHA must be > 0, got {alpha:g}")
        return PartitionScheme("dirichlet", alpha=alpha)
    if match.group("shards") is not None:
        shards = match.group("shards")
        if not shards.isdigit() or int(shards) <= 0:
            raise ConfigError("--partition", f"shards K must be a positive integer, got {shards}")
        return PartitionScheme("shards", shards_per_client=int(shards))
    return PartitionScheme("iid")


def partition_indices(
    labels: np.ndarray, clients: int, scheme: PartitionScheme, seed: int
) -> list[np.ndarray]:
    """Indices of each client's samples; every sample goes to exactly one client."""
    size = len(labels)
    if clients <= 0:
        raise ConfigError("--clients", f"must be positive, got {clients}")
    if clients > size:
        raise ConfigError("--clients", f"{clients} clients for {size} samples")
    rng = np.random.default_rng(seed)
    if scheme.kind == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(size), clients)]
    if scheme.kind == "shards":
        return _shards(labels, clients, scheme.shards_per_client, rng)
    return _dirichlet(labels, clients, scheme.alpha, rng)


def _shards(
    labels: np.ndarray, clients: int, per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """McMahan et al.: sort by label, cut into clients*K shards, deal K shards to each."""
    total = clients * per_client
    if total > len(labels):
        raise ConfigError(
            "--partition",
            f"shards:{per_client} x {clients} clients = {total} shards "
            f"but only {len(labels)} samples",
        )
    by_label = np.argsort(labels, kind="stable")
    shards = np.array_split(by_label, total)
    order = rng.permutation(total)
    return [
        np.sort(np.concatenate([shards[k] for k in order[c * per_client : (c + 1) * per_client]]))
        for c in range(clients)
    ]


def _dirichlet(
    labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per class, split its samples by proportions drawn from Dir(alpha); redraw empty clients."""
    classes = np.unique(labels)
    for _attempt in range(100):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for label in classes:
            members = rng.permutation(np.flatnonzero(labels == label))
            proportions = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].extend(chunk.tolist())
        if all(parts):
            return [np.sort(np.asarray(part, dtype=np.int64)) for part in parts]
    raise ConfigError(
        "--partition", f"dirichlet:{alpha:g} left a client empty in 100 draws; raise ALPHA"
    )


def label_histogram(labels: np.ndarray, parts: list[np.ndarray]) -> tuple[list[int], np.ndarray]:
    """(classes, counts[client, class]) for the table the CLI prints."""
    classes = sorted(int(value) for value in np.unique(labels))
    counts = np.zeros((len(parts), len(classes)), dtype=np.int64)
    position = {label: column for column, label in enumerate(classes)}
    for row, part in enumerate(parts):
        values, numbers = np.unique(labels[part], return_counts=True)
        for value, number in zip(values, numbers, strict=True):
            counts[row, position[int(value)]] = number
    return classes, counts


def write_partitions(
    inputs: np.ndarray, labels: np.ndarray, parts: list[np.ndarray], out_dir: Path
) -> list[Path]:
    """One `client-NNN.npz` with arrays x and y per client: what a deployed client loads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for client, part in enumerate(parts):
        path = out_dir / f"client-{client:03d}.npz"
        np.savez(path, x=inputs[part], y=labels[part])
        paths.append(path)
    return paths


def check_partition_file(path: Path) -> int:
    """Refuse a client data file without x and y of equal length; returns its sample count."""
    if not path.is_file():
        raise ConfigError("--data", f"{path} does not exist")
    try:
        with np.load(path) as arrays:
            missing = {"x", "y"} - set(arrays.files)
            if missing:
                raise ConfigError(
                    "--data", f"{path} lacks array(s) {', '.join(sorted(missing))} (needs x and y)"
                )
            lengths = {len(arrays["x"]), len(arrays["y"])}
    except (OSError, ValueError) as error:
        raise ConfigError("--data", f"{path} is not a readable .npz: {error}") from None
    if len(lengths) != 1:
        raise ConfigError("--data", f"{path}: x and y differ in length")
    if lengths == {0}:
        raise ConfigError("--data", f"{path} holds no samples")
    return lengths.pop()
