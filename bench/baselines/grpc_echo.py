"""The ceiling of grpcio itself: a grpc.aio server whose ModelInfer runs no model and
returns an empty response. Whatever aiaas's gRPC front end does on top of grpcio
can only be measured against this, in the same run.

Run: python bench/baselines/grpc_echo.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc


class EchoServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request, context):
        return service_pb2.ModelInferResponse(model_name=request.model_name)

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(EchoServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"grpc echo on {port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
