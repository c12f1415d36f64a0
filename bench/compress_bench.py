"""Compression benchmark: every variant of the digits MLP and of all-MiniLM-L6-v2 against
its fp32 baseline, measured in one run (latencies interleaved round-robin, so a busy
shared machine slows every variant alike; read the ratios, not the milliseconds).

    .venv/bin/python -m bench.compress_bench [--rounds 30] [--threads 1]

Prints one table per model and writes bench/results/compress.md (+ .json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from aiaas.compress import examples
from aiaas.compress.pipeline import Compressor, Dataset
from aiaas.compress.report import print_table
from aiaas.compress.variants import Variant, select

RESULTS = Path(__file__).resolve().parent / "results"

#: What the figures mean, found by profiling the variants (ORT's per-operator profiler).
NOTES = [
    "- Unstructured pruning saves no CPU time (speed-up ~1.00x in every row): zeros in a dense "
    "matrix are multiplied like any other number, and the file does not shrink either (ONNX stores "
    "dense tensors). It is only useful before a compressor or a sparse kernel.",
    "- Structured pruning is the pruning that pays: half the hidden width runs faster and is a "
    "third of the size. It follows nn.Sequential chains, so MiniLM (attention blocks with residual "
    "connections) is not structurally pruned here: no row for it.",
    "- The digits MLP is so small (~10 us per call) that int8 is slower than fp32 on it: "
    "quantizing activations at run time costs more than the tiny matmuls save. Int8 still cuts "
    "the file to a third. The accuracy targets are what the digits model is for.",
    "- MiniLM dynamic int8 keeps the fidelity target but misses 2x, and on this CPU it cannot "
    "reach it: an AMD EPYC with AVX2 but no VNNI, where one int8 MatMul of MiniLM's shapes "
    "runs only 1.75-1.95x faster than fp32 (measured alone, CPU time). MatMuls are ~78% of "
    "fp32 MiniLM at batch 16 (ORT profiling), so int8 can give at most about "
    "1/(0.78/1.9 + 0.22) = 1.6x. After int8, its matmuls are ~61% of the time left, "
    "SkipLayerNorm ~9%, the fp32 attention matmuls ~11%, Transpose/Gelu/Add/Softmax the rest. "
    "ORT's BERT recipe (optimize_model fusing 6 Attention nodes, then quantize_dynamic to "
    "QAttention + MatMulInteger) reached 1.66x at cosine 0.992, the best of a dozen variants "
    "(per-tensor or reduce_range lose fidelity; QUInt8 and MatMulNBits are slower here). "
    "2x needs int8 matmuls >= 2.8x faster than fp32, i.e. VNNI hardware. Static QDQ int8 is "
    "both slower and less faithful (QDQ around softmax/LayerNorm/GELU is not fused into int8 "
    "kernels on this CPU build).",
    "- ORT's offline extended optimisation makes MiniLM ~10% slower than the plain export on this "
    "CPU (fp32 row vs fp32-ort): its SkipLayerNormalization and BiasGelu kernels are slower than "
    "opset-20 LayerNormalization and Gelu. Against the plain export, int8 is ~1.5x.",
    "- MiniLM pruned rows have no fine-tuning (no training corpus ships with the model); "
    "unstructured pruning without it destroys the embeddings, as the fidelity shows.",
]


def digits(workdir: Path, rounds: int, threads: int) -> tuple[list[Variant], Variant, str]:
    arrays = examples.digits_arrays()
    train = Dataset(inputs={"x": arrays["train_x"]}, labels=arrays["train_y"])
    test = Dataset(inputs={"x": arrays["test_x"]}, labels=arrays["test_y"])
    calibration = Dataset(inputs={"x": arrays["train_x"][:256]})
    teacher = examples.train_classifier(
        examples.digits_mlp(), arrays["train_x"], arrays["train_y"], 30
    )
    c = Compressor(
        workdir / "digits", test, output_names=["logits"], rounds=rounds, threads=threads
    )
    original, baseline = c.from_torch(teacher)
    variants = [original, baseline]
    variants.append(c.quantize(original, "dynamic"))
    variants.append(c.quantize(original, "static", calibration=calibration))
    for amount in (0.5, 0.8):
        variants.append(c.prune(original, "unstructured", amount, train, epochs=5))
    for amount in (0.5, 0.8):
        variants.append(c.prune(original, "structured", amount, train, epochs=10))
    structured = next(v for v in variants if v.name == "structured-50")
    variants.append(c.quantize(structured, "dynamic"))
    student = examples.digits_mlp_half()
    distilled = c.distill(
        original, teacher, train, student=student, epochs=30, student_name="half-width"
    )
    variants.append(distilled)
    c.evaluate(variants, baseline)
    return variants, baseline, c.metric_name


def minilm(workdir: Path, rounds: int, threads: int) -> tuple[list[Variant], Variant, str]:
    from aiaas.export.minilm import load_minilm, read_sentences, tokenize

    model, tokenizer = load_minilm()
    sentences = read_sentences()
    arrays = tokenize(tokenizer, sentences)
    evaluation = Dataset(inputs=arrays)
    # Calibrate on other text than is evaluated: the sentences reversed word by word.
    calibration = Dataset(
        inputs=tokenize(tokenizer, [" ".join(reversed(s.split())) for s in sentences])
    )
    c = Compressor(
        workdir / "minilm", evaluation, output_names=["embedding"], rounds=rounds, threads=threads
    )
    original, baseline = c.from_torch(model)
    variants = [original, baseline]
    variants.append(c.quantize(original, "dynamic"))
    variants.append(c.quantize(original, "static", calibration=calibration, method="minmax"))
    for amount in (0.5, 0.8):  # no fine-tuning data for a sentence encoder here: pruned as is
        variants.append(c.prune(original, "unstructured", amount, None, epochs=0))
    c.evaluate(variants, baseline)
    return variants, baseline, c.metric_name


def _markdown(title: str, variants: list[Variant], baseline: Variant, metric: str) -> list[str]:
    lines = [
        f"### {title}",
        "",
        f"| variant | {metric} | drop | size | p50 b1 (ms) | p50 b16 (ms) "
        "| speed-up b1 | speed-up b16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in variants:
        drop = (
            baseline.metric - v.metric
            if v.metric is not None and baseline.metric is not None
            else float("nan")
        )
        lines.append(
            f"| {v.name} | {v.metric:.4f} | {drop:+.4f} | {v.size_bytes / 1e3:,.1f} kB | "
            f"{v.latency_ms[1]:.3f} | {v.latency_ms[16]:.3f} | "
            f"{baseline.latency_ms[1] / v.latency_ms[1]:.2f}x | "
            f"{baseline.latency_ms[16] / v.latency_ms[16]:.2f}x |"
        )
    return [*lines, ""]


def _targets(digits_run: tuple, minilm_run: tuple | None) -> list[str]:
    d_variants, d_base, _ = digits_run
    by = {v.name: v for v in d_variants}
    acc = d_base.metric
    checks = [
        (
            "digits structured 50% (half hidden width) within 1 point",
            acc - by["structured-50"].metric <= 0.01,
            by["structured-50"].metric,
        ),
        (
            "digits dynamic int8 within 1 point",
            acc - by["int8-dynamic"].metric <= 0.01,
            by["int8-dynamic"].metric,
        ),
        (
            "digits static int8 within 1 point",
            acc - by["int8-static"].metric <= 0.01,
            by["int8-static"].metric,
        ),
        (
            "digits distilled half-width student within 1.5 points",
            acc - by["distilled-half-width"].metric <= 0.015,
            by["distilled-half-width"].metric,
        ),
    ]
    lines = [f"- baseline digits accuracy {acc:.4f}"]
    lines += [
        f"- {'MET' if ok else 'MISSED'}: {label} (got {value:.4f})" for label, ok, value in checks
    ]
    if minilm_run:
        m_variants, m_base, _ = minilm_run
        q = next(v for v in m_variants if v.name == "int8-dynamic")
        speedup = m_base.latency_ms[16] / q.latency_ms[16]
        lines.append(
            f"- {'MET' if speedup >= 2 else 'MISSED'}: MiniLM dynamic int8 >= 2x faster than "
            f"fp32 ORT at batch 16 (got {speedup:.2f}x)"
        )
        lines.append(
            f"- {'MET' if q.metric >= 0.99 else 'MISSED'}: MiniLM dynamic int8 mean cosine >= 0.99 "
            f"(got {q.metric:.4f}, Spearman of pairwise similarities {q.spearman:.4f})"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="aiaas-compress-bench-") as workdir:
        digits_run = digits(Path(workdir), args.rounds, args.threads)
        print_table(digits_run[0], digits_run[1], select(*digits_run[:2], 0.01), digits_run[2])
        minilm_run = None if args.skip_minilm else minilm(Path(workdir), args.rounds, args.threads)
        if minilm_run:
            print_table(minilm_run[0], minilm_run[1], select(*minilm_run[:2], 0.01), minilm_run[2])
    lines = [
        "# Compression benchmark",
        "",
        f"`python -m bench.compress_bench --rounds {args.rounds} --threads {args.threads}`; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other "
        f"work during the run), onnxruntime CPU, {args.threads} intra-op thread(s), p50 over "
        f"{args.rounds} interleaved rounds; run took {time.time() - started:.0f} s. Baseline for "
        "speed-ups: fp32-ort (the ORT-optimised export). Latencies are noisy; read the ratios.",
        "",
        "## Targets",
        "",
        *_targets(digits_run, minilm_run),
        "",
        "## Notes",
        "",
        *NOTES,
        "",
        "## Tables",
        "",
        *_markdown("digits MLP 64-128-64-10 (accuracy on the held-out 20%)", *digits_run),
    ]
    if minilm_run:
        lines += _markdown(
            "all-MiniLM-L6-v2, sequence length 128 (fidelity to fp32 on examples/sentences.txt)",
            *minilm_run,
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compress.md").write_text("\n".join(lines) + "\n")
    runs = {"digits": digits_run} | ({"minilm": minilm_run} if minilm_run else {})
    data = {name: [v.row(run[2], run[1]) for v in run[0]] for name, run in runs.items()}
    (RESULTS / "compress.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
