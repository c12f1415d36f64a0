"""One open gRPC ModelStreamInfer whose requests the test sends one at a time, for the
tests of the open-streams-per-client limit."""

from __future__ import annotations

import queue
import threading

import grpc


class GrpcStream:
    """One open ModelStreamInfer: requests go in through a queue the test controls."""

    def __init__(self, channel: grpc.Channel) -> None:
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.pb = service_pb2
        self.requests: queue.Queue = queue.Queue()
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        self.call = stub.ModelStreamInfer(iter(self.requests.get, None))
        self.answers: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for answer in self.call:
                self.answers.put(answer)
        except grpc.RpcError as error:
            self.answers.put(error)

    def ask(self, model: str = "floats", width: int | None = None) -> object:
        """One request of an identity FP32 model with input "x" (shape [1], or [1, width]);
        its answer or error."""
        request = self.pb.ModelInferRequest(model_name=model)
        shape = [1] if width is None else [1, width]
        tensor = request.inputs.add(name="x", datatype="FP32", shape=shape)
        tensor.contents.fp32_contents.extend([2.0] * (width or 1))
        self.requests.put(request)
        return self.answers.get(timeout=60)

    def close(self) -> None:
        self.requests.put(None)
        self.thread.join(60)
