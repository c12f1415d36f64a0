"""A registry for the catalogue's tests: a trained model, its retrained version, a pruned
copy of it and an int8 copy of that (trained -> pruned -> int8, with parents), and a
tiny chat model. Every model is tests/models.py's add_constant(v), so an answer says
which version computed it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import models
import onnx

from aiaas.registry import Registry

TOKEN = "catalogue-admin-s3cret"
#: What each digits-family version adds to its input.
ADDS = {
    ("digits", 1): 1.0,
    ("digits", 2): 2.0,
    ("digits-pruned", 1): 11.0,
    ("digits-int8", 1): 21.0,
}


@dataclass(frozen=True)
class CatalogueRegistry:
    uri: str
    artifact_root: str

    def flags(self, cache: Path) -> list[str]:
        return [
            "--registry-uri", self.uri, "--artifact-root", self.artifact_root,
            "--registry-cache-dir", str(cache), "--registry-poll-secs", "0.2",
        ]  # fmt: skip

    def open(self) -> Registry:
        return Registry.open(self.uri, self.artifact_root)


def _onnx(folder: Path, name: str, version: int) -> Path:
    path = folder / f"{name}-{version}.onnx"
    onnx.save(models.add_constant(ADDS[(name, version)]), path)
    return path


def digits_family(root: Path, *, with_chat: bool = False) -> CatalogueRegistry:
    """digits v1 (alias production) and v2; digits-pruned/1 from digits/2; digits-int8/1
    from digits-pruned/1; with_chat adds chat/1, a tiny Llama tagged task=chat."""
    sources = root / "sources"
    sources.mkdir(parents=True)
    made = CatalogueRegistry(f"sqlite:///{root / 'registry.db'}", str(root / "artifacts"))
    with made.open() as registry:
        registry.register(
            "digits", _onnx(sources, "digits", 1), description="trained on the digits set",
            tags={"task": "classification", "team": "vision"},
            metrics={"accuracy": 0.95, "loss": 0.2}, run_id="run-1",
            params={"lr": 0.1, "epochs": 3}, recipe={"spec": "digits.toml"},
        )  # fmt: skip
        registry.register(
            "digits", _onnx(sources, "digits", 2), tags={"task": "classification"},
            metrics={"accuracy": 0.972, "loss": 0.12}, run_id="run-2",
        )  # fmt: skip
        registry.register(
            "digits-pruned", _onnx(sources, "digits-pruned", 1), parents=["models:/digits/2"],
            metrics={"accuracy": 0.969, "loss": 0.13}, recipe={"prune": {"amount": 0.5}},
            tags={"task": "classification"},
        )  # fmt: skip
        registry.register(
            "digits-int8", _onnx(sources, "digits-int8", 1), parents=["models:/digits-pruned/1"],
            metrics={"accuracy": 0.965, "loss": 0.14}, recipe={"quantize": "int8"},
            tags={"task": "classification", "quant": "int8"},
        )  # fmt: skip
        registry.set_alias("digits", "production", 1)
        if with_chat:
            from tiny_llama import write_tiny_llama

            folder = write_tiny_llama(sources, "tiny", 1, seed=3)
            registry.register("chat", folder, tags={"task": "chat"}, description="a tiny Llama")
            registry.set_alias("chat", "production", 1)
    return made
