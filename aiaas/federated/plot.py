"""The per-round plot: accuracy and loss against rounds, a centralized baseline dashed.

Redrawn from rounds.jsonl after every round, so the PNG always matches the log,
also after a resume. Agg backend: servers have no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_rounds(
    rounds: list[dict[str, Any]], path: Path, *, baseline_accuracy: float | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    numbers = [line["round"] for line in rounds]
    for key, label in (
        ("server_eval_accuracy", "global model, held-out data"),
        ("client_eval_accuracy", "global model, clients' data"),
    ):
        _line(accuracy_axis, rounds, numbers, key, label)
    if baseline_accuracy is not None:
        accuracy_axis.axhline(
            baseline_accuracy, linestyle="--", color="grey", label="centralized, same epochs"
        )
    for key, label in (
        ("train_loss", "training loss (clients)"),
        ("server_eval_loss", "held-out loss"),
    ):
        _line(loss_axis, rounds, numbers, key, label)
    accuracy_axis.set(xlabel="round", ylabel="accuracy", title="Accuracy per round")
    loss_axis.set(xlabel="round", ylabel="loss", title="Loss per round")
    for axis in (accuracy_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    staging = path.with_name(path.stem + ".tmp.png")
    figure.savefig(staging, dpi=100)
    plt.close(figure)
    staging.replace(path)


def _line(
    axis: Any, rounds: list[dict[str, Any]], numbers: list[int], key: str, label: str
) -> None:
    points = [(n, line[key]) for n, line in zip(numbers, rounds, strict=True) if key in line]
    if points:
        axis.plot(*zip(*points, strict=True), marker=".", label=label)
