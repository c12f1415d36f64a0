"""run.py: runs an aiaas edge bundle on a device that has only onnxruntime and numpy
(and tokenizers for text models): no aiaas, no torch.

`aiaas edge bundle` copies this file into every bundle as ``run.py``. Before it loads
anything it checks every file against the sha256s in manifest.json (and, with
``--public-key``, the ed25519 signature over manifest.json, which needs the
``cryptography`` package), and refuses a bundle that fails with one line and exit 2.

    python run.py --input x.npy [--output out.npz]     tensors (x.npz: inputs by name)
    python run.py --text "a sentence" [--text ...]      an embedding model
    python run.py --prompt "Hello" [--max-tokens 32]    a language model, greedy, KV cache

A language model's prompt goes through its chat template as one user message when
``jinja2`` is importable; without jinja2 (or with ``--raw``) the prompt is used as
plain text, as /v1/completions takes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

FORMAT = "aiaas-edge-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
UNLISTED = frozenset({MANIFEST, SIGNATURE})
#: Exit codes: 2 for a bundle (or input) that is refused, 1 for a run that failed.
REFUSED, FAILED = 2, 1
NUMPY_TYPES = {
    "FP32": "float32", "FP64": "float64", "FP16": "float16", "INT64": "int64",
    "INT32": "int32", "INT16": "int16", "INT8": "int8", "UINT8": "uint8", "BOOL": "bool",
}  # fmt: skip


class Refused(Exception):
    """A bundle or an input the runner will not use; the message is the one line shown."""


# --- checks -----------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except OSError:
        raise Refused(f"{folder} is not a bundle: no {MANIFEST}") from None
    except ValueError as error:
        raise Refused(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Refused(f"{path} is not an {FORMAT} manifest")
    return manifest


def check_signature(folder: Path, public_key: Path) -> None:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise Refused("checking a signature needs the 'cryptography' package") from None
    signature = folder / SIGNATURE
    if not signature.is_file():
        raise Refused(f"{folder} is not signed (no {SIGNATURE}) and a public key was given")
    try:
        key = serialization.load_pem_public_key(public_key.read_bytes())
    except (OSError, ValueError) as error:
        raise Refused(f"{public_key} is not a readable public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise Refused(f"{public_key} is not an ed25519 public key")
    try:
        key.verify(signature.read_bytes(), (folder / MANIFEST).read_bytes())
    except InvalidSignature:
        raise Refused(
            f"{folder}: the signature does not match {MANIFEST} under {public_key}"
        ) from None


def check_files(folder: Path, manifest: dict[str, Any]) -> None:
    listed = {entry["path"]: entry for entry in manifest.get("files", [])}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    extra = sorted(present - set(listed) - UNLISTED)
    if extra:
        raise Refused(f"{folder}: file not in the manifest: {extra[0]}")
    for relative, entry in listed.items():
        path = folder / relative
        if not path.is_file():
            raise Refused(f"{folder}: missing file {relative}")
        if path.stat().st_size != entry["size_bytes"] or sha256_of(path) != entry["sha256"]:
            raise Refused(f"{folder}: {relative} does not match its sha256 in {MANIFEST}")


def check_onnxruntime(manifest: dict[str, Any], installed: str) -> None:
    needed = manifest.get("min_onnxruntime")
    if needed and _version_tuple(installed) < _version_tuple(needed):
        raise Refused(f"this bundle needs onnxruntime >= {needed}; {installed} is installed")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def verify(folder: Path, public_key: Path | None = None) -> dict[str, Any]:
    """Every check a device makes before loading: manifest, signature, every file."""
    manifest = read_manifest(folder)
    if public_key is not None:
        check_signature(folder, public_key)
    check_files(folder, manifest)
    return manifest


# --- loading ----------------------------------------------------------------------------------
def open_session(folder: Path, manifest: dict[str, Any], threads: int) -> Any:
    import onnxruntime as ort

    check_onnxruntime(manifest, ort.__version__)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    model = folder / manifest.get("model_file", "model.onnx")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


# --- tensors ----------------------------------------------------------------------------------
def read_inputs(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """x.npy for a one-input model, x.npz with arrays by input name; cast to the signature."""
    import numpy as np

    specs = manifest.get("signature", {}).get("inputs", [])
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise Refused(f"{path}: not a readable .npy/.npz file: {error}") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            names = ", ".join(spec["name"] for spec in specs)
            raise Refused(f"the model takes {len(specs)} inputs ({names}); give an .npz by name")
        arrays = {specs[0]["name"]: loaded}
    else:
        arrays = {name: loaded[name] for name in loaded.files}
    feed = {}
    for spec in specs:
        if spec["name"] not in arrays:
            raise Refused(f"{path} has no array named {spec['name']!r}")
        dtype = NUMPY_TYPES.get(spec["datatype"], "float32")
        feed[spec["name"]] = np.ascontiguousarray(arrays[spec["name"]], dtype=dtype)
    return feed


def run_tensors(session: Any, feed: dict[str, Any]) -> dict[str, Any]:
    names = [output.name for output in session.get_outputs()]
    try:
        values = session.run(names, feed)
    except Exception as error:  # onnxruntime raises its own untyped errors for bad shapes
        raise Refused(f"the model refused the input: {str(error).splitlines()[0]}") from None
    return dict(zip(names, values, strict=True))


def read_labels(folder: Path, manifest: dict[str, Any]) -> list[str]:
    name = manifest.get("labels_file")
    if not name:
        return []
    return [line.strip() for line in (folder / name).read_text().splitlines() if line.strip()]


# --- embeddings -------------------------------------------------------------------------------
def embed(session: Any, folder: Path, texts: list[str]) -> dict[str, Any]:
    """Token ids padded (and truncated) to the model's fixed length, or to the longest
    text when the length is free, as the server pads them."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    inputs = {spec.name: spec for spec in session.get_inputs()}
    length = inputs["input_ids"].shape[-1]
    padding = tokenizer.padding or {}
    pad_id, pad_token = padding.get("pad_id", 0), padding.get("pad_token", "[PAD]")
    if isinstance(length, int) and length > 0:
        tokenizer.enable_truncation(length)
        tokenizer.enable_padding(length=length, pad_id=pad_id, pad_token=pad_token)
    else:
        tokenizer.enable_padding(length=None, pad_id=pad_id, pad_token=pad_token)
    encoded = tokenizer.encode_batch(texts)
    columns = {
        "input_ids": [item.ids for item in encoded],
        "attention_mask": [item.attention_mask for item in encoded],
        "token_type_ids": [item.type_ids for item in encoded],
    }
    feed = {
        name: np.asarray(rows, dtype=np.int64) for name, rows in columns.items() if name in inputs
    }
    return run_tensors(session, feed)


