"""Text in, sentence embeddings out, for embedding models of the repository.

An embedding model is an ordinary V2 model (token ids in, one vector per row out)
whose config says ``parameters { key: "task" value { string_value:
"feature-extraction" } }`` and whose version folder holds the ``tokenizer.json`` it
was exported with. Texts are tokenised here with `tokenizers` and run through the
data plane, so batching, statistics and version swaps are those of every V2 call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from aiaas.errors import InvalidArgument, Unavailable
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.repository import ModelVersion
from aiaas.serve.types import InferInput, InferRequest, RequestedOutput

TASK = "feature-extraction"
TOKENIZER_FILENAME = "tokenizer.json"
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # float32 [texts, dimensions]
    prompt_tokens: int
    model_version: str
    #: The provenance of the version that computed the vectors.
    provenance: str


def task_of(loaded: ModelVersion) -> str:
    parameter = loaded.config.parameters.get("task")
    return parameter.string_value if parameter is not None else ""


def embedding_model_names(dataplane: DataPlane) -> list[str]:
    names = {v.name for v in dataplane.repository.loaded_versions() if task_of(v) == TASK}
    return sorted(names)


class Embedder:
    """Tokenises with each version's own tokenizer (kept per loaded version)."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self._tokenizers: dict[tuple[str, int, str], Tokenizer] = {}

    async def embed(self, name: str, texts: list[str]) -> Embeddings:
        loaded = self.dataplane.repository.get(name)
        if task_of(loaded) != TASK:
            raise InvalidArgument(f"model '{name}' is not an embedding model")
        tokenizer = self._tokenizer(loaded)
        output = loaded.serving.outputs[0].name
        step = loaded.serving.max_batch_size or 1
        vectors: list[np.ndarray] = []
        tokens = 0
        for begin in range(0, len(texts), step):
            arrays = _encode(tokenizer, texts[begin : begin + step], loaded)
            tokens += int(arrays["attention_mask"].sum())
            request = InferRequest(
                inputs=[_input(key, value) for key, value in arrays.items()],
                outputs=[RequestedOutput(output)],
            )
            response = await self.dataplane.infer(name, str(loaded.version), request)
            vectors.append(np.asarray(response.outputs[0].data, dtype=np.float32))
        return Embeddings(
            np.concatenate(vectors), tokens, str(loaded.version), loaded.provenance.header
        )

    def _tokenizer(self, loaded: ModelVersion) -> Tokenizer:
        key = (loaded.name, loaded.version, loaded.fingerprint)
        tokenizer = self._tokenizers.get(key)
        if tokenizer is None:
            path = self._folder(loaded.name) / str(loaded.version) / TOKENIZER_FILENAME
            if not path.is_file():
                raise Unavailable(f"embedding model '{loaded.name}' has no {TOKENIZER_FILENAME}")
            tokenizer = _fitted(Tokenizer.from_file(str(path)), loaded)
            self._tokenizers = {k: v for k, v in self._tokenizers.items() if k[0] != loaded.name}
            self._tokenizers[key] = tokenizer
        return tokenizer

    def _folder(self, name: str) -> Path:
        for source in self.dataplane.repository.sources:
            path = source.list_models().get(name)
            if path is not None:
                return path
        raise Unavailable(f"the folder of embedding model '{name}' is gone")


def _fitted(tokenizer: Tokenizer, loaded: ModelVersion) -> Tokenizer:
    """Pad and truncate to the model's sequence length when the model fixes one."""
    shape = next(s.shape for s in loaded.serving.inputs if s.name == "input_ids")
    length = shape[-1]
    padding = tokenizer.padding or {}
    pad_id, pad_token = padding.get("pad_id", 0), padding.get("pad_token", "[PAD]")
    if length > 0:
        tokenizer.enable_truncation(length)
        tokenizer.enable_padding(length=length, pad_id=pad_id, pad_token=pad_token)
    else:
        tokenizer.enable_padding(length=None, pad_id=pad_id, pad_token=pad_token)
    return tokenizer


def _encode(tokenizer: Tokenizer, texts: list[str], loaded: ModelVersion) -> dict[str, np.ndarray]:
    encoded = tokenizer.encode_batch(texts)
    columns = {
        "input_ids": [e.ids for e in encoded],
        "attention_mask": [e.attention_mask for e in encoded],
        "token_type_ids": [e.type_ids for e in encoded],
    }
    wanted = {spec.name for spec in loaded.serving.inputs}
    return {
        name: np.asarray(columns[name], dtype=np.int64) for name in _INPUT_NAMES if name in wanted
    }


def _input(name: str, array: np.ndarray) -> InferInput:
    return InferInput(name, "INT64", tuple(array.shape), array)
