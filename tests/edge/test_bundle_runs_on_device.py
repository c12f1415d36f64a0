"""A bundle runs on a device that has only onnxruntime and numpy (and tokenizers for text
models) — no aiaas, no torch — and answers as the server answers from the same model."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from edge_support import DevicePython, aiaas, write_embedding_repo

PROMPT = "def add(a, b)"


@pytest.fixture(scope="module")
def tiny_bundle(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama's fp32 bundle, made once: the tests below only read and run it."""
    out = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    result = aiaas("edge", "bundle", tiny_repo / "tiny", "--out", out, "--no-measure")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def tiny_server(tiny_repo: Path, module_server):
    """The server over the same tiny Llama, whose answers the device must repeat."""
    return module_server(tiny_repo)


def test_digits_bundle_answers_as_the_server_on_a_bare_device(
    digits_repo: Path, device: DevicePython, bundle, start_server, tmp_path: Path
) -> None:
    folder = bundle(digits_repo / "digits", "--no-measure")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["task"] == "tensor"
    assert manifest["variant"] == "fp32"
    assert manifest["labels_file"] == "labels.txt"
    assert manifest["signature"]["inputs"][0]["name"] == "input"
    x = np.random.default_rng(1).uniform(0, 16, (3, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    ran = device.run(
        folder / "run.py", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz"
    )

    assert ran.returncode == 0, ran.stderr
    assert "labels: digit_" in ran.stdout
    on_device = np.load(tmp_path / "y.npz")["probabilities"]
    server = start_server(digits_repo)
    body = {
        "inputs": [
            {"name": "input", "shape": [3, 64], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    answer = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=30).json()
    served = np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(3, 10)
    np.testing.assert_allclose(on_device, served, rtol=1e-5, atol=1e-6)


def test_tiny_llama_bundle_generates_the_servers_greedy_completion(
    tiny_bundle: Path, device: DevicePython, tiny_server
) -> None:
    ran = device.run(
        tiny_bundle / "run.py", "--prompt", PROMPT, "--raw", "--max-tokens", "24", "--json"
    )

    assert ran.returncode == 0, ran.stderr
    on_device = json.loads(ran.stdout)
    assert on_device["token_ids"], "the tiny model generated nothing"
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 24, "temperature": 0}
    answer = httpx.post(f"{tiny_server.url}/v1/completions", json=body, timeout=60).json()
    # The random tiny model writes stray bytes; the server holds back a trailing partial
    # UTF-8 character that the runner decodes as U+FFFD. The text before it is equal.
    assert on_device["text"].rstrip("\ufffd") == answer["choices"][0]["text"].rstrip("\ufffd")
    assert len(on_device["text"]) >= 8
    assert len(on_device["token_ids"]) == answer["usage"]["completion_tokens"]


def test_chat_prompt_without_jinja2_is_used_as_plain_text_and_said_so(
    tiny_bundle: Path, device: DevicePython
) -> None:
    run = tiny_bundle / "run.py"
    plain = device.run(run, "--prompt", PROMPT, "--max-tokens", "8", "--json")
    raw = device.run(run, "--prompt", PROMPT, "--raw", "--max-tokens", "8", "--json")

    assert plain.returncode == 0, plain.stderr
    assert "jinja2 is not installed" in plain.stderr
    assert json.loads(plain.stdout)["token_ids"] == json.loads(raw.stdout)["token_ids"]
    assert json.loads(plain.stdout)["chat_template"] is False


def test_int4_and_ort_format_bundles_run_on_the_device_and_report_their_cost(
    tiny_repo: Path, tiny_bundle: Path, device: DevicePython, tmp_path: Path
) -> None:
    out = tmp_path / "int4-ort"
    result = aiaas("edge", "bundle", tiny_repo / "tiny", "--out", out, "--variant", "int4",
                   "--ort-format", "--json")  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["variant"] == "int4"
    assert report["task"] == "text-generation"
    assert 0.0 <= report["fidelity"]["greedy_agreement"] <= 1.0
    assert report["peak_rss_bytes"] > 0
    assert report["tokens_per_s"] > 0
    files = {path.name for path in out.iterdir()}
    assert {"model.ort", "required_operators.config", "tokenizer.json", "generation.json"} <= files
    assert "model.onnx" not in files
    assert "MatMulNBits" in (out / "required_operators.config").read_text()
    fp32_model = (tiny_bundle / "model.onnx").stat().st_size
    assert (out / "model.ort").stat().st_size < fp32_model
    ran = device.run(out / "run.py", "--prompt", PROMPT, "--raw", "--max-tokens", "4")
    assert ran.returncode == 0, ran.stderr


def test_int8_classifier_bundle_reports_fidelity_to_its_source(
    digits_repo: Path, device: DevicePython, tmp_path: Path
) -> None:
    out = tmp_path / "int8"
    result = aiaas(
        "edge", "bundle", digits_repo / "digits", "--out", out, "--variant", "int8", "--json"
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["variant"] == "int8"
    assert report["fidelity"]["cosine"] > 0.99
    assert 0 < report["fidelity"]["max_abs_diff"] < 0.05
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lineage"]["made"]["made_by"] == "aiaas edge bundle"
    assert manifest["source_uri"] == str((digits_repo / "digits" / "1").resolve())


def test_embedding_bundle_embeds_text_as_the_servers_embeddings_endpoint(
    device: DevicePython, bundle, start_server, tmp_path: Path
) -> None:
    write_embedding_repo(tmp_path / "repo")
    folder = bundle(tmp_path / "repo" / "words", "--no-measure")
    texts = ["the cat sat on a mat", "a dog ran"]

    ran = device.run(folder / "run.py", "--text", texts[0], "--text", texts[1], "--json")

    assert ran.returncode == 0, ran.stderr
    assert json.loads((folder / "manifest.json").read_text())["task"] == "embedding"
    on_device = np.asarray(json.loads(ran.stdout)["outputs"]["embedding"], dtype=np.float32)
    server = start_server(tmp_path / "repo")
    body = {"model": "words", "input": texts}
    answer = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=30).json()
    served = np.asarray([item["embedding"] for item in answer["data"]], dtype=np.float32)
    np.testing.assert_allclose(on_device, served, rtol=1e-5, atol=1e-6)


def test_with_jinja2_a_prompt_goes_through_the_chat_template_as_the_chat_endpoint(
    tiny_bundle: Path, full_device: DevicePython, tiny_server
) -> None:
    ran = full_device.run(
        tiny_bundle / "run.py", "--prompt", "hello", "--max-tokens", "16", "--json"
    )

    assert ran.returncode == 0, ran.stderr
    on_device = json.loads(ran.stdout)
    assert on_device["chat_template"] is True
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 16, "temperature": 0}  # fmt: skip
    answer = httpx.post(f"{tiny_server.url}/v1/chat/completions", json=body, timeout=60).json()
    assert answer["usage"]["prompt_tokens"] == on_device["prompt_tokens"]
    served = answer["choices"][0]["message"]["content"]
    assert on_device["text"].rstrip("\ufffd") == served.rstrip("\ufffd")
