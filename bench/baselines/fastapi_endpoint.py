"""The endpoint a user writes by hand: FastAPI + pydantic parse the V2 JSON, one
ONNX Runtime call per request, served by uvicorn. The baseline aiaas must beat.

Run: python bench/baselines/fastapi_endpoint.py MODEL.onnx PORT
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[Tensor]


def build_app(model_path: str) -> FastAPI:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    app = FastAPI()

    @app.post("/v2/models/{model_name}/infer")
    async def infer(model_name: str, request: InferRequest) -> dict[str, Any]:
        feed = {
            t.name: np.asarray(t.data, dtype=DTYPES[t.datatype]).reshape(t.shape)
            for t in request.inputs
        }
        results = session.run(output_names, feed)
        return {
            "model_name": model_name,
            "id": request.id,
            "outputs": [
                {"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
                for n, r in zip(output_names, results, strict=True)
            ],
        }

    return app


if __name__ == "__main__":
    uvicorn.run(
        build_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )
