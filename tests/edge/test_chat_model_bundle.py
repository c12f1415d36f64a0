"""The SmolLM2 chat model from the language-model issue bundles and runs on a device with
onnxruntime, numpy, tokenizers (and jinja2 for its chat template), answering as the
server's chat endpoint does."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from edge_support import DevicePython

QUESTION = "What is the capital of France?"


@pytest.mark.slow
def test_smollm2_bundle_answers_as_the_chat_endpoint(
    smollm2_version: Path, full_device: DevicePython, bundle, start_server
) -> None:
    folder = bundle(smollm2_version.parent, "--no-measure")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["task"] == "text-generation"
    assert {"tokenizer.json", "generation.json", "model.onnx"} <= {
        entry["path"] for entry in manifest["files"]
    }

    ran = full_device.run(folder / "run.py", "--prompt", QUESTION, "--max-tokens", "12", "--json")

    assert ran.returncode == 0, ran.stderr
    on_device = json.loads(ran.stdout)
    assert on_device["chat_template"] is True
    server = start_server(smollm2_version.parent.parent)
    body = {"model": "smollm2", "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 12, "temperature": 0}  # fmt: skip
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).json()
    assert on_device["text"] == answer["choices"][0]["message"]["content"]
    assert "Paris" in on_device["text"]
