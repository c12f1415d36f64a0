"""A model served by registry alias says where it came from: its metadata names the run,
the dataset fingerprint, the recipe digest and the parent versions the registry recorded
(REST and tritonclient over HTTP and gRPC), its lineage link is the registry's; and with
--provenance-header, across alias moves under load, every answer names the version
whose output it is."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import grpc
import httpx
import models
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from oip_metadata import oip_parameters
from traffic import wait_for
from tritonclient.grpc import service_pb2, service_pb2_grpc

from aiaas import lineage

HEADER = "aiaas-model-version"
FINGERPRINT = "sha256:" + "f" * 64
TRAIN_RECIPE = {"epochs": 3, "lr": 0.1}
COMPRESS_RECIPE = {"quantize": "int8"}
PRODUCTION = "models:/digits-int8@production"


@pytest.fixture
def serve(start_server, registry_uri, artifact_root, tmp_path):
    def start(*uris: str, flags: tuple[str, ...] = ()):
        registry_flags = ["--registry-uri", registry_uri, "--artifact-root", artifact_root]
        registry_flags += ["--registry-cache-dir", str(tmp_path / "cache")]
        model_flags = [arg for uri in uris for arg in ("--model", uri)]
        return start_server(
            None, *registry_flags, *model_flags, "--registry-poll-secs", "0.2", *flags
        )

    return start


@pytest.fixture
def chain(registry, tmp_path):
    """digits/1 (trained: a run, data, a recipe) and digits-int8/1 made from it, whose file
    also carries its own record (with a path parent the registry does not know)."""
    trained_file = tmp_path / "digits.onnx"
    onnx.save(models.add_constant(1.0), trained_file)
    trained = registry.register(
        "digits",
        trained_file,
        run_id="run-7",
        params={"dataset_fingerprint": FINGERPRINT, "batch_size": 32},
        recipe=TRAIN_RECIPE,
    )
    compressed = models.add_constant(2.0)
    file_record = lineage.make_record(
        "compress",
        run_id="run-7",
        dataset_fingerprint=FINGERPRINT,
        recipe=COMPRESS_RECIPE,
        parents=[
            {"uri": trained.uri, "sha256": "0" * 64},
            {"path": str(tmp_path / "digits.onnx"), "sha256": "1" * 64},
        ],
    )
    lineage.set_on_model(compressed, file_record)
    compressed_file = tmp_path / "digits-int8.onnx"
    onnx.save(compressed, compressed_file)
    child = registry.register(
        "digits-int8",
        compressed_file,
        parents=[trained.uri],
        run_id="run-7",
        params={"dataset_fingerprint": FINGERPRINT},
        recipe=COMPRESS_RECIPE,
    )
    registry.set_alias("digits-int8", "production", 1)
    return trained, child


def test_a_registry_version_names_its_run_data_recipe_and_parents(serve, chain):
    trained, child = chain
    server = serve(PRODUCTION)
    expected_parents = [{"uri": "models:/digits/1", "sha256": trained.sha256}]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        parameters = client.get("/v2/models/digits-int8").json()["parameters"]
        assert client.get("/v2/models/digits-int8/versions/1").json()["parameters"] == parameters
    assert parameters["run_id"] == "run-7"
    assert parameters["dataset_fingerprint"] == FINGERPRINT
    assert parameters["recipe_digest"] == lineage.recipe_digest(COMPRESS_RECIPE)
    assert json.loads(parameters["parents"])[:1] == expected_parents
    assert parameters["model_uri"] == PRODUCTION
    assert parameters["registry_version"] == 1
    assert parameters["version_uri"] == "models:/digits-int8/1"
    assert parameters["sha256"] == child.sha256
    assert parameters["lineage"] == "/v2/registry/models/digits-int8/versions/1/lineage"

    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    assert http.get_model_metadata("digits-int8")["parameters"] == parameters
    http.close()
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as rpc:
        assert oip_parameters(rpc.get_model_metadata("digits-int8")) == parameters


def test_the_lineage_link_leads_to_the_parent_and_the_server_merges_the_file_record(
    serve, chain, tmp_path
):
    trained, _ = chain
    server = serve(PRODUCTION)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        link = client.get("/v2/models/digits-int8").json()["parameters"]["lineage"]
        tree = client.get(link).json()
        assert [node["uri"] for node in tree["ancestors"]] == [trained.uri]
        record = client.get("/v2/models/digits-int8/lineage").json()
    # The registry's facts, over the file's: the registry's parent hash wins, the path
    # parent that only the file knew is kept.
    assert record["run_id"] == "run-7"
    assert record["step"] == "compress"
    assert record["recipe_digest"] == lineage.recipe_digest(COMPRESS_RECIPE)
    assert record["parents"] == [
        {"uri": trained.uri, "sha256": trained.sha256},
        {"path": str(tmp_path / "digits.onnx"), "sha256": "1" * 64},
    ]


class LabelledTraffic:
    """8 clients (REST and gRPC, half each) sending y = x + v requests in a loop; each
    answer's provenance must name version v, the version whose output it is."""

    def __init__(self, server, model: str, sha256: dict[int, str], clients: int = 8) -> None:
        self.server, self.model, self.sha256 = server, model, sha256
        self.latest = [0] * clients
        self.seen: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(clients)
        self._futures = [self._pool.submit(self._loop, seed) for seed in range(clients)]

    def __enter__(self) -> LabelledTraffic:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for future in self._futures:
            future.result()  # re-raises a client's failed check
        self._pool.shutdown()

    def everyone_on(self, version: int) -> None:
        time.sleep(1.0)
        wait_for(lambda: self.latest == [version] * len(self.latest))

    def _check(self, seed: int, added: float, provenance: str) -> None:
        version = round(added)
        assert provenance == f"models:/{self.model}/{version} sha256={self.sha256[version]}"
        self.seen.append(version)
        self.latest[seed] = version

    def _loop(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                x = rng.normal(size=(1 + seed % 3, 4)).astype(np.float32)
                answered = self._rest(x) if seed % 2 == 0 else self._grpc(stub, x)
                if answered is None:
                    continue
                y, provenance = answered
                added = np.unique(np.round(y - x, 3))
                assert len(added) == 1, added
                self._check(seed, float(added[0]), provenance)

    def _rest(self, x: np.ndarray) -> tuple[np.ndarray, str] | None:
        body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32"}]}
        body["inputs"][0]["data"] = x.ravel().tolist()
        url = f"{self.server.url}/v2/models/{self.model}/infer"
        response = httpx.post(url, json=body, timeout=30)
        if response.status_code != 200:
            self.failures.append(response.text)
            return None
        y = np.array(response.json()["outputs"][0]["data"], np.float32).reshape(x.shape)
        return y, response.headers[HEADER]

    def _grpc(self, stub, x: np.ndarray) -> tuple[np.ndarray, str] | None:
        request = service_pb2.ModelInferRequest(model_name=self.model)
        request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
        request.raw_input_contents.append(x.tobytes())
        try:
            answer, call = stub.ModelInfer.with_call(request, timeout=30)
        except grpc.RpcError as error:
            self.failures.append(str(error))
            return None
        y = np.frombuffer(answer.raw_output_contents[0], np.float32).reshape(x.shape)
        return y, dict(call.trailing_metadata())[HEADER]


def test_across_alias_moves_under_load_every_answer_names_the_version_that_computed_it(
    serve, registry, tmp_path
):
    sha256 = {}
    for value in (1, 2, 3):
        path = tmp_path / f"mlp-{value}.onnx"
        onnx.save(models.add_constant(float(value)), path)
        version = registry.register("mlp", path)
        sha256[version.version] = version.sha256
    assert sorted(sha256) == [1, 2, 3]  # version v answers x + v
    registry.set_alias("mlp", "production", 1)
    server = serve("models:/mlp@production", flags=("--provenance-header",))
    with LabelledTraffic(server, "mlp", sha256) as traffic:
        traffic.everyone_on(1)
        registry.set_alias("mlp", "production", 2)
        traffic.everyone_on(2)
        registry.set_alias("mlp", "production", 3)
        traffic.everyone_on(3)
    assert traffic.failures == []
    assert set(traffic.seen) == {1, 2, 3}
