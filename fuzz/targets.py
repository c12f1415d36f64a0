"""The parsers a client or a model folder feeds, as fuzz targets: bytes in, and either a
result or one of our clean errors (``AiaasError``) out. Anything else escaping a
target is a bug: it would be a 500 and a traceback in the log, or a crashed load.

Shared by the atheris harnesses (``python -m fuzz <target>``) and the pytest tests that
replay ``fuzz/corpus/<target>/`` through the same functions.
"""

from __future__ import annotations

import contextlib
import functools
import struct
from collections.abc import Callable

import numpy as np
import orjson

from aiaas import tensors
from aiaas.errors import AiaasError
from aiaas.registry import uri
from aiaas.serve import config, serving_config
from aiaas.serve.protocol import http_encoding, openai_schema, rest_codec
from aiaas.tensors import TensorSpec
from fuzz import chat

Target = Callable[[bytes], None]
#: Small enough that a fuzzed gzip bomb is refused quickly, as the server refuses it.
_BODY_LIMIT = 1 << 20
_CODINGS = (None, "gzip", "deflate", "identity", "br")
_MODEL_INPUTS = (TensorSpec("INPUT0", "FP32", (-1, 4)), TensorSpec("TEXT", "BYTES", (-1, -1)))
_MODEL_OUTPUTS = (TensorSpec("OUTPUT0", "FP32", (-1, 4)),)


def _clean(target: Target) -> Target:
    """Our error types are the expected answer to bad input; they end the run quietly."""

    @functools.wraps(target)
    def run(data: bytes) -> None:
        with contextlib.suppress(AiaasError):
            target(data)

    return run


@_clean
def binary_tensor(data: bytes) -> None:
    """An infer body with the binary extension: byte 0 picks the content coding, bytes
    1-4 the Inference-Header-Content-Length (or none), the rest is the body."""
    if len(data) < 5:
        return
    coding = _CODINGS[data[0] % len(_CODINGS)]
    (length,) = struct.unpack_from("<I", data, 1)
    body = http_encoding.decode_body(data[5:], coding, _BODY_LIMIT)
    header_length = None if length == 0xFFFFFFFF else length % (len(body) + 2)
    request = rest_codec.decode_infer_request(body, header_length)
    for item in request.inputs:
        _check_decoded(item.data, item.datatype, item.shape)


def json_tensor(data: bytes) -> None:
    """A JSON infer body; every decoded tensor survives the JSON and raw round trips
    (a clean error there is a bug too: what we decoded, we must encode)."""
    try:
        request = rest_codec.decode_infer_request(data)
        rest_codec.wants_binary(request, "OUTPUT0")
    except AiaasError:
        return
    for item in request.inputs:
        if item.data.size == 0 and item.parameters:
            continue  # a shared-memory placeholder: its data is in the region
        _check_decoded(item.data, item.datatype, item.shape)
        again = tensors.from_json_data(
            tensors.to_json_data(item.data), item.datatype, item.shape, "round trip"
        )
        _assert_same(item.data, again)
        raw = tensors.from_raw(tensors.to_raw(item.data), item.datatype, item.shape, "raw")
        _assert_same(item.data, raw)


def _check_decoded(array: np.ndarray, datatype: str, shape: tuple[int, ...]) -> None:
    assert array.shape == tuple(shape), (array.shape, shape)
    expected = tensors.numpy_dtype(datatype)
    assert array.dtype.newbyteorder("=") == expected, (array.dtype, datatype)


def _assert_same(left: np.ndarray, right: np.ndarray) -> None:
    if left.dtype.kind == "O":
        assert [bytes(x) for x in left.reshape(-1)] == [bytes(x) for x in right.reshape(-1)]
    else:
        np.testing.assert_array_equal(left, right)


@_clean
def config_pbtxt(data: bytes) -> None:
    """A config.pbtxt as a model folder carries it, completed against a fixed model."""
    parsed = config.parse_pbtxt(data.decode("utf-8", errors="replace"))
    completed = config.complete(parsed, "model", _MODEL_INPUTS, _MODEL_OUTPUTS)
    serving_config.serving_config(completed)
    orjson.dumps(config.to_json_dict(completed))


@_clean
def config_json(data: bytes) -> None:
    """The JSON form a load request's 'config' parameter carries."""
    parsed = config.parse_json(data.decode("utf-8", errors="replace"))
    completed = config.complete(parsed, "model", _MODEL_INPUTS, _MODEL_OUTPUTS)
    serving_config.serving_config(completed)


@_clean
def registry_uri(data: bytes) -> None:
    """`models:/` URIs, names, aliases and versions; a parsed URI prints back as itself."""
    text = data.decode("utf-8", errors="replace")
    try:
        parsed = uri.parse_uri(text)
    except AiaasError:
        pass
    else:
        assert uri.parse_uri(str(parsed)) == parsed, (text, str(parsed))
    for check in (uri.check_name, uri.check_alias, uri.parse_version, uri.parse_version_uri):
        with contextlib.suppress(AiaasError):
            check(text)


@_clean
def chat_template(data: bytes) -> None:
    """A chat template (before the first NUL) rendered for fuzzed messages (after it);
    byte 0 picks a real template instead when the input holds no NUL."""
    if not data:
        return
    template, _, rest = data.partition(b"\x00")
    if not rest:
        template, rest = chat.TEMPLATES[data[0] % len(chat.TEMPLATES)].encode(), data[1:]
    tokenizer = chat.tokenizer(template.decode("utf-8", errors="replace"))
    messages = chat.messages(rest)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=bool(len(rest) % 2))
    tokenizer.encode(text, add_special_tokens=False)


@_clean
def tokenizer_input(data: bytes) -> None:
    """A completions body as the OpenAI front end parses it, each prompt tokenized and
    decoded back as the engine does."""
    body = openai_schema.parse(openai_schema.CompletionRequest, data)
    tokenizer = chat.tokenizer(chat.TEMPLATES[0])
    for prompt in body.prompts():
        ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        in_vocab = [token for token in ids if 0 <= token < tokenizer.vocab_size]
        tokenizer.decode(in_vocab)
        for token in in_vocab[:16]:
            tokenizer.token_text(token)


TARGETS: dict[str, Target] = {
    "binary_tensor": binary_tensor,
    "json_tensor": json_tensor,
    "config_pbtxt": config_pbtxt,
    "config_json": config_json,
    "registry_uri": registry_uri,
    "chat_template": chat_template,
    "tokenizer_input": tokenizer_input,
}
