"""The decoder to ONNX with its KV cache as inputs and outputs, under Optimum's names,
checked against PyTorch on the steps generation actually takes.

The parity check runs a left-padded batch of two through prefill (an empty past) and
then decode steps on the growing cache, because a cache or mask bug shows only there:
a single full-sequence forward pass would agree even with a broken past.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from aiaas.export import convert
from aiaas.export.errors import ExportFailed, ParityError
from aiaas.export.llama_torch import KVCache, LlamaDecoder

#: Logits of a 135M model in float32 differ from PyTorch's by ~1e-4 after 30 layers.
LOGITS_ATOL = 2e-3


@dataclass(frozen=True, slots=True)
class DecoderParity:
    max_abs_error: float
    steps: int


def input_names(num_layers: int) -> list[str]:
    past = [f"past_key_values.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past]


def output_names(num_layers: int) -> list[str]:
    present = [f"present.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    return ["logits", *present]


def export_decoder(model: LlamaDecoder, path: Path) -> None:
    """torch.export with dynamic batch, sequence and past axes, then the dynamo ONNX exporter."""
    layers = model.hyper.num_layers
    batch, past, length = 2, 3, 4
    ids = torch.ones((batch, length), dtype=torch.int64)
    mask = torch.ones((batch, past + length), dtype=torch.int64)
    positions = torch.arange(past, past + length).repeat(batch, 1)
    cache = _random_cache(model, batch, past)
    dynamic = torch.export.Dim.DYNAMIC
    shapes = (
        {0: dynamic, 1: dynamic},
        {0: dynamic, 1: dynamic},
        {0: dynamic, 1: dynamic},
        [{0: dynamic, 2: dynamic}] * (2 * layers),
    )
    try:
        with convert.quiet_torch(), torch.no_grad():
            program = torch.export.export(
                model, (ids, mask, positions, cache), dynamic_shapes=shapes, strict=False
            )
            onnx_program = torch.onnx.export(program, (), opset_version=convert.OPSET)
    except Exception as error:  # torch.export and the exporter raise many unrelated types
        raise ExportFailed(f"the decoder did not export to ONNX: {error}") from None
    if onnx_program is None:
        raise ExportFailed("torch.onnx.export returned no program")
    proto = onnx_program.model_proto
    convert.rename_interface(proto, input_names(layers), output_names(layers))
    _name_axes(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))


def _name_axes(model: onnx.ModelProto) -> None:
    """torch's symbols (s17) become batch / sequence / past_sequence / total_sequence."""
    wanted = {
        ("input_ids", 0): "batch",
        ("input_ids", 1): "sequence",
        ("attention_mask", 1): "past_sequence + sequence",
        ("past_key_values.0.key", 2): "past_sequence",
    }
    values = {value.name: value for value in model.graph.input}
    renames = {}
    for (name, axis), label in wanted.items():
        dim = values[name].type.tensor_type.shape.dim[axis]
        if dim.dim_param:
            renames[dim.dim_param] = label
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def _random_cache(model: LlamaDecoder, batch: int, past: int) -> KVCache:
    hyper = model.hyper
    shape = (batch, hyper.num_key_value_heads, past, hyper.head_dim)
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator) for _ in range(2 * hyper.num_layers)]


def check_decoder_parity(
    model: LlamaDecoder, path: Path, prompts: list[list[int]], decode_steps: int = 3
) -> DecoderParity:
    """Greedy-decode ``prompts`` (left-padded into one batch) with both and compare logits
    at every step; raises ParityError beyond LOGITS_ATOL."""
    from aiaas.export.parity import session

    onnx_session = session(path, optimize=True, threads=2)
    worst, steps = 0.0, 0
    for torch_logits, onnx_logits in _steps(model, onnx_session, prompts, decode_steps):
        steps += 1
        error = float(np.max(np.abs(torch_logits - onnx_logits)))
        worst = max(worst, error)
        if not error <= LOGITS_ATOL:
            raise ParityError(
                f"ONNX logits differ from PyTorch by {error:.3g} at step {steps} "
                f"(tolerance {LOGITS_ATOL:g})"
            )
    return DecoderParity(max_abs_error=worst, steps=steps)


def _steps(
    model: LlamaDecoder, onnx_session: object, prompts: list[list[int]], decode_steps: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    layers = model.hyper.num_layers
    width = max(map(len, prompts))
    ids = np.array([[0] * (width - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    cache = [t.numpy() for t in model.empty_cache(len(prompts))]
    for _ in range(decode_steps + 1):
        with torch.no_grad():
            logits, present = model(
                torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(positions),
                [torch.from_numpy(c) for c in cache],
            )  # fmt: skip
        feeds = dict(zip(input_names(layers), [ids, mask, positions, *cache], strict=True))
        onnx_out = onnx_session.run(None, feeds)  # type: ignore[attr-defined]
        last = mask.sum(axis=1)
        yield logits.numpy(), onnx_out[0]
        cache = [t.numpy() for t in present]
        ids = logits[:, -1].argmax(-1, keepdim=True).numpy()
        mask = np.concatenate([mask, np.ones((len(prompts), 1), dtype=np.int64)], axis=1)
        positions = last[:, None].astype(np.int64)
