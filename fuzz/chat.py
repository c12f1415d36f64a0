"""What the chat-template and tokenizer targets need: a small byte-level BPE tokenizer
trained in-process (no download, no torch), real chat templates, and messages decoded
from fuzzer bytes."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from aiaas.serve.llm.tokenizer import ChatTokenizer

# tests/tiny_tokenizer.py: the tokenizer the tests' tiny Llama has, on a corpus of its own.
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_tokenizer import train_tokenizer

#: ChatML (SmolLM2's shape), Llama 3's, and one that polices roles with raise_exception.
TEMPLATES = [
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{{ '[' + message['role'] | upper + '] ' + message['content'] + eos_token }}{% endfor %}",
]
_ROLES = ("system", "developer", "user", "assistant", "tool")
_CORPUS = [
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog.",
    "def add(a, b): return a + b  # 0123456789 !?.,;: gr\u00fc\u00dfe \u65e5\u672c \U0001f600",
] * 10


@functools.cache
def _trained() -> Tokenizer:
    return train_tokenizer(_CORPUS)


@functools.lru_cache(maxsize=64)
def tokenizer(template: str) -> ChatTokenizer:
    return ChatTokenizer(
        _trained(),
        chat_template=template,
        bos_token_id=0,
        add_bos_token=True,
        special_tokens={"bos": "<|endoftext|>", "eos": "<|im_end|>"},
    )


def messages(data: bytes) -> list[dict[str, Any]]:
    """Messages as the OpenAI front end hands them to a template: byte 0 of each chunk
    (chunks split at 0x01) picks the role, the rest is its content."""
    found = []
    for chunk in data.split(b"\x01"):
        if not chunk:
            continue
        content = chunk[1:].decode("utf-8", errors="replace")
        found.append({"role": _ROLES[chunk[0] % len(_ROLES)], "content": content})
    return found
