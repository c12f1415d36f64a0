"""`aiaas export llm`: SmolLM2's GGUF converted to ONNX with a KV cache generates exactly what
transformers' LlamaForCausalLM, loaded from the same file, generates; its tokenizer and chat
template agree with transformers' too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import onnx
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llm_fixtures import GGUF_NAME, ROOT, gguf_path, greedy_onnx, onnx_session
from tokenizers import Tokenizer

from aiaas import lineage

pytestmark = pytest.mark.timeout(900)

NEW_TOKENS = 20
TEXTS = [
    "Hello, world! How are you today?",
    "naïve café — 日本語の文章 😀 and Ünïcödé",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces,\ttabs\n\nand the year 2024",
]
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
    ],
]


@pytest.fixture(scope="module")
def reference() -> tuple[Any, Any]:
    """transformers' tokenizer and LlamaForCausalLM from the GGUF file (tests only)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    folder = str(gguf_path().parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=GGUF_NAME, dtype=torch.float32
        )
    return tokenizer, model.eval()


@pytest.fixture(scope="module")
def generation(smollm2_version: Path) -> dict[str, Any]:
    return json.loads((smollm2_version / "generation.json").read_text())


def reference_greedy(model: Any, prompt: list[int], eos: int) -> list[int]:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = model.generate(
            torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
            eos_token_id=eos, pad_token_id=eos,
        )  # fmt: skip
    return [int(token) for token in output[0, len(prompt) :]]


def test_greedy_tokens_equal_transformers_loaded_from_the_same_gguf(
    smollm2_version: Path, reference: tuple[Any, Any], generation: dict[str, Any]
) -> None:
    tokenizer, model = reference
    eos = generation["eos_token_ids"][0]
    prompts = [
        tokenizer.encode(
            tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        )
        for chat in CHATS
    ] + [tokenizer.encode("The three primary colours are")]
    session = onnx_session(smollm2_version / "model.onnx")
    for prompt in prompts:
        ours = greedy_onnx(session, [prompt], NEW_TOKENS, (eos,))[0]
        assert ours == reference_greedy(model, prompt, eos), tokenizer.decode(prompt)
        assert len(ours) >= 3


def test_left_padded_batch_generates_what_each_prompt_generates_alone(
    smollm2_version: Path, generation: dict[str, Any]
) -> None:
    tokenizer = Tokenizer.from_file(str(smollm2_version / "tokenizer.json"))
    prompts = [tokenizer.encode(text).ids for text in ("Once upon a time", TEXTS[2])]
    assert len(prompts[0]) != len(prompts[1])
    session = onnx_session(smollm2_version / "model.onnx")
    eos = tuple(generation["eos_token_ids"])
    alone = [greedy_onnx(session, [prompt], 12, eos)[0] for prompt in prompts]
    assert greedy_onnx(session, prompts, 12, eos) == alone


def test_tokenizer_json_encodes_like_transformers_gguf_tokenizer(
    smollm2_version: Path, reference: tuple[Any, Any]
) -> None:
    ours = Tokenizer.from_file(str(smollm2_version / "tokenizer.json"))
    theirs = reference[0]
    for text in TEXTS:
        ids = ours.encode(text).ids
        assert ids == theirs.encode(text), text
        assert ours.decode(ids, skip_special_tokens=False) == text
    chat_ids = ours.encode(TEXTS[2]).ids
    assert chat_ids.count(1) == 2
    assert chat_ids.count(2) == 1
    assert "<|im_end|>" not in ours.decode(chat_ids)  # special tokens skipped by default


def test_chat_template_renders_like_transformers_apply_chat_template(
    generation: dict[str, Any], reference: tuple[Any, Any]
) -> None:
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(generation["chat_template"])
    special = generation["special_tokens"]
    for chat in CHATS:
        for prompt in (True, False):
            rendered = template.render(
                messages=chat, add_generation_prompt=prompt,
                bos_token=special["bos"], eos_token=special["eos"],
            )  # fmt: skip
            expected = reference[0].apply_chat_template(
                chat, tokenize=False, add_generation_prompt=prompt
            )
            assert rendered == expected
    assert rendered.startswith("<|im_start|>system\nYou answer in one word.<|im_end|>\n")


def test_folder_is_a_text_generation_model_of_the_repository(
    smollm2_version: Path, generation: dict[str, Any]
) -> None:
    from aiaas.export.gguf_reader import file_sha256

    config = (smollm2_version.parent / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config
    assert "max_batch_size: 0" in config
    assert 'key: "task" value { string_value: "text-generation" }' in config
    sha256 = file_sha256(gguf_path())
    assert generation["source"]["sha256"] == sha256
    assert generation["context_length"] == 2048
    assert generation["num_layers"] == 30
    assert (generation["num_key_value_heads"], generation["head_dim"]) == (3, 64)
    assert generation["eos_token_ids"] == [2]
    assert generation["add_bos_token"] is False
    assert generation["special_tokens"]["eos"] == "<|im_end|>"
    model = onnx.load(str(smollm2_version / "model.onnx"), load_external_data=False)
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["aiaas.source.sha256"] == sha256
    assert props["aiaas.variant"] == "fp32"
    assert json.loads(props["aiaas.recipe"])["gguf_sha256"] == sha256
    record = lineage.from_metadata(props)
    assert record is not None
    assert record["step"] == "convert"
    assert record["parents"] == [{"path": str(gguf_path().absolute()), "sha256": sha256}]
    assert record["recipe_digest"] == lineage.recipe_digest(json.loads(props["aiaas.recipe"]))
    inputs = {value.name: value for value in model.graph.input}
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert len(inputs) == 3 + 2 * 30
    assert "past_key_values.29.value" in inputs
    outputs = [value.name for value in model.graph.output]
    assert outputs[0] == "logits"
    assert outputs[-1] == "present.29.value"
    assert len(outputs) == 61
    past_dims = [
        d.dim_param or d.dim_value
        for d in inputs["past_key_values.0.key"].type.tensor_type.shape.dim
    ]
    assert past_dims == ["batch", 3, "past_sequence", 64]
    assert not list(smollm2_version.parent.glob(".*staging*"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli", "export", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("make_input", "out", "message"),
    [
        (lambda tmp: tmp / "missing.gguf", "repo/m/1", "does not exist"),
        (lambda tmp: _write(tmp / "text.gguf", "not a gguf"), "repo/m/1", "not a readable GGUF"),
        (lambda tmp: gguf_path(), "repo/m/latest", "must be a version number"),
    ],
)
def test_cli_refuses_bad_input_with_one_line_and_exit_2(
    tmp_path: Path, make_input: Any, out: str, message: str
) -> None:
    result = run_cli("llm", str(make_input(tmp_path)), "--out", str(tmp_path / out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "repo" / "m").exists()


def test_cli_refuses_to_overwrite_an_existing_version(smollm2_version: Path) -> None:
    before = sorted(p.name for p in smollm2_version.iterdir())
    result = run_cli("llm", str(gguf_path()), "--out", str(smollm2_version))
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert sorted(p.name for p in smollm2_version.iterdir()) == before


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
