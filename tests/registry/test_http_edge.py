"""What an edge agent needs from the registry's HTTP API: conditional reads (304 for an
alias that has not moved), resumable file downloads (byte ranges guarded by the sha256
ETag) and device reports kept in SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from aiaas.registry.http import registry_routes

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOOPBACK = ("127.0.0.1", 50000)
ALIAS = "/v2/registry/models/mlp/aliases/production"


@pytest.fixture
def filled(registry, onnx_file, tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    onnx_file("v1").replace(folder / "model.onnx")
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 40)
    registry.register("mlp", folder)
    registry.register("mlp", onnx_file("v2"))
    registry.set_alias("mlp", "production", 1)
    return registry


def _client(registry, **options) -> TestClient:
    app = Starlette(routes=registry_routes(registry, **options))
    return TestClient(app, client=LOOPBACK)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_alias_that_has_not_moved_answers_304_and_a_moved_one_200(filled):
    client = _client(filled)
    first = client.get(ALIAS)
    etag = first.headers["etag"]
    unchanged = client.get(ALIAS, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    filled.set_alias("mlp", "production", 2)
    moved = client.get(ALIAS, headers={"If-None-Match": etag})
    assert moved.status_code == 200
    assert moved.json()["version"] == 2
    assert moved.headers["etag"] != etag


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_file_downloads_whole_or_from_an_offset_under_its_sha256_etag(filled):
    client = _client(filled)
    version = client.get("/v2/registry/models/mlp/versions/1").json()
    item = next(f for f in version["files"] if f["path"] == "weights.bin")
    url = "/v2/registry/models/mlp/versions/1/files/weights.bin"
    whole = client.get(url)
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == item["sha256"]
    assert whole.headers["etag"] == f'"{item["sha256"]}"'
    assert whole.headers["accept-ranges"] == "bytes"
    tail = client.get(url, headers={"Range": "bytes=1000-", "If-Range": whole.headers["etag"]})
    assert tail.status_code == 206
    assert tail.content == whole.content[1000:]
    assert (
        tail.headers["content-range"] == f"bytes 1000-{item['size_bytes'] - 1}/{item['size_bytes']}"
    )
    middle = client.get(url, headers={"Range": "bytes=10-19"})
    assert middle.content == whole.content[10:20]
    # A resume against other content starts over: the whole file, not a spliced one.
    changed = client.get(url, headers={"Range": "bytes=1000-", "If-Range": '"0000"'})
    assert changed.status_code == 200
    assert changed.content == whole.content
    past = client.get(url, headers={"Range": f"bytes={item['size_bytes']}-"})
    assert past.status_code == 416
    assert set(past.json()) == {"error"}
    assert client.get(url, headers={"If-None-Match": whole.headers["etag"]}).status_code == 304


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "path",
    [
        "/v2/registry/models/mlp/versions/1/files/nope.bin",
        "/v2/registry/models/mlp/versions/9/files/model.onnx",
        "/v2/registry/models/nope/versions/1/files/model.onnx",
    ],
)
def test_a_missing_file_is_404(filled, path):
    response = _client(filled).get(path)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


def _report(version: int | None, **extra) -> dict:
    return {
        "model_uri": "models:/mlp@production",
        "state": "serving",
        "version": version,
        "counts": {"inferences": 3, "refused": 0},
        "agent_time": "2026-12-04T23:00:00+00:00",
        **extra,
    }


def test_devices_report_and_are_listed_by_model(filled):
    client = _client(filled, admin_token=TOKEN)
    put = client.put("/v2/registry/devices/cam-1", json=_report(1), headers=AUTH)
    assert put.status_code == 200, put.text
    assert put.json()["version_uri"] == "models:/mlp/1"
    later = _report(2, last_error="offline for 30 s")
    assert client.put("/v2/registry/devices/cam-1", json=later, headers=AUTH).status_code == 200
    other = {**_report(1), "model_uri": "models:/other@production"}
    assert client.put("/v2/registry/devices/cam-2", json=other, headers=AUTH).status_code == 200
    everything = client.get("/v2/registry/devices").json()["devices"]
    assert [(d["device_id"], d["model"], d["version"]) for d in everything] == [
        ("cam-1", "mlp", 2),
        ("cam-2", "other", 1),
    ]
    mlp = client.get("/v2/registry/devices", params={"model": "mlp"}).json()["devices"]
    assert [d["device_id"] for d in mlp] == ["cam-1"]
    assert mlp[0]["last_error"] == "offline for 30 s"
    assert mlp[0]["counts"] == {"inferences": 3, "refused": 0}
    assert [d.device_id for d in filled.devices("mlp")] == ["cam-1"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("device", "body", "status"),
    [
        ("cam-1", _report(1), 401),
        ("bad id!", _report(1), 400),
        ("cam-1", {**_report(1), "state": "Serving!"}, 400),
        ("cam-1", {**_report(1), "model_uri": "not-a-uri"}, 400),
        ("cam-1", {**_report(1), "sha256": "xyz"}, 400),
        ("cam-1", {**_report(1), "extra": 1}, 400),
    ],
)
def test_bad_or_unauthorized_reports_are_refused_and_not_stored(filled, device, body, status):
    client = _client(filled, admin_token=TOKEN)
    headers = {} if status == 401 else AUTH
    response = client.put(f"/v2/registry/devices/{device}", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert filled.devices() == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_reports_without_a_token_need_loopback_only(filled):
    url = "/v2/registry/devices/cam-1"
    assert _client(filled).put(url, json=_report(1)).status_code == 403
    assert _client(filled, loopback_only=True).put(url, json=_report(1)).status_code == 200