# --- language models --------------------------------------------------------------------------
class Generator:
    """Greedy decoding for one sequence over the model's KV-cache inputs
    (input_ids, attention_mask, position_ids, past_key_values.N.key/value)."""

    def __init__(self, session: Any, generation: dict[str, Any]) -> None:
        import numpy as np

        self.np = np
        self.session = session
        self.generation = generation
        self.layers = int(generation["num_layers"])
        inputs = {spec.name: spec for spec in session.get_inputs()}
        past = inputs["past_key_values.0.key"]
        self.past_dtype = np.float16 if "float16" in past.type else np.float32
        self.output_names = [output.name for output in session.get_outputs()]

    def empty_past(self) -> dict[str, Any]:
        shape = (
            1,
            int(self.generation["num_key_value_heads"]),
            0,
            int(self.generation["head_dim"]),
        )
        empty = self.np.zeros(shape, dtype=self.past_dtype)
        return {
            f"past_key_values.{layer}.{kind}": empty
            for layer in range(self.layers)
            for kind in ("key", "value")
        }

    def step(self, ids: list[int], start: int, past: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One run over ``ids`` at positions start..; the last logits and the new past."""
        np = self.np
        feed = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, start + len(ids)), dtype=np.int64),
            "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None, :],
            **past,
        }
        outputs = self.session.run(self.output_names, feed)
        presents = dict(zip(self.output_names[1:], outputs[1:], strict=True))
        new_past = {
            f"past_key_values.{layer}.{kind}": presents[f"present.{layer}.{kind}"]
            for layer in range(self.layers)
            for kind in ("key", "value")
        }
        return outputs[0][0, -1], new_past

    def generate(
        self, prompt_ids: list[int], max_tokens: int
    ) -> tuple[list[int], dict[str, float]]:
        """Greedy tokens until an end token, ``max_tokens`` or the context is full."""
        stop = set(self.generation.get("eos_token_ids") or [])
        limit = min(max_tokens, int(self.generation["context_length"]) - len(prompt_ids))
        started = time.perf_counter()
        logits, past = self.step(prompt_ids, 0, self.empty_past())
        first = time.perf_counter()
        tokens: list[int] = []
        while len(tokens) < limit:
            token = int(self.np.argmax(logits))
            if token in stop:
                break
            tokens.append(token)
            if len(tokens) == limit:
                break
            logits, past = self.step([token], len(prompt_ids) + len(tokens) - 1, past)
        done = time.perf_counter()
        decoded = max(len(tokens) - 1, 0)
        timings = {
            "prefill_s": first - started,
            "decode_s": done - first,
            "decode_tokens_per_s": decoded / (done - first) if decoded and done > first else 0.0,
        }
        return tokens, timings


def _raise_exception(message: str) -> None:
    raise Refused(f"chat template: {message}")


def chat_prompt(prompt: str, generation: dict[str, Any], raw: bool) -> tuple[str, bool]:
    """The prompt through the model's chat template when jinja2 is here; else as is."""
    template = generation.get("chat_template")
    if raw or not template:
        return prompt, False
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        print("note: jinja2 is not installed; the prompt is used as plain text", file=sys.stderr)
        return prompt, False
    # As Hugging Face (and the server) render templates, so prompts match the model's training.
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals["raise_exception"] = _raise_exception
    specials = generation.get("special_tokens") or {}
    text = environment.from_string(template).render(
        messages=[{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        bos_token=specials.get("bos") or "",
        eos_token=specials.get("eos") or "",
    )
    return text, True


def encode_prompt(tokenizer: Any, text: str, generation: dict[str, Any]) -> list[int]:
    """Token ids with the BOS the model expects (once) in front, as the server encodes."""
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    bos = generation.get("bos_token_id")
    if bos is not None and generation.get("add_bos_token") and ids[:1] != [bos]:
        ids.insert(0, bos)
    return ids


def complete(session: Any, folder: Path, prompt: str, max_tokens: int, raw: bool) -> dict[str, Any]:
    from tokenizers import Tokenizer

    generation = json.loads((folder / "generation.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    text, templated = chat_prompt(prompt, generation, raw)
    prompt_ids = encode_prompt(tokenizer, text, generation)
    if not prompt_ids or len(prompt_ids) >= int(generation["context_length"]):
        raise Refused(f"the prompt is {len(prompt_ids)} tokens; the model's context holds fewer")
    tokens, timings = Generator(session, generation).generate(prompt_ids, max_tokens)
    return {
        "text": tokenizer.decode(tokens, skip_special_tokens=True),
        "token_ids": tokens,
        "prompt_tokens": len(prompt_ids),
        "chat_template": templated,
        **timings,
    }


# --- command line -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run an aiaas edge bundle (checked first).")
    parser.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--public-key", type=Path, help="edge.pub: check the signature too")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all)")
    parser.add_argument("--input", type=Path, help=".npy (one input) or .npz (by name)")
    parser.add_argument("--output", type=Path, help="save the outputs as .npz")
    parser.add_argument("--text", action="append", help="text to embed (repeatable)")
    parser.add_argument("--prompt", help="prompt for a language model")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--raw", action="store_true", help="no chat template")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verify-only", action="store_true", help="check, load nothing")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    manifest = verify(args.bundle, args.public_key)
    if args.verify_only:
        return {"verified": True, "name": manifest.get("name"), "version": manifest.get("version")}
    task = manifest.get("task", "tensor")
    wanted = {"tensor": args.input, "embedding": args.text, "text-generation": args.prompt}
    flags = {"tensor": "--input", "embedding": "--text", "text-generation": "--prompt"}
    if args.max_tokens < 1:
        raise Refused(f"--max-tokens must be at least 1, got {args.max_tokens}")
    if task not in wanted:
        raise Refused(f"unknown task {task!r} in {MANIFEST}")
    if not wanted[task]:
        raise Refused(f"this bundle is a {task} model: give {flags[task]}")
    session = open_session(args.bundle, manifest, args.threads)
    loaded = time.perf_counter()
    if task == "text-generation":
        result: dict[str, Any] = complete(
            session, args.bundle, args.prompt, args.max_tokens, args.raw
        )
    elif task == "embedding":
        result = {"outputs": embed(session, args.bundle, args.text)}
    else:
        result = {"outputs": run_tensors(session, read_inputs(args.input, manifest))}
    result["load_s"] = loaded - started
    result["infer_s"] = time.perf_counter() - loaded
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory since it started (Linux's VmHWM, which exec
    resets; getrusage's maxrss would count the parent that forked us)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def show(result: dict[str, Any], args: argparse.Namespace, labels: list[str]) -> None:
    import numpy as np

    outputs = result.pop("outputs", None)
    if outputs is not None and args.output is not None:
        np.savez(args.output, **outputs)
    if args.json:
        if outputs is not None:
            result["outputs"] = {name: value.tolist() for name, value in outputs.items()}
        print(json.dumps(result))
        return
    if "text" in result:
        print(result["text"])
        return
    for name, value in (outputs or {}).items():
        print(f"{name} {value.dtype} {list(value.shape)}")
        print(np.array2string(value, precision=5, threshold=40))
        if labels and value.ndim == 2 and value.shape[1] == len(labels):
            print("labels:", ", ".join(labels[i] for i in value.argmax(axis=1)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
        labels = [] if args.verify_only else read_labels(args.bundle, read_manifest(args.bundle))
        show(result, args, labels)
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return REFUSED
    except ImportError as error:
        print(f"error: this bundle needs the '{error.name}' package", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a device shows one line, not a traceback
        line = str(error).splitlines()[0] if str(error) else ""
        print(f"error: {type(error).__name__}: {line}", file=sys.stderr)
        return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
