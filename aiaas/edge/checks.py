"""What a downloaded version must pass before the agent serves it: the bundle's manifest
and signature, the onnxruntime it needs, and one inference on a sample input.

The sample is what the server will send: a language model (generation.json beside it)
gets a short tokenized prompt with an empty past, one step, and must answer finite
logits of its vocabulary's size; an embedding model gets a few token ids; any other
model zeros.

Every failure is a `BundleRejected` with one line saying why; the agent refuses the
version and keeps serving the last good one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from packaging.version import InvalidVersion, Version

from aiaas.edge import manifest
from aiaas.edge.manifest import BundleRejected
from aiaas.errors import InvalidArgument

MODEL_FILE = "model.onnx"
GENERATION_FILE = "generation.json"
TOKENIZER_FILE = "tokenizer.json"
#: The language model's sample: a short prompt, tokenized with the version's tokenizer.
SAMPLE_PROMPT = "The capital of France is"
#: What an embedding model reads: token ids, their mask, BERT's segment ids.
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: ONNX Runtime's type strings -> numpy dtypes, for building a sample input.
_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def check_version(folder: Path, public_key: Path | None) -> dict[str, Any] | None:
    """All checks on a staged version folder; returns its bundle manifest, if it has one.
    With a key, only a signed bundle passes; without one, a plain registry version does
    (its files were already checked against the registry's sha256s)."""
    bundle = (folder / manifest.MANIFEST).is_file()
    found = None
    if public_key is not None and not bundle:
        raise BundleRejected(f"not a signed bundle (no {manifest.MANIFEST}) and a key was given")
    if bundle:
        try:
            found = manifest.verify(folder, public_key)
        except BundleRejected as error:  # the staging path says nothing to the reader
            message = error.message.replace(f"{folder}: ", "").replace(f"{folder} ", "it ")
            raise BundleRejected(message) from None
        check_onnxruntime(found.get("min_onnxruntime"))
    sample_inference(folder / MODEL_FILE)
    return found


def check_onnxruntime(minimum: object) -> None:
    if minimum is None:
        return
    try:
        needed = Version(str(minimum))
    except InvalidVersion:
        raise BundleRejected(f"min_onnxruntime {minimum!r} is not a version") from None
    if Version(ort.__version__) < needed:
        raise BundleRejected(f"needs onnxruntime >= {needed}, this device has {ort.__version__}")


def sample_inference(model: Path) -> None:
    """Load the model as the server will and run it once on the input the server will
    give it: a model that cannot answer never goes live."""
    if not model.is_file():
        raise BundleRejected(f"no {MODEL_FILE} at the top of the version")
    folder = model.parent
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        if (folder / GENERATION_FILE).is_file():
            _language_model_step(session, folder)
            return
        inputs = session.get_inputs()
        if (folder / TOKENIZER_FILE).is_file() and {i.name for i in inputs} <= set(_TEXT_INPUTS):
            feeds = _token_feeds(inputs, np.arange(1, 5, dtype=np.int64)[None, :])
        else:
            feeds = {item.name: _zeros(item) for item in inputs}
        session.run(None, feeds)
    except BundleRejected:
        raise
    except Exception as error:  # ONNX Runtime raises its own untyped errors
        text = str(error).strip()
        first = text.splitlines()[0][:240] if text else type(error).__name__
        raise BundleRejected(f"the sample inference failed: {first}") from None


def _language_model_step(session: ort.InferenceSession, folder: Path) -> None:
    """One prefill step as the engine runs it: the prompt, its mask and positions, and
    an empty past per layer; the logits must be finite and as wide as the vocabulary."""
    from aiaas.serve.llm.model import read_generation_config

    try:
        generation = read_generation_config(folder / GENERATION_FILE)
    except InvalidArgument as error:
        raise BundleRejected(error.message) from None
    ids = _prompt_ids(folder)
    if ids.max() >= generation.vocab_size:
        raise BundleRejected(
            f"{GENERATION_FILE} says vocab_size {generation.vocab_size}, "
            f"but the tokenizer gives token id {int(ids.max())}"
        )
    length = ids.shape[1]
    feeds: dict[str, np.ndarray] = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "position_ids": np.arange(length, dtype=np.int64)[None, :],
    }
    types = {item.name: item.type for item in session.get_inputs()}
    for layer in range(generation.num_layers):
        for kind in ("key", "value"):
            name = f"past_key_values.{layer}.{kind}"
            dtype = _DTYPES.get(types.get(name, ""), np.float32)
            shape = (1, generation.num_key_value_heads, 0, generation.head_dim)
            feeds[name] = np.zeros(shape, dtype=dtype)
    missing = sorted(set(feeds) - set(types))
    if missing:
        raise BundleRejected(f"the language model has no input {missing[0]!r}")
    unfed = sorted(set(types) - set(feeds))
    if unfed:
        raise BundleRejected(f"the language model has input {unfed[0]!r}, which no engine feeds")
    (logits,) = session.run(["logits"], feeds)
    expected = (1, length, generation.vocab_size)
    if tuple(logits.shape) != expected:
        raise BundleRejected(
            f"the sample step's logits have shape {list(logits.shape)}, expected "
            f"{list(expected)} ({GENERATION_FILE}'s vocab_size)"
        )
    if not np.isfinite(logits).all():
        raise BundleRejected("the sample step's logits are not finite (NaN or infinity)")


def _prompt_ids(folder: Path) -> np.ndarray:
    """SAMPLE_PROMPT's token ids, [1, n]; a few fixed ids when there is no tokenizer."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        return np.arange(1, 5, dtype=np.int64)[None, :]
    from tokenizers import Tokenizer

    try:
        ids = Tokenizer.from_file(str(path)).encode(SAMPLE_PROMPT).ids
    except Exception as error:  # tokenizers raises its own untyped errors
        raise BundleRejected(f"{TOKENIZER_FILE} cannot be read: {error}") from None
    return np.asarray([ids or [0]], dtype=np.int64)


def _token_feeds(inputs: list[Any], ids: np.ndarray) -> dict[str, np.ndarray]:
    values = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
    return {
        item.name: values[item.name].astype(_DTYPES.get(item.type, np.int64)) for item in inputs
    }


def _zeros(item: Any) -> np.ndarray:
    dtype = _DTYPES.get(item.type)
    if dtype is None:
        raise BundleRejected(f"input {item.name!r} has type {item.type}, which we cannot sample")
    shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in item.shape]
    if dtype is np.object_:
        return np.full(shape, "", dtype=np.object_)
    return np.zeros(shape, dtype=dtype)
