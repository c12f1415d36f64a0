"""The short training loops compression needs: fine-tuning after pruning, and distillation.

Without labels (an embedding model), fine-tuning matches the original model's
outputs instead (mean squared error), so pruning still has something to recover to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aiaas.compress.progress import progress_bar
from aiaas.export.parity import invoke

BATCH_SIZE = 64


def fine_tune(
    model: nn.Module,
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    *,
    epochs: int,
    lr: float = 1e-3,
    reference: nn.Module | None = None,
    seed: int = 0,
    description: str = "fine-tuning",
) -> nn.Module:
    """Train in place for ``epochs`` on labels, or on ``reference``'s outputs without them."""
    if labels is None and reference is None:
        raise ValueError("fine-tuning needs labels or a reference model")
    targets = None if labels is None else torch.from_numpy(labels)
    if reference is not None:
        reference.eval()

    def loss_of(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        output = invoke(model, batch)
        if targets is not None:
            return F.cross_entropy(output, targets[rows])
        with torch.no_grad():
            wanted = invoke(reference, batch)  # type: ignore[arg-type]
        return F.mse_loss(output, wanted)

    return _train(model, inputs, loss_of, epochs=epochs, lr=lr, seed=seed, description=description)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    *,
    epochs: int,
    temperature: float = 4.0,
    alpha: float = 0.7,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Hinton et al.: ``alpha`` * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels).

    The T^2 factor keeps the soft term's gradients on the scale of the hard one
    whatever the temperature. Without labels the soft term is the whole loss.
    """
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError("temperature must be > 0 and alpha in [0, 1]")
    teacher.eval()
    targets = None if labels is None else torch.from_numpy(labels)
    soft_weight = 1.0 if targets is None else alpha

    def loss_of(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        logits = invoke(student, batch)
        with torch.no_grad():
            teacher_logits = invoke(teacher, batch)
        soft = F.kl_div(
            F.log_softmax(logits / temperature, dim=-1),
            F.log_softmax(teacher_logits / temperature, dim=-1),
            reduction="batchmean", log_target=True,
        ) * temperature**2  # fmt: skip
        if targets is None or soft_weight == 1.0:
            return soft
        return soft_weight * soft + (1 - soft_weight) * F.cross_entropy(logits, targets[rows])

    return _train(
        student, inputs, loss_of, epochs=epochs, lr=lr, seed=seed, description="distilling"
    )


def _train(
    model: nn.Module,
    inputs: Mapping[str, np.ndarray],
    loss_of: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    lr: float,
    seed: int,
    description: str,
) -> nn.Module:
    tensors = {name: torch.from_numpy(array) for name, array in inputs.items()}
    count = len(next(iter(tensors.values())))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-count // BATCH_SIZE)
    model.train()
    with progress_bar(description, epochs * steps_per_epoch) as advance:
        for _ in range(epochs):
            for rows in torch.randperm(count, generator=generator).split(BATCH_SIZE):  # type: ignore[no-untyped-call]
                optimizer.zero_grad()
                loss = loss_of({name: t[rows] for name, t in tensors.items()}, rows)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                advance(1)
    return model.eval()
