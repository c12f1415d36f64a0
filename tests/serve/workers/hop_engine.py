"""An engine process for the hop's tests: a real repository and DataPlane behind an
EngineService on an ipc:// address, in a process of its own so that a test can kill it.

    python hop_engine.py REPO ADDRESS MODEL... [--grpc-port PORT]

Prints "bound" once clients can reach the address. With --grpc-port it also serves a
gRPC front end whose data plane is a RemoteDataPlane over the hop to itself: the path a
front-end process takes, in one process. The extra operation "hang" never answers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiaas.admin import AdminGuard
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.limits import RequestLimits
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.sources import DirectorySource
from aiaas.serve.workers.hop import EngineClient, EngineService
from aiaas.serve.workers.remote import RemoteDataPlane


async def hang() -> None:
    await asyncio.Event().wait()


async def serve_grpc(address: str, port: int, stop: asyncio.Event) -> None:
    from aiaas.serve.protocol.grpc_server import GrpcFrontEnd

    client = EngineClient(address)
    client.start()
    remote = RemoteDataPlane(client, RequestLimits())
    front = GrpcFrontEnd(
        remote,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        max_request_bytes=1 << 20,
        admin=AdminGuard(None),
    )
    await front.start()
    print("grpc", flush=True)
    await stop.wait()
    await front.stop(1)
    await client.close()


async def main(repo: Path, address: str, models: list[str], grpc_port: int | None) -> None:
    repository = ModelRepository([DirectorySource(repo)], ControlMode.EXPLICIT)
    await repository.start(models)
    service = EngineService(DataPlane(repository), address)
    service.ops["hang"] = hang
    service.bind()
    print("bound", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    running = asyncio.create_task(service.run())
    if grpc_port is not None:
        await serve_grpc(address, grpc_port, stop)
    await stop.wait()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await repository.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("repo", type=Path)
    parser.add_argument("address")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--grpc-port", type=int)
    args = parser.parse_args()
    asyncio.run(main(args.repo, args.address, args.models, args.grpc_port))
