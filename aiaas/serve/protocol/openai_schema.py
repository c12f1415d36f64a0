"""The OpenAI request bodies this server accepts, as pydantic models.

Only what a field means here is declared; fields the OpenAI clients send that do not
change the answer (``user``, ``metadata``) are ignored, as vLLM does. A wrong value
becomes a 400 naming the field (see ``validation_error``), the shape OpenAI answers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aiaas.serve.protocol.openai_errors import OpenAIError

MAX_LOGPROBS = 20
MAX_EMBEDDING_INPUTS = 2048

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    """What completions and chat share: sampling, stop strings, n, streaming."""

    model: str
    n: int = Field(default=1, ge=1, le=128)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    #: vLLM's extra: 0 or -1 turns it off.
    top_k: int = Field(default=0, ge=-1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    #: vLLM's extra, for benchmarks that want a fixed answer length.
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @model_validator(mode="after")
    def _checked(self) -> _Sampling:
        if self.stream_options is not None and not self.stream:
            raise _field_error("stream_options", "is only allowed when 'stream' is true")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) != 0.0:
                raise _field_error(name, "is not supported by this server (only 0)")
        return self

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(stop for stop in stops if stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    #: OpenAI's default for the legacy completions endpoint.
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _supported(self) -> CompletionRequest:
        if self.echo:
            raise _field_error("echo", "is not supported by this server")
        if self.suffix:
            raise _field_error("suffix", "is not supported by this server")
        if self.best_of is not None and self.best_of != self.n:
            raise _field_error("best_of", "is only supported equal to 'n'")
        if self.prompt == [] or self.prompt == "":
            raise _field_error("prompt", "must not be empty")
        if isinstance(self.prompt, list) and any(p == [] or p == "" for p in self.prompt):
            raise _field_error("prompt", "must not contain an empty prompt")
        return self

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: a text or a list of token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(item, int) for item in prompt):
            return [list(prompt)]  # type: ignore[arg-type]
        return list(prompt)  # type: ignore[arg-type]


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def as_template_input(self) -> dict[str, Any]:
        """The plain dict a chat template expects: text parts joined into one string."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        message: dict[str, Any] = {"role": self.role, "content": content or ""}
        if self.name is not None:
            message["name"] = self.name
        return message


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)

    @model_validator(mode="after")
    def _logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise _field_error("top_logprobs", "needs 'logprobs' set to true")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    def texts(self) -> list[str]:
        items: list[Any] = [self.input] if isinstance(self.input, str) else [*self.input]
        if not items or len(items) > MAX_EMBEDDING_INPUTS:
            raise OpenAIError.invalid(
                f"'input' must hold 1 to {MAX_EMBEDDING_INPUTS} items", param="input"
            )
        if not all(isinstance(item, str) for item in items):
            raise OpenAIError.invalid("'input' as token ids is not supported", param="input")
        if any(not item for item in items):
            raise OpenAIError.invalid("'input' must not contain an empty string", param="input")
        return items


Body = TypeVar("Body", bound=BaseModel)


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"'{field}' {message}")
        self.field = field


def _field_error(field: str, message: str) -> _FieldError:
    return _FieldError(field, message)


def parse(model: type[Body], body: bytes) -> Body:
    """The body as ``model``, or OpenAI's 400 naming the first wrong field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise validation_error(error) from None


def validation_error(error: ValidationError) -> OpenAIError:
    first = error.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, _FieldError):
        return OpenAIError.invalid(str(cause), param=cause.field)
    location = [str(part) for part in first["loc"]]
    if first["type"] == "json_invalid":
        return OpenAIError.invalid(f"the body is not valid JSON: {first['msg']}")
    if not location:
        return OpenAIError.invalid(f"the body is not a valid request: {first['msg']}")
    field = location[0]
    where = ".".join(location)
    return OpenAIError.invalid(f"'{where}': {first['msg']}", param=field)
