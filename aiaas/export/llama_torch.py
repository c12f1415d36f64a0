"""The Llama decoder in PyTorch, written for export: the KV cache is an input and an output.

One forward call is one step of generation for a whole batch: prefill (past of length 0,
many new tokens) and decode (one new token on a past) are the same graph. Positions come
in explicitly and the attention mask covers past and new tokens, so left-padded rows get
their own positions and never attend to padding. Float math follows transformers'
LlamaForCausalLM (RMSNorm in float32, rotary halves, grouped-query attention, SwiGLU), the
reference the exported model is tested against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from aiaas.export.gguf_reader import LlamaHyperparameters

KVCache = list[torch.Tensor]  # [k0, v0, k1, v1, ...], each [batch, kv_heads, past, head_dim]


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden * torch.rsqrt(variance + self.eps))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class DecoderLayer(nn.Module):
    def __init__(self, hyper: LlamaHyperparameters) -> None:
        super().__init__()
        hidden, head_dim = hyper.hidden_size, hyper.head_dim
        self.num_heads = hyper.num_heads
        self.num_kv_heads = hyper.num_key_value_heads
        self.head_dim = head_dim
        self.input_norm = RMSNorm(hidden, hyper.rms_norm_eps)
        self.q_proj = nn.Linear(hidden, self.num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * head_dim, hidden, bias=False)
        self.post_attention_norm = RMSNorm(hidden, hyper.rms_norm_eps)
        self.gate_proj = nn.Linear(hidden, hyper.intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden, hyper.intermediate_size, bias=False)
        self.down_proj = nn.Linear(hyper.intermediate_size, hidden, bias=False)

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        allowed: torch.Tensor,
        past_key: torch.Tensor,
        past_value: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attended, key, value = self.attention(
            self.input_norm(hidden), cos, sin, allowed, past_key, past_value
        )
        hidden = hidden + attended
        normed = self.post_attention_norm(hidden)
        mlp = self.down_proj(functional.silu(self.gate_proj(normed)) * self.up_proj(normed))
        return hidden + mlp, key, value

    def attention(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        allowed: torch.Tensor,
        past_key: torch.Tensor,
        past_value: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = hidden.shape
        group = self.num_heads // self.num_kv_heads
        query = self.q_proj(hidden).view(batch, length, self.num_heads, self.head_dim)
        key = self.k_proj(hidden).view(batch, length, self.num_kv_heads, self.head_dim)
        value = self.v_proj(hidden).view(batch, length, self.num_kv_heads, self.head_dim)
        query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        query = query * cos + rotate_half(query) * sin
        key = key * cos + rotate_half(key) * sin
        key = torch.cat([past_key, key], dim=2)
        value = torch.cat([past_value, value], dim=2)
        # Query heads grouped under the key/value head they share: no repeated K/V copies.
        grouped = query.reshape(batch, self.num_kv_heads, group, length, self.head_dim)
        scores = (grouped @ key.unsqueeze(2).transpose(-1, -2)) * self.head_dim**-0.5
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        out = (weights @ value.unsqueeze(2)).reshape(batch, self.num_heads, length, -1)
        out = out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(out), key, value


class LlamaDecoder(nn.Module):
    """input_ids, attention_mask, position_ids, past (k, v per layer) -> logits, present."""

    inv_freq: torch.Tensor

    def __init__(self, hyper: LlamaHyperparameters) -> None:
        super().__init__()
        self.hyper = hyper
        self.embed_tokens = nn.Embedding(hyper.vocab_size, hyper.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(hyper) for _ in range(hyper.num_layers))
        self.norm = RMSNorm(hyper.hidden_size, hyper.rms_norm_eps)
        self.lm_head = nn.Linear(hyper.hidden_size, hyper.vocab_size, bias=False)
        exponents = torch.arange(0, hyper.head_dim, 2, dtype=torch.float32) / hyper.head_dim
        self.register_buffer("inv_freq", 1.0 / (hyper.rope_theta**exponents), persistent=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, KVCache]:
        hidden = self.embed_tokens(input_ids)
        cos, sin = self.rotary(position_ids)
        allowed = self.allowed(attention_mask, input_ids.shape[1])
        present: KVCache = []
        for index, layer in enumerate(self.layers):
            past_key, past_value = past_key_values[2 * index], past_key_values[2 * index + 1]
            hidden, key, value = layer(hidden, cos, sin, allowed, past_key, past_value)
            present += [key, value]
        return self.lm_head(self.norm(hidden)), present

    def rotary(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [batch, 1, sequence, head_dim], broadcast over heads."""
        freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq
        angles = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)
        return angles.cos(), angles.sin()

    @staticmethod
    def allowed(attention_mask: torch.Tensor, length: int) -> torch.Tensor:
        """[batch, 1, 1, sequence, total]: causal among new tokens, padding masked out.

        New token i sits at index past + i of the mask, so it may see keys up to there.
        """
        total = attention_mask.shape[1]
        keys = torch.arange(total, device=attention_mask.device)
        queries = torch.arange(length, device=attention_mask.device) + (total - length)
        causal = keys.unsqueeze(0) <= queries.unsqueeze(1)
        return (causal.unsqueeze(0) & attention_mask.bool().unsqueeze(1))[:, None, None]

    def empty_cache(self, batch: int) -> KVCache:
        shape = (batch, self.hyper.num_key_value_heads, 0, self.hyper.head_dim)
        return [torch.zeros(shape) for _ in range(2 * self.hyper.num_layers)]


def build_decoder(hyper: LlamaHyperparameters, weights: Mapping[str, np.ndarray]) -> LlamaDecoder:
    """The decoder with the file's weights (output tied to the embedding when the file has
    no separate output matrix), in eval mode."""
    model = LlamaDecoder(hyper)
    state = {name: torch.from_numpy(array) for name, array in weights.items()}
    tied = "lm_head" not in state
    if tied:
        state["lm_head"] = state["embed_tokens"]
    state = {f"{name}.weight": tensor for name, tensor in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights do not fit the decoder: missing {missing}, extra {unexpected}")
    if tied:
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval()
