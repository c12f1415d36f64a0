"""A Llama-architecture GGUF file as plain records: hyperparameters, float32 weights, tokenizer.

The `gguf` package reads the file and dequantizes its blocks; this module only maps
llama.cpp's key and tensor names to ours and undoes the one layout change llama.cpp's
converter makes: it permutes the rows of the q and k projections so that rotary
embeddings rotate adjacent pairs (GGML's layout) instead of the two halves of each head
(the Hugging Face layout our decoder and transformers use).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiaas.errors import InvalidArgument

#: llama.cpp's token types (gguf.TokenType): 3 marks control tokens such as <|im_end|>.
CONTROL_TOKEN = 3
USER_DEFINED_TOKEN = 4


@dataclass(frozen=True, kw_only=True)
class LlamaHyperparameters:
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_key_value_heads: int
    vocab_size: int
    context_length: int
    rope_theta: float
    rms_norm_eps: float

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True, kw_only=True)
class GGUFTokenizer:
    model: str
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_token_id: int | None
    eos_token_id: int | None
    unknown_token_id: int | None
    padding_token_id: int | None
    add_bos_token: bool
    chat_template: str | None


@dataclass(frozen=True, kw_only=True)
class LlamaGGUF:
    path: Path
    sha256: str
    hyperparameters: LlamaHyperparameters
    tokenizer: GGUFTokenizer
    #: Our parameter names (see llama_torch.LlamaDecoder) -> float32 arrays, torch layout.
    weights: dict[str, np.ndarray] = field(repr=False)
    #: The file's quantization of each tensor (Q4_1, F32, ...), for the recipe.
    tensor_types: dict[str, str] = field(repr=False)


_LAYER_TENSORS = {
    "attn_norm": "input_norm",
    "attn_q": "q_proj",
    "attn_k": "k_proj",
    "attn_v": "v_proj",
    "attn_output": "o_proj",
    "ffn_norm": "post_attention_norm",
    "ffn_gate": "gate_proj",
    "ffn_up": "up_proj",
    "ffn_down": "down_proj",
}
_GLOBAL_TENSORS = {"token_embd": "embed_tokens", "output_norm": "norm", "output": "lm_head"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_llama_gguf(path: Path) -> LlamaGGUF:
    """Everything the conversion needs from the file, weights dequantized to float32."""
    import gguf
    from gguf.quants import dequantize

    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"GGUF file {path} does not exist")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as error:
        raise InvalidArgument(f"{path} is not a readable GGUF file: {error}") from None
    fields = {name: _contents(value) for name, value in reader.fields.items()}
    architecture = fields.get("general.architecture")
    if architecture != "llama":
        raise InvalidArgument(
            f"{path.name}: architecture '{architecture}' is not supported (only llama)"
        )
    hyper = _hyperparameters(fields)
    weights: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    for tensor in reader.tensors:
        name = _our_name(tensor.name)
        if name is None:
            continue
        array = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        weights[name] = _unpermute(name, array, hyper)
        types[name] = tensor.tensor_type.name
    return LlamaGGUF(
        path=path,
        sha256=file_sha256(path),
        hyperparameters=hyper,
        tokenizer=_tokenizer(fields),
        weights=weights,
        tensor_types=types,
    )


def _contents(value: Any) -> Any:
    try:
        return value.contents()
    except (ValueError, IndexError, TypeError):
        return None


def _hyperparameters(fields: dict[str, Any]) -> LlamaHyperparameters:
    def number(key: str, default: Any = None) -> Any:
        value = fields.get(f"llama.{key}", default)
        if value is None:
            raise InvalidArgument(f"GGUF metadata lacks llama.{key}")
        return value

    heads = int(number("attention.head_count"))
    tokens = fields.get("tokenizer.ggml.tokens") or []
    return LlamaHyperparameters(
        num_layers=int(number("block_count")),
        hidden_size=int(number("embedding_length")),
        intermediate_size=int(number("feed_forward_length")),
        num_heads=heads,
        num_key_value_heads=int(number("attention.head_count_kv", heads)),
        vocab_size=int(number("vocab_size", len(tokens))),
        context_length=int(number("context_length")),
        rope_theta=float(number("rope.freq_base", 10000.0)),
        rms_norm_eps=float(number("attention.layer_norm_rms_epsilon")),
    )


def _tokenizer(fields: dict[str, Any]) -> GGUFTokenizer:
    def key(name: str) -> Any:
        return fields.get(f"tokenizer.ggml.{name}")

    if key("model") != "gpt2":
        raise InvalidArgument(
            f"tokenizer model '{key('model')}' is not supported (only byte-level BPE, 'gpt2')"
        )
    add_bos = key("add_bos_token")
    return GGUFTokenizer(
        model=key("model"),
        pre=key("pre"),
        tokens=list(key("tokens") or []),
        token_types=[int(t) for t in key("token_type") or []],
        merges=list(key("merges") or []),
        bos_token_id=_optional_int(key("bos_token_id")),
        eos_token_id=_optional_int(key("eos_token_id")),
        unknown_token_id=_optional_int(key("unknown_token_id")),
        padding_token_id=_optional_int(key("padding_token_id")),
        add_bos_token=bool(add_bos) if add_bos is not None else False,
        chat_template=fields.get("tokenizer.chat_template"),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _our_name(gguf_name: str) -> str | None:
    parts = gguf_name.split(".")
    if parts[-1] != "weight":
        return None
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in _LAYER_TENSORS:
        return f"layers.{parts[1]}.{_LAYER_TENSORS[parts[2]]}"
    if len(parts) == 2 and parts[0] in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[parts[0]]
    return None


def _unpermute(name: str, weight: np.ndarray, hyper: LlamaHyperparameters) -> np.ndarray:
    """Invert convert_hf_to_gguf.py's LlamaModel.permute on q/k rows (as transformers'
    GGUF loader does): per head, rows (pair, 2) go back to (2, half)."""
    if name.endswith(".q_proj"):
        heads = hyper.num_heads
    elif name.endswith(".k_proj"):
        heads = hyper.num_key_value_heads
    else:
        return weight
    half = weight.shape[0] // heads // 2
    grouped = weight.reshape(heads, half, 2, *weight.shape[1:])
    return np.ascontiguousarray(grouped.swapaxes(2, 1).reshape(weight.shape))
