"""How much a quantized language model still says what the float32 one says, and at what
size and decode speed.

- Greedy agreement: the float32 model's greedy continuation of each fixed prompt is fed
  to the variant (teacher forcing); the share of positions where the variant's top token
  is the same. Forcing the reference text keeps one early divergence from counting as
  every later token wrong.
- Perplexity on a held paragraph that is not a prompt.
- Decode speed: tokens per second of one sequence's decode steps after its prefill.

ONNX Runtime and numpy only: no torch, so it also measures what the server runs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

PROMPTS = (
    "The capital of France is",
    "To make a cup of tea, first",
    "def fibonacci(n):\n",
    "The three primary colours are",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a haiku about autumn.<|im_end|>\n<|im_start|>assistant\n",
    "Photosynthesis is the process by which",
    "Once upon a time, in a small village,",
)
HELD_TEXT = (
    "The library opened at nine every morning, and by ten the reading room was usually "
    "full. Students came to prepare for examinations, retired teachers came to read the "
    "newspapers, and a few writers came because the silence helped them think. The "
    "librarian knew most of them by name. She kept a notebook of the books people asked "
    "for but could not find, and at the end of each month she ordered as many of them as "
    "the budget allowed. Over the years the collection grew in the directions its readers "
    "wanted, which is why the shelves on local history and gardening were so much longer "
    "than anyone had planned."
)
NEW_TOKENS = 24


@dataclass(frozen=True, slots=True)
class Fidelity:
    size_bytes: int
    decode_tokens_per_s: float
    greedy_agreement: float
    perplexity: float

    def as_metrics(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


class DecoderSession:
    """One ONNX Runtime session over an exported decoder and its KV cache inputs."""

    def __init__(self, model_file: Path, threads: int = 2) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self.names = [value.name for value in self.session.get_inputs()]
        self.past_shapes = [
            (value.shape[1], value.shape[3])
            for value in self.session.get_inputs()
            if value.name.startswith("past_key_values.")
        ]

    def forward(
        self, ids: list[int], past: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits [len(ids), vocab] of one sequence continuing ``past``, and the new cache."""
        if past is None:
            past = [np.zeros((1, heads, 0, dim), np.float32) for heads, dim in self.past_shapes]
        offset = past[0].shape[2]
        total = offset + len(ids)
        feeds = [
            np.array([ids], dtype=np.int64),
            np.ones((1, total), dtype=np.int64),
            np.arange(offset, total, dtype=np.int64)[None],
            *past,
        ]
        outputs = self.session.run(None, dict(zip(self.names, feeds, strict=True)))
        return outputs[0][0], outputs[1:]

    def greedy(self, prompt: list[int], new_tokens: int) -> list[int]:
        logits, past = self.forward(prompt)
        generated = [int(logits[-1].argmax())]
        while len(generated) < new_tokens:
            logits, past = self.forward(generated[-1:], past)
            generated.append(int(logits[-1].argmax()))
        return generated


def greedy_agreement(
    reference: DecoderSession, variant: DecoderSession, prompts: list[list[int]]
) -> float:
    agreed = total = 0
    for prompt in prompts:
        expected = reference.greedy(prompt, NEW_TOKENS)
        logits, _ = variant.forward(prompt + expected[:-1])
        predicted = logits[len(prompt) - 1 :].argmax(-1)
        agreed += int((predicted == np.array(expected)).sum())
        total += len(expected)
    return agreed / total


def perplexity(session: DecoderSession, ids: list[int]) -> float:
    logits, _ = session.forward(ids)
    shifted = logits[:-1].astype(np.float64)
    log_norm = np.log(np.exp(shifted - shifted.max(-1, keepdims=True)).sum(-1))
    log_probs = shifted[np.arange(len(ids) - 1), ids[1:]] - shifted.max(-1) - log_norm
    return float(np.exp(-log_probs.mean()))


def decode_tokens_per_s(session: DecoderSession, prompt: list[int], steps: int = 32) -> float:
    logits, past = session.forward(prompt)
    token = int(logits[-1].argmax())
    started = time.perf_counter()
    for _ in range(steps):
        logits, past = session.forward([token], past)
        token = int(logits[-1].argmax())
    return steps / (time.perf_counter() - started)


def model_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("model.onnx*"))


def measure(reference_folder: Path, variant_folder: Path) -> Fidelity:
    """The variant's fidelity against the float32 reference (both version folders)."""
    tokenizer = Tokenizer.from_file(str(reference_folder / "tokenizer.json"))
    prompts = [tokenizer.encode(text).ids for text in PROMPTS]
    reference = DecoderSession(reference_folder / "model.onnx")
    variant = (
        reference
        if variant_folder == reference_folder
        else DecoderSession(variant_folder / "model.onnx")
    )
    return Fidelity(
        size_bytes=model_size(variant_folder),
        decode_tokens_per_s=decode_tokens_per_s(variant, prompts[0]),
        greedy_agreement=greedy_agreement(reference, variant, prompts),
        perplexity=perplexity(variant, tokenizer.encode(HELD_TEXT).ids),
    )
