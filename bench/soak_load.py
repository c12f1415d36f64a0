"""One soak load generator, run as its own process: `python -m bench.soak_load KIND ...`.

KIND is rest (V2 JSON over httpx), grpc (ModelInfer over grpcio with tritonclient's
stubs) or llm (/v1/completions streams). Each generator is a process of its own, so
tritonclient's protobuf modules never meet aiaas's, and a Python client's CPU does not
throttle another protocol's. Load is open loop (`--rate`: requests start on schedule
whatever the server does, latency counted from the scheduled start, so a slow server
cannot hide its queue) or closed loop (`--concurrency`: for measuring capacity).

Every finished request is one line in `--out`: end time (epoch s), latency ms, 1/0 for
ok/failed, and the model version that answered ("-" where the protocol has none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import IO

import numpy as np

from bench import wire

#: One request; returns the answering model version, raises on any failure.
Send = Callable[[], Awaitable[str]]
#: Requests started and not yet answered (most wait for a connection): past this the
#: server has stalled for minutes, and the run is broken rather than slow.
MAX_OUTSTANDING = 50_000
MLP_FEED = {"input": np.random.default_rng(0).random((1, 64), np.float32)}
PROMPT = "The capital of France is"


def rest_sender(url: str, model: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import httpx

    client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))
    body = wire.json_body(MLP_FEED)
    path = f"{url}/v2/models/{model}/infer"
    headers = {"content-type": "application/json"}

    async def send() -> str:
        response = await client.post(path, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
        answer = response.json()
        if not answer.get("outputs"):
            raise RuntimeError("no outputs")
        return str(answer.get("model_version", "-"))

    return send, client.aclose


def grpc_sender(target: str, model: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    channel = grpc.aio.insecure_channel(target)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in MLP_FEED.items():
        tensor = request.inputs.add(name=name, datatype=wire.V2_DATATYPES[array.dtype])
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(array.tobytes())

    async def send() -> str:
        response = await stub.ModelInfer(request, timeout=30)
        if not response.raw_output_contents:
            raise RuntimeError("no outputs")
        return response.model_version or "-"

    async def close() -> None:
        await channel.close()

    return send, close


def llm_sender(url: str, model: str, max_tokens: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """A stream counts as ok only if it is a 200 that ends with `data: [DONE]`."""
    import httpx

    client = httpx.AsyncClient(timeout=60)
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "stream": True}

    async def send() -> str:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    return "-"
                if line.startswith("data: ") and "error" in json.loads(line[6:]):
                    raise RuntimeError(line)
        raise RuntimeError("stream ended without [DONE]")

    return send, client.aclose


async def _one(send: Send, started: float, out: IO[str]) -> None:
    """`started` on the perf_counter clock: the scheduled start in open loop."""
    try:
        version, ok = await send(), 1
    except (Exception, asyncio.CancelledError):  # every failure, and a request never answered
        version, ok = "-", 0
    latency_ms = (time.perf_counter() - started) * 1000
    out.write(f"{time.time():.3f} {latency_ms:.3f} {ok} {version}\n")


async def open_loop(
    send: Send, rate: float, seconds: float, connections: int, out: IO[str]
) -> None:
    """Arrivals on schedule; at most `connections` requests on the wire, the rest wait
    their turn (and that wait counts in their latency), as behind a client's pool. An
    unbounded fan-out would measure Python's connection churn, not the server."""
    gate = asyncio.Semaphore(connections)

    async def gated() -> str:
        async with gate:
            return await send()

    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    index = 0
    while (due := start + index / rate) - start < seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if len(tasks) >= MAX_OUTSTANDING:
            raise SystemExit(f"more than {MAX_OUTSTANDING} requests in flight: the load broke")
        task = asyncio.create_task(_one(gated, due, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=60)
        for task in pending:  # unanswered after a minute: recorded as failed
            task.cancel()
        await asyncio.gather(*pending)


async def closed_loop(send: Send, concurrency: int, seconds: float, out: IO[str]) -> None:
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            await _one(send, time.perf_counter(), out)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run(args: argparse.Namespace) -> None:
    if args.kind == "rest":
        send, close = rest_sender(args.url, args.model)
    elif args.kind == "grpc":
        send, close = grpc_sender(args.url, args.model)
    else:
        send, close = llm_sender(args.url, args.model, args.max_tokens)
    with open(args.out, "w", buffering=1) as out:
        try:
            if args.rate:
                await open_loop(send, args.rate, args.seconds, args.concurrency, out)
            else:
                await closed_loop(send, args.concurrency, args.seconds, out)
        finally:
            await close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_load")
    parser.add_argument("kind", choices=["rest", "grpc", "llm"])
    parser.add_argument("--url", required=True, help="http://host:port, or host:port for gRPC")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests/s")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="clients (closed loop), connections (open)"
    )
    parser.add_argument("--max-tokens", type=int, default=16)
    try:
        asyncio.run(run(parser.parse_args()))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group; the soak reports it
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
