"""A tiny random Llama folder built once per session, and engines over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_fixtures import smollm2_version
from tiny_llama import EngineFactory, write_tiny_llama

from aiaas.serve.llm.engine import LLMEngine
from aiaas.serve.llm.model import load_language_model
from aiaas.serve.runtimes.onnx import OnnxModel
from aiaas.serve.serving_config import RuntimeOptions

__all__ = ["smollm2_version"]

#: Long enough that a request started after another's first token joins long before it ends.
TINY_CONTEXT = 4096


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("tiny-repo")
    write_tiny_llama(repo, "tiny", 1, context_length=TINY_CONTEXT)
    return repo


@pytest.fixture(scope="session")
def tiny_dir(tiny_repo: Path) -> Path:
    return tiny_repo / "tiny" / "1"


@pytest.fixture
def make_engine(tiny_dir: Path) -> EngineFactory:
    """make_engine(**config parameters) -> an engine over the tiny model (close it in the test)."""

    def make(**parameters: object) -> LLMEngine:
        runtime = OnnxModel(tiny_dir / "model.onnx", RuntimeOptions(1, 1, 1, 0))
        model = load_language_model(tiny_dir, runtime, {k: str(v) for k, v in parameters.items()})
        return LLMEngine(model, model_name="tiny", model_version="1")

    return make
