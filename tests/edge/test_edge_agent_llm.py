"""`aiaas edge agent` following aliases whose versions are text models: language-model
bundles of the tiny Llama (checked with one prefill step, then served on /v1/completions
as the main server serves them) and an embedding bundle (served on /v1/embeddings).
Real registry server, real agent subprocesses, real HTTP and gRPC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from edge_agent_support import AgentProcess, RegistryServer, wait_until
from edge_support import aiaas, write_embedding_repo
from ports import free_port
from tiny_llama import write_tiny_llama

from aiaas.edge import manifest
from aiaas.edge.checks import check_version
from aiaas.edge.manifest import BundleRejected
from aiaas.registry import Registry

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def repo(module_tmp: Path) -> Path:
    """Two tiny Llamas with different seeds (their greedy texts differ) and an embedder."""
    folder = module_tmp / "repo"
    write_tiny_llama(folder, "tiny-a", 1, seed=0)
    write_tiny_llama(folder, "tiny-b", 1, seed=1)
    write_embedding_repo(folder)
    return folder


@pytest.fixture(scope="module")
def bundles(repo: Path, module_tmp: Path) -> dict[str, Path]:
    """`aiaas edge bundle` of each model folder, as a user makes them."""
    made = {}
    for name in ("tiny-a", "tiny-b", "words"):
        out = module_tmp / "bundles" / name
        result = aiaas("edge", "bundle", repo / name, "--out", out, "--no-measure")
        assert result.returncode == 0, result.stderr
        made[name] = out
    return made


@pytest.fixture(scope="module")
def registry_paths(module_tmp: Path) -> tuple[str, str]:
    return f"sqlite:///{module_tmp / 'registry.db'}", str(module_tmp / "artifacts")


@pytest.fixture(scope="module")
def registry_server(registry_paths: tuple[str, str], module_tmp: Path):
    started = RegistryServer(*registry_paths, module_tmp)
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def main_server(repo: Path, module_server):
    """The main server over the source folders: what the device must answer alike."""
    return module_server(repo)


@pytest.fixture
def agents(tmp_path: Path):
    started: list[AgentProcess] = []

    def start(url: str, name: str, *flags: str, uri: str) -> AgentProcess:
        agent = AgentProcess(url, tmp_path / "devices" / name, *flags, uri=uri)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def register(paths: tuple[str, str], name: str, folder: Path) -> int:
    """`aiaas models register NAME BUNDLE_DIR`, then the alias `production` moved to it."""
    env = {"AIAAS_REGISTRY_URI": paths[0], "AIAAS_ARTIFACT_ROOT": paths[1]}
    result = aiaas("models", "register", name, folder, "--json", env=env)
    assert result.returncode == 0, result.stderr
    version = int(json.loads(result.stdout)["version"])
    with Registry.open(*paths) as registry:
        registry.set_alias(name, "production", version)
    return version


def completion(url: str, model: str) -> dict:
    body = {"model": model, "prompt": PROMPT, "max_tokens": 12, "temperature": 0}
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def served_text(agent: AgentProcess) -> str:
    return completion(agent.url, "tiny")["choices"][0]["text"]


def wait_state(agent: AgentProcess, what: str, condition) -> dict:
    def met() -> dict | None:
        state = agent.state()
        return state if condition(state) else None

    return wait_until(met, what)


def rebundled(source: Path, out: Path, change) -> Path:
    """A copy of a bundle with `change(folder)` applied and a manifest that matches it:
    every hash is right, only the model is wrong."""
    shutil.copytree(source, out)
    change(out)
    fields = json.loads((out / manifest.MANIFEST).read_text())
    for key in ("format", "files"):
        fields.pop(key)
    manifest.write_manifest(out, fields)
    return out


def wrong_vocab(folder: Path) -> None:
    generation = json.loads((folder / "generation.json").read_text())
    generation["vocab_size"] += 7
    (folder / "generation.json").write_text(json.dumps(generation))


def nan_head(folder: Path) -> None:
    """NaN in the output projection: every step's logits hold a NaN column."""
    model = onnx.load(str(folder / "model.onnx"))
    vocab = json.loads((folder / "generation.json").read_text())["vocab_size"]
    head = next(t for t in model.graph.initializer if list(t.dims)[1:] == [vocab])
    array = onnx.numpy_helper.to_array(head).copy()
    array.flat[0] = np.nan
    head.CopyFrom(onnx.numpy_helper.from_array(array, head.name))
    onnx.save(model, str(folder / "model.onnx"))


