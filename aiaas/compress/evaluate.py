"""Measurements of a model variant: quality on held-out data, file size, latency.

Quality is accuracy when the data has labels, and otherwise fidelity to the
original model (embeddings): the mean cosine similarity of each sample's output
and the Spearman correlation of all pairwise similarities, which is what a search
or clustering built on the embeddings depends on. Latencies of all variants are
measured interleaved, round-robin in one loop, so load from other processes on a
shared machine hits every variant alike and ratios stay meaningful.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

LATENCY_BATCH_SIZES = (1, 16)
EVAL_BATCH = 256


def session(path: Path, threads: int = 1, optimize: bool = True) -> ort.InferenceSession:
    """A CPU session with a fixed thread count (unoptimised to measure the raw export)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def outputs(model: ort.InferenceSession, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The first output over all samples, in batches."""
    count = len(next(iter(inputs.values())))
    name = model.get_outputs()[0].name
    parts = [
        model.run(
            [name], {key: value[start : start + EVAL_BATCH] for key, value in inputs.items()}
        )[0]
        for start in range(0, count, EVAL_BATCH)
    ]
    return np.concatenate(parts)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def fidelity(embeddings: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(mean cosine similarity to the reference, Spearman rho of pairwise similarities)."""
    a, b = _unit(embeddings), _unit(reference)
    cosine = float(np.mean(np.sum(a * b, axis=1)))
    upper = np.triu_indices(len(a), k=1)
    if len(upper[0]) < 2:
        return cosine, 1.0
    return cosine, _spearman((a @ a.T)[upper], (b @ b.T)[upper])


def file_size(path: Path) -> int:
    """Bytes on disk, external data files included."""
    return sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))


def latencies(
    sessions: Mapping[str, ort.InferenceSession],
    inputs: Mapping[str, np.ndarray],
    *,
    batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
    rounds: int = 30,
    warmup: int = 3,
) -> dict[str, dict[int, float]]:
    """p50 milliseconds per variant and batch size, variants interleaved in every round."""
    feeds = {size: _batch(inputs, size) for size in batch_sizes}
    for model in sessions.values():
        for feed in feeds.values():
            for _ in range(warmup):
                model.run(None, feed)
    samples: dict[str, dict[int, list[float]]] = {
        name: {size: [] for size in batch_sizes} for name in sessions
    }
    names = list(sessions)
    for round_index in range(rounds):
        # Rotate the order so no variant always runs right after the same neighbour.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for size, feed in feeds.items():
                start = time.perf_counter()
                sessions[name].run(None, feed)
                samples[name][size].append((time.perf_counter() - start) * 1000)
    return {
        name: {size: float(np.median(values)) for size, values in by_size.items()}
        for name, by_size in samples.items()
    }


def _batch(inputs: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    count = len(next(iter(inputs.values())))
    rows = np.arange(size) % count
    return {name: np.ascontiguousarray(array[rows]) for name, array in inputs.items()}


def _unit(vectors: np.ndarray) -> np.ndarray:
    flat = vectors.reshape(len(vectors), -1).astype(np.float64)
    unit: np.ndarray = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    return unit


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank_x, rank_y = _ranks(x), _ranks(y)
    if rank_x.std() == 0 or rank_y.std() == 0:
        return 1.0 if np.array_equal(rank_x, rank_y) else 0.0
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as Spearman's rho defines them)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if len(unique) == len(values):
        return ranks
    sums = np.bincount(inverse, weights=ranks)
    averaged: np.ndarray = (sums / counts)[inverse]
    return averaged
