"""schemathesis against the live server: every operation of /openapi.json, then the
links between them as a state machine, over real HTTP on 127.0.0.1. The checks: no
5xx, every status, content type, header and body as the document says, and every
answer within the request timeout (a hang fails the test).

The document is fetched from the server and fuzzed twice: as published (any string
for a model name), and narrowed to the served names (models, registry entries,
region), so that generated requests reach the models instead of stopping at 404.

`make test` runs a few seeded examples per operation; `make fuzz` sets
AIAAS_FUZZ_EXAMPLES (and AIAAS_FUZZ_SEED=random) for the long run.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import httpx
import models
import pytest
from fuzzing import fuzz_examples, fuzz_settings
from hypothesis import given, stateful
from tiny_llama import write_tiny_llama

from aiaas.registry import Registry
from aiaas.serve.protocol.openapi import build_document
from aiaas.serve.protocol.openapi.v2_paths import INFER_EXAMPLES

EXAMPLES = fuzz_examples(6)
STATEFUL_STEPS = int(os.environ.get("AIAAS_FUZZ_STEPS", "8"))
#: A hang is a failure: no answer here (generation included, the model is tiny) is slow.
REQUEST_TIMEOUT_S = 30
MODELS = ["add_sub", "probe", "tiny"]
NAMES = {"model": [*MODELS, "absent"], "name": ["mlp", "absent"], "alias": ["production"]}
REGION = ["r0"]
OPERATIONS = sorted(
    op["operationId"]
    for item in build_document(registry=True)["paths"].values()
    for op in item.values()
    if isinstance(op, dict) and "operationId" in op
)


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub")
    models.save(models.batch_probe(), repo, "probe", config="max_batch_size: 8\n")
    # A short context bounds any generation the fuzzer asks for (n up to 128 included).
    write_tiny_llama(repo, "tiny", 1, context_length=48)
    registry_uri = f"sqlite:///{module_tmp / 'registry.db'}"
    artifacts = str(module_tmp / "artifacts")
    models.save(models.identity("FP32"), module_tmp / "sources", "mlp")
    source = module_tmp / "sources" / "mlp" / "1" / "model.onnx"
    with Registry.open(registry_uri, artifacts) as registry:
        first = registry.register("mlp", source)
        registry.set_alias("mlp", "production", first.version)
    return module_server(
        repo,
        "--model-control-mode", "explicit",
        "--load-model", "*",
        "--registry-uri", registry_uri,
        "--artifact-root", artifacts,
    )  # fmt: skip


def _narrowed(document: dict[str, Any]) -> dict[str, Any]:
    """Path parameters and body 'model' fields limited to the served names."""
    narrowed = copy.deepcopy(document)
    for item in narrowed["paths"].values():
        for parameter in item.get("parameters", []):
            choices = NAMES.get(parameter["name"], REGION if parameter["name"] == "region" else [])
            if choices:
                parameter["schema"] = {"enum": choices}
    schemas = narrowed["components"]["schemas"]
    for body in ("CompletionRequest", "ChatCompletionRequest", "EmbeddingRequest"):
        schemas[body]["properties"]["model"] = {"enum": MODELS}
    return narrowed


@pytest.fixture(scope="module", params=["published", "served-names"])
def schema(server, request):
    import schemathesis

    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    if request.param == "served-names":
        document = _narrowed(document)
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.update(base_url=server.url, request_timeout=REQUEST_TIMEOUT_S)
    return loaded


def no_server_fault(ctx, response, case) -> None:
    """No 5xx but 503, which the document gives where a model may be not ready or the
    server overloaded (status_code_conformance holds it to those operations)."""
    status = response.status_code
    assert status < 500 or status == 503, f"{status}: {response.text[:500]}"


def _checks() -> list:
    from schemathesis import checks

    return [
        no_server_fault,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_headers_conformance,
        checks.response_schema_conformance,
    ]


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_every_operation_answers_as_documented(schema, server, operation_id):
    operation = schema.find_operation_by_id(operation_id)
    checks = _checks()

    @given(case=operation.as_strategy())
    @fuzz_settings(EXAMPLES)
    def fuzz(case):
        response = case.call(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
        case.validate_response(response, checks=checks)

    fuzz()
    assert server.process.poll() is None, server.logs()


def test_the_documented_infer_example_is_answered_as_documented(schema, server):
    """The document's add_sub example, sent to add_sub: a 200 that matches the schema."""
    # The fuzzing before may have unloaded it, or loaded it with another configuration.
    load = httpx.post(f"{server.url}/v2/repository/models/add_sub/load", json={}, timeout=60)
    assert load.status_code == 200, load.text
    operation = schema.find_operation_by_id("modelInfer")
    case = operation.Case(
        path_parameters={"model": "add_sub"},
        body=INFER_EXAMPLES["add_sub"]["value"],
        media_type="application/json",
    )
    response = case.call(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
    case.validate_response(response, checks=_checks())
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [11, 22, 33, 44]


def test_linked_operations_in_sequence_answer_as_documented(schema, server):
    machine = schema.as_state_machine()
    checks = _checks()

    class Machine(machine):  # type: ignore[misc, valid-type]
        def call(self, case, **kwargs):
            return case.call(base_url=server.url, timeout=REQUEST_TIMEOUT_S)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=checks)

    stateful.run_state_machine_as_test(
        Machine, settings=fuzz_settings(EXAMPLES, stateful_step_count=STATEFUL_STEPS)
    )
    assert httpx.get(f"{server.url}/v2/health/live", timeout=10).json() == {"live": True}
