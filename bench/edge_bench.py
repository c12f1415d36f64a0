"""Edge bundle benchmark: what each bundle costs a small device, fp32 against its int8
and 4-bit variants, measured the way `aiaas edge bundle` reports it.

Models: the digits MLP (trained here in seconds, exported with `aiaas export`'s API),
all-MiniLM-L6-v2 (`aiaas export`'s MiniLM, 128 tokens) — both exported with ONNX Runtime's
basic graph optimisations, since the extended ones fuse MatMul+Add into contrib operators
that dynamic int8 quantization cannot reach — and SmolLM2-135M-Instruct (the
example repository's `smollm2`, converted by `aiaas export llm`). Every bundle is run by
its own run.py in a child process on 1 thread: peak RSS of that process (loading plus one
answer), the time to check and load, the first answer, the process wall time, decode
tokens/s for the chat model (32 greedy tokens), and fidelity to the fp32 source.

    python -m bench edge [--skip-minilm] [--skip-chat]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SMOLLM2 = ROOT / "examples" / "model_repository" / "smollm2"
TARGET_CHAT_RATIO = 0.40
TARGET_MINILM_S = 1.0


def cpu() -> str:
    """lscpu's model name and the int8 instructions ONNX Runtime can use."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    name = re.search(r"Model name:\s*(.+)", text)
    flags = set((re.search(r"Flags:\s*(.+)", text) or [None, ""])[1].split())
    extras = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if flag in flags]
    return f"{name.group(1).strip() if name else 'unknown CPU'} ({', '.join(extras) or 'no AVX2'})"


def digits_model(work: Path) -> tuple[Path, Path]:
    """A trained digits MLP as a repository model folder, and real test digits as input."""
    import numpy as np
    import torch

    from aiaas.compress import examples
    from aiaas.export.api import export_to_repository

    arrays = examples.digits_arrays()
    model = examples.train_classifier(
        examples.digits_mlp(), arrays["train_x"], arrays["train_y"], 30
    ).eval()
    example = {"x": torch.from_numpy(arrays["test_x"][:4])}
    export_to_repository(
        model, example, work / "repo", "digits", 1, output_names=["logits"], optimization="basic"
    )
    sample = work / "digits-sample.npz"
    np.savez(sample, x=arrays["test_x"][:1].astype(np.float32))
    return work / "repo" / "digits", sample


def minilm_model(work: Path) -> Path:
    from aiaas.export.minilm import export_minilm

    export_minilm(work / "repo", name="minilm", version=1, optimization="basic")
    return work / "repo" / "minilm"


def bundle_and_measure(source: Path, variant: str | None, work: Path, sample: Path | None) -> dict:
    from aiaas.edge.bundle import BundleRequest, build, open_work
    from aiaas.edge.measure import measure

    out = work / "bundles" / f"{source.name}-{variant or 'fp32'}"
    scratch = open_work(out)
    try:
        bundled = build(BundleRequest(str(source), out, variant), scratch)
        row: dict[str, Any] = {"model": source.name, "variant": variant or "fp32"}
        row |= measure(bundled, scratch, sample).to_dict()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | variant | bundle MB | peak RSS MB | check+load s | first answer s | "
        "process s | tokens/s | fidelity to fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        fidelity = ", ".join(
            f"{key} {value:.4g}" for key, value in row["fidelity"].items() if key != "tokens"
        )
        speed = f"{row['tokens_per_s']:.1f}" if row.get("tokens_per_s") else "-"
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['size_bytes'] / 1e6:.2f} | "
            f"{row['peak_rss_bytes'] / 1e6:.0f} | {row['load_s']:.3f} | "
            f"{row['first_answer_s']:.3f} | {row['process_s']:.2f} | {speed} | {fidelity} |"
        )
    return lines


def targets(rows: list[dict]) -> list[str]:
    by = {(row["model"], row["variant"]): row for row in rows}
    lines = []
    chat, chat4 = by.get(("smollm2", "fp32")), by.get(("smollm2", "int4"))
    if chat and chat4:
        ratio = chat4["size_bytes"] / chat["size_bytes"]
        met = "met" if ratio < TARGET_CHAT_RATIO else "missed"
        lines.append(
            f"- 4-bit chat bundle < {TARGET_CHAT_RATIO:.0%} of fp32: {ratio:.1%} "
            f"({chat4['size_bytes'] / 1e6:.0f} MB against {chat['size_bytes'] / 1e6:.0f} MB): {met}"
        )
    minilm8 = by.get(("minilm", "int8"))
    if minilm8:
        seconds = minilm8["load_s"] + minilm8["first_answer_s"]
        met = "met" if seconds < TARGET_MINILM_S else "missed"
        lines.append(
            f"- MiniLM int8 check+load+first answer < {TARGET_MINILM_S:.0f} s on 1 thread: "
            f"{seconds:.3f} s (whole process with Python and imports {minilm8['process_s']:.2f} s)"
            f": {met}"
        )
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench edge")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--skip-chat", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="aiaas-edge-bench-") as scratch:
        work = Path(scratch)
        digits, sample = digits_model(work)
        for variant in (None, "int8"):
            rows.append(bundle_and_measure(digits, variant, work, sample))
        if not args.skip_minilm:
            minilm = minilm_model(work)
            for variant in (None, "int8"):
                rows.append(bundle_and_measure(minilm, variant, work, None))
        if not args.skip_chat:
            if not (SMOLLM2 / "1" / "model.onnx").is_file():
                sys.exit(f"{SMOLLM2} is missing: run `python examples/make_model_repository.py`")
            for variant in (None, "int8", "int4"):
                rows.append(bundle_and_measure(SMOLLM2, variant, work, None))
    lines = [
        "# Edge bundles",
        "",
        f"CPU: {cpu()}; every figure from the bundle's run.py in a child process on 1 thread.",
        "",
        *table(rows),
        "",
        *targets(rows),
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "edge.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
