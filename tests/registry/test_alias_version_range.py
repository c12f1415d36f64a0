"""Registry bugs schemathesis found against the live server, pinned here."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from aiaas.errors import InvalidArgument
from aiaas.registry.http import registry_routes


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("version", [11697895922894068776960, 2**63, 2**31])
def test_an_alias_to_a_version_no_database_can_hold_is_a_400(registry, onnx_file, version):
    # PUT .../aliases/production {"version": 11697895922894068776960} overflowed the
    # database's integer and was answered 500.
    registry.register("mlp", onnx_file("v1"))
    app = Starlette(routes=registry_routes(registry, loopback_only=True))
    client = TestClient(app, client=("127.0.0.1", 50000))
    answer = client.put("/v2/registry/models/mlp/aliases/production", json={"version": version})
    assert answer.status_code == 400
    assert "invalid version" in answer.json()["error"]
    with pytest.raises(InvalidArgument, match="invalid version"):
        registry.set_alias("mlp", "production", version)
    assert registry.aliases("mlp") == {}
