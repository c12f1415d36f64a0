"""Text <-> token ids for a language model, and its chat template.

The tokenizer is the `tokenizers` file written beside the model; the chat template
is the model's own jinja2 text, rendered in a sandbox as Hugging Face renders it
(trim_blocks, lstrip_blocks, `raise_exception`), so prompts match the model's training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from aiaas.errors import InvalidArgument

#: What rendering a template can raise for the messages it is given: jinja's errors, and
#: the plain Python ones its expressions raise (``'a' + 1``, ``1 / 0``, a recursive
#: macro). vLLM answers the same set with 400.
_RENDER_ERRORS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    ArithmeticError,
    LookupError,
    RecursionError,
)


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def _raise_exception(message: str) -> None:
    raise InvalidArgument(f"chat template: {message}")


class ChatTokenizer:
    """Encoding, decoding and chat formatting for one model."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        chat_template: str | None,
        bos_token_id: int | None,
        add_bos_token: bool,
        special_tokens: Mapping[str, str | None],
    ) -> None:
        self._tokenizer = tokenizer
        self.bos_token_id = bos_token_id
        self.add_bos_token = add_bos_token
        self.special_tokens = dict(special_tokens)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        environment.globals["raise_exception"] = _raise_exception
        try:
            self._template = environment.from_string(chat_template) if chat_template else None
        except (jinja2.TemplateError, RecursionError) as error:
            raise InvalidArgument(f"chat template does not parse: {_describe(error)}") from None

    @classmethod
    def from_files(cls, tokenizer_json: Path, generation: Mapping[str, Any]) -> ChatTokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as error:  # tokenizers raises untyped errors
            raise InvalidArgument(f"{tokenizer_json.name} is not a tokenizer: {error}") from None
        return cls(
            tokenizer,
            chat_template=generation.get("chat_template"),
            bos_token_id=generation.get("bos_token_id"),
            add_bos_token=bool(generation.get("add_bos_token", False)),
            special_tokens=generation.get("special_tokens") or {},
        )

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids; with special tokens, the BOS the model expects (once) in front."""
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        bos = self.bos_token_id
        if bos is not None and add_special_tokens and self.add_bos_token and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_text(self, token_id: int) -> str:
        """One token as text, special tokens included (for logprobs)."""
        return str(self._tokenizer.decode([token_id], skip_special_tokens=False))

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for a conversation, in the model's own format."""
        if self._template is None:
            raise InvalidArgument("this model has no chat template; use /v1/completions")
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.special_tokens.get("bos") or "",
                eos_token=self.special_tokens.get("eos") or "",
            )
        except _RENDER_ERRORS as error:
            raise InvalidArgument(
                f"chat template failed on these messages: {_describe(error)}"
            ) from None
