"""A tiny random Llama (RMSNorm, rotary positions, grouped-query attention, SwiGLU) in
the contract's ONNX signature, with a small byte-level BPE tokenizer: a real model
folder for engine tests that need no download and build in seconds.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tiny_tokenizer import train_tokenizer
from torch import nn

from aiaas.serve.llm.engine import LLMEngine

LAYERS, HEADS, KV_HEADS, HEAD_DIM, HIDDEN, FFN = 2, 4, 2, 16, 64, 128
#: make_engine(**config parameters) -> an engine over the tiny model, as conftest builds it.
EngineFactory = Callable[..., LLMEngine]


@dataclass(frozen=True)
class Dims:
    layers: int = LAYERS
    heads: int = HEADS
    kv_heads: int = KV_HEADS
    head_dim: int = HEAD_DIM
    hidden: int = HIDDEN
    ffn: int = FFN
    vocab: int | None = None  # None: the tokenizer's


#: SmolLM2-135M's shape: random weights of it time a decode step as the real model does.
SMOLLM2_135M = Dims(layers=30, heads=9, kv_heads=3, head_dim=64, hidden=576, ffn=1536, vocab=49152)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little robot who liked to count: one two three four.",
    "def add(a, b): return a + b  # numbers, words and symbols 0123456789 !?.,;:",
] * 20


def _rotate(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class Layer(nn.Module):
    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.dims = dims
        self.norm1 = RMSNorm(dims.hidden)
        self.norm2 = RMSNorm(dims.hidden)
        self.q = nn.Linear(dims.hidden, dims.heads * dims.head_dim, bias=False)
        self.k = nn.Linear(dims.hidden, dims.kv_heads * dims.head_dim, bias=False)
        self.v = nn.Linear(dims.hidden, dims.kv_heads * dims.head_dim, bias=False)
        self.o = nn.Linear(dims.heads * dims.head_dim, dims.hidden, bias=False)
        self.gate = nn.Linear(dims.hidden, dims.ffn, bias=False)
        self.up = nn.Linear(dims.hidden, dims.ffn, bias=False)
        self.down = nn.Linear(dims.ffn, dims.hidden, bias=False)

    def forward(self, x, cos, sin, bias, past_k, past_v):  # type: ignore[no-untyped-def]
        d = self.dims
        batch, length, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(batch, length, d.heads, d.head_dim).transpose(1, 2)
        k = self.k(h).view(batch, length, d.kv_heads, d.head_dim).transpose(1, 2)
        v = self.v(h).view(batch, length, d.kv_heads, d.head_dim).transpose(1, 2)
        q = q * cos + _rotate(q) * sin
        k = k * cos + _rotate(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        groups = d.heads // d.kv_heads
        kk = k.repeat_interleave(groups, dim=1)
        vv = v.repeat_interleave(groups, dim=1)
        scores = q @ kk.transpose(-1, -2) / d.head_dim**0.5 + bias
        attended = torch.softmax(scores, dim=-1) @ vv
        x = x + self.o(attended.transpose(1, 2).reshape(batch, length, d.heads * d.head_dim))
        h = self.norm2(x)
        return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h)), k, v


class TinyLlama(nn.Module):
    def __init__(self, dims: Dims, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dims.hidden)
        self.layers = nn.ModuleList(Layer(dims) for _ in range(dims.layers))
        self.norm = RMSNorm(dims.hidden)
        self.head = nn.Linear(dims.hidden, vocab, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, dims.head_dim, 2).float() / dims.head_dim))
        self.register_buffer("inv_freq", inv)

    def forward(self, input_ids, attention_mask, position_ids, *past):  # type: ignore[no-untyped-def]
        x = self.embed(input_ids)
        length = input_ids.shape[1]
        total = attention_mask.shape[1]
        angles = position_ids[:, None, :, None].float() * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos(), angles.sin()
        query_at = torch.arange(length) + (total - length)
        causal = torch.arange(total)[None, :] <= query_at[:, None]
        allowed = causal[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
        presents = []
        for index, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, bias, past[2 * index], past[2 * index + 1])
            presents += [k, v]
        return (self.head(self.norm(x)), *presents)


def write_tiny_llama(
    repo: Path,
    name: str = "tiny",
    version: int = 1,
    seed: int = 0,
    *,
    context_length: int = 128,
    parameters: dict[str, str] | None = None,
    dims: Dims = Dims(),
) -> Path:
    """A model folder `repo/name/version` in the contract's layout; returns the version dir."""
    tokenizer = train_tokenizer(CORPUS)
    vocab = dims.vocab or tokenizer.get_vocab_size()
    torch.manual_seed(seed)
    model = TinyLlama(dims, vocab).eval()
    with torch.no_grad():  # sharper logits than init's, so greedy text varies by prompt
        model.head.weight.mul_(8.0)
    folder = repo / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    past_names = [f"past_key_values.{i}.{k}" for i in range(dims.layers) for k in ("key", "value")]
    present_names = [f"present.{i}.{k}" for i in range(dims.layers) for k in ("key", "value")]
    batch, length = 2, 3
    example = (
        torch.zeros((batch, length), dtype=torch.int64),
        torch.ones((batch, length + 1), dtype=torch.int64),
        torch.zeros((batch, length), dtype=torch.int64),
        *[torch.zeros((batch, dims.kv_heads, 1, dims.head_dim)) for _ in past_names],
    )
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total"},
        "position_ids": {0: "batch", 1: "sequence"},
        "logits": {0: "batch", 1: "sequence"},
    }
    axes.update({n: {0: "batch", 2: "past"} for n in past_names})
    axes.update({n: {0: "batch", 2: "total"} for n in present_names})
    with warnings.catch_warnings():  # the small TorchScript exporter warns it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, example, str(folder / "model.onnx"), dynamo=False,
            input_names=["input_ids", "attention_mask", "position_ids", *past_names],
            output_names=["logits", *present_names], dynamic_axes=axes, opset_version=17,
        )  # fmt: skip
    tokenizer.save(str(folder / "tokenizer.json"))
    eos = tokenizer.token_to_id("<|im_end|>")
    generation = {
        "model_type": "llama", "context_length": context_length, "num_layers": dims.layers,
        "num_key_value_heads": dims.kv_heads, "head_dim": dims.head_dim, "vocab_size": vocab,
        "bos_token_id": None, "eos_token_ids": [eos, tokenizer.token_to_id("<|endoftext|>")],
        "pad_token_id": None, "add_bos_token": False, "chat_template": CHAT_TEMPLATE,
        "special_tokens": {"bos": None, "eos": "<|im_end|>"},
        "defaults": {"temperature": 1.0, "top_p": 1.0, "max_tokens": None},
    }  # fmt: skip
    (folder / "generation.json").write_text(json.dumps(generation))
    lines = ['platform: "onnxruntime_onnx"', "max_batch_size: 0",
             'parameters { key: "task" value { string_value: "text-generation" } }']  # fmt: skip
    for key, value in (parameters or {}).items():
        lines.append(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}')
    (repo / name / "config.pbtxt").write_text("\n".join(lines) + "\n")
    return folder
