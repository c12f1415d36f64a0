"""Language models in the model repository: loaded as engines, swapped and unloaded
without losing a running generation, refused on V2 infer, visible in metadata and metrics."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest
from generation import collect, greedy
from prometheus_client.parser import text_string_to_metric_families

from aiaas.errors import InvalidArgument, NotFound
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.sources import DirectorySource

PROMPT = "The capital of France is"


def _repository(tiny_repo: Path, tmp_path: Path) -> tuple[ModelRepository, Path]:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    return ModelRepository([DirectorySource(repo)], ControlMode.EXPLICIT), repo / "tiny"


def test_a_new_version_takes_new_requests_while_the_old_one_finishes_its_own(
    tiny_repo: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        repository, model = _repository(tiny_repo, tmp_path)
        await repository.start(["tiny"])
        try:
            assert repository.llm_model_names() == ["tiny"]
            old = repository.llm_engine("tiny")
            stream = old.generate(PROMPT, greedy(400), "running")
            first = await anext(stream)
            shutil.copytree(model / "1", model / "2")
            await repository.load("tiny")
            new = repository.llm_engine("tiny")
            assert (old.model_version, new.model_version) == ("1", "2")
            answer = await collect(new, PROMPT, greedy(5))
            assert answer.finish_reason == "length"
            rest = [delta async for delta in stream]
            assert len(first.token_ids) + sum(len(d.token_ids) for d in rest) == 400
            assert rest[-1].finish_reason == "length"
            with pytest.raises(NotFound):
                repository.llm_engine("tiny", "1")
        finally:
            await repository.close()

    asyncio.run(scenario())


def test_unloading_lets_a_running_generation_finish_and_then_forgets_the_model(
    tiny_repo: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        repository, _ = _repository(tiny_repo, tmp_path)
        await repository.start(["tiny"])
        try:
            engine = repository.llm_engine("tiny")
            stream = engine.generate(PROMPT, greedy(200), "running")
            await anext(stream)
            await repository.unload("tiny")
            rest = [delta async for delta in stream]
            assert rest[-1].finish_reason == "length"
            assert rest[-1].completion_tokens == 200
            with pytest.raises(NotFound):
                repository.llm_engine("tiny")
            assert repository.llm_model_names() == []
        finally:
            await repository.close()

    asyncio.run(scenario())


def test_the_server_serves_metadata_refuses_v2_infer_and_exports_engine_metrics(
    tiny_repo: Path, start_server
) -> None:
    server = start_server(tiny_repo)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/models/tiny/ready").status_code == 200
        metadata = client.get("/v2/models/tiny").json()
        assert "input_ids" in {tensor["name"] for tensor in metadata["inputs"]}
        body = {"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1, 1],
                            "data": [1]}]}  # fmt: skip
        refused = client.post("/v2/models/tiny/infer", json=body)
        assert refused.status_code == 400
        assert "/v1/completions" in refused.json()["error"]
        families = {
            family.name: family
            for family in text_string_to_metric_families(client.get("/metrics").text)
        }
    labels = {"model": "tiny", "version": "1"}
    for name in ("aiaas_num_requests_running", "aiaas_num_requests_waiting",
                 "aiaas_kv_cache_usage_perc"):  # fmt: skip
        [sample] = families[name].samples
        assert sample.labels == labels
        assert sample.value == 0
    assert "aiaas_time_to_first_token_seconds" in families
    assert "aiaas_request_success" in families
    assert "aiaas_generation_tokens" in families


def test_a_text_generation_folder_without_its_tokenizer_fails_to_load_and_says_why(
    tiny_repo: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        repository, model = _repository(tiny_repo, tmp_path)
        (model / "1" / "tokenizer.json").unlink()
        try:
            with pytest.raises(InvalidArgument, match=r"needs tokenizer\.json"):
                await repository.load("tiny")
            assert repository.llm_model_names() == []
            assert "needs tokenizer.json" in repository.index()[0]["reason"]
        finally:
            await repository.close()

    asyncio.run(scenario())