def test_language_model_bundles_follow_the_alias_and_answer_as_the_main_server(
    bundles, registry_paths, registry_server, main_server, agents, tmp_path
):
    expected = {name: completion(main_server.url, name)["choices"][0]["text"]
                for name in ("tiny-a", "tiny-b")}  # fmt: skip
    assert expected["tiny-a"] != expected["tiny-b"]
    assert register(registry_paths, "tiny", bundles["tiny-a"]) == 1
    device = agents(registry_server.url, "llm", uri="models:/tiny@production")

    wait_state(device, "version 1 serving", lambda s: (s["version"], s["state"]) == (1, "serving"))
    assert served_text(device) == expected["tiny-a"]

    assert register(registry_paths, "tiny", bundles["tiny-b"]) == 2
    wait_until(lambda: served_text(device) == expected["tiny-b"], "the device on version 2")
    answer = completion(device.url, "tiny")
    assert answer["model"] == "tiny"
    assert answer["usage"] == completion(main_server.url, "tiny-b")["usage"]
    assert device.state()["version"] == 2

    # Hashes right, model wrong: each is refused by the sample step, version 2 serving.
    for number, change, reason in ((3, wrong_vocab, "vocab_size"), (4, nan_head, "not finite")):
        folder = rebundled(bundles["tiny-b"], tmp_path / f"bad-{number}", change)
        assert register(registry_paths, "tiny", folder) == number
        state = wait_state(
            device, f"version {number} refused", lambda s, n=number: f"tiny/{n}" in s["refused"]
        )
        assert state["state"] == "refused"
        assert state["version"] == 2
        error = state["last_error"]
        assert error.startswith(f"refused models:/tiny/{number}: ")
        assert reason in error
        assert "\n" not in error
        assert error.endswith("still serving models:/tiny/2")
        assert served_text(device) == expected["tiny-b"]
    assert sorted(p.name for p in (device.directory / "versions").iterdir()) == ["1", "2"]
    assert not list(device.directory.glob("staging-*"))
    # SIGTERM (as Ctrl-C) with a language-model engine running: a clean stop.
    assert device.stop() == 0, device.logs()


def test_embedding_bundle_serves_embeddings_and_grpc_when_asked(
    bundles, registry_paths, registry_server, main_server, agents
):
    assert register(registry_paths, "words", bundles["words"]) == 1
    grpc_port = free_port()
    device = agents(
        registry_server.url, "words", "--grpc-port", str(grpc_port), uri="models:/words@production"
    )
    wait_state(device, "version 1 serving", lambda s: (s["version"], s["state"]) == (1, "serving"))

    texts = ["the cat sat on a mat", "a dog ran"]
    on_device = httpx.post(
        f"{device.url}/v1/embeddings", json={"model": "words", "input": texts}, timeout=30
    )
    assert on_device.status_code == 200, on_device.text
    served = httpx.post(
        f"{main_server.url}/v1/embeddings", json={"model": "words", "input": texts}, timeout=30
    ).json()
    np.testing.assert_allclose(
        [item["embedding"] for item in on_device.json()["data"]],
        [item["embedding"] for item in served["data"]],
        rtol=1e-6,
    )

    # The same device answers V2 over gRPC, as --grpc-port asked.
    with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
        assert client.is_model_ready("words")
        ids = grpcclient.InferInput("input_ids", [1, 2], "INT64")
        ids.set_data_from_numpy(np.array([[3, 4]], dtype=np.int64))
        mask = grpcclient.InferInput("attention_mask", [1, 2], "INT64")
        mask.set_data_from_numpy(np.ones((1, 2), dtype=np.int64))
        result = client.infer("words", [ids, mask])
    vector = result.as_numpy("embedding")
    first = httpx.post(
        f"{main_server.url}/v1/embeddings", json={"model": "words", "input": "cat sat"}, timeout=30
    ).json()
    np.testing.assert_allclose(vector[0], first["data"][0]["embedding"], rtol=1e-6)


def test_the_check_runs_one_prefill_step_of_a_language_model(bundles, tmp_path):
    """check_version on a staged language-model bundle: the good one passes, a wrong
    vocab_size and NaN logits are each one line."""
    assert check_version(bundles["tiny-a"], None)["task"] == "text-generation"
    for name, change, reason in (("vocab", wrong_vocab, "vocab_size"), ("nan", nan_head, "NaN")):
        folder = rebundled(bundles["tiny-a"], tmp_path / name, change)
        with pytest.raises(BundleRejected) as refused:
            check_version(folder, None)
        assert reason in refused.value.message
        assert "\n" not in refused.value.message
