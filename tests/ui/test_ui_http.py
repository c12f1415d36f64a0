"""The catalogue's HTML over plain HTTP from a real server: every user-provided string is
escaped (a model named `<script>` is shown, never run), search filters, pages answer
404/400 for what does not exist, and admin actions need the admin token."""

from __future__ import annotations

import html
from pathlib import Path

import httpx
import markupsafe
import models
import onnx
import pytest
from catalogue_fixtures import TOKEN, digits_family

from aiaas.registry import Registry

#: Registry names allow no markup, so the hostile strings go everywhere else they can.
HOSTILE = "<script>alert('x')</script>"
HOSTILE_ATTRIBUTE = '" onmouseover="alert(1)'
#: A folder in a model repository may be named anything a file system allows.
HOSTILE_FOLDER = "<script>alert(1)<"


def _hostile_registry(root: Path) -> tuple[str, str]:
    made = digits_family(root)
    with made.open() as registry:
        path = root / "sources" / "hostile.onnx"
        onnx.save(models.add_constant(5.0), path)
        registry.register(
            "hostile", path, description=HOSTILE,
            tags={HOSTILE: HOSTILE_ATTRIBUTE, "note": HOSTILE},
            metrics={HOSTILE: 1.0}, run_id=HOSTILE,
            params={HOSTILE: HOSTILE}, recipe={"step": HOSTILE}, parents=["models:/digits/1"],
        )  # fmt: skip
        registry.tag("models:/hostile", {"owner": HOSTILE})
        registry.set_alias("hostile", "production", 1)
    return made.uri, made.artifact_root


@pytest.fixture(scope="module")
def registry_server(module_tmp, module_server):
    uri, artifacts = _hostile_registry(module_tmp / "registry")
    repo = module_tmp / "repo"
    models.save(models.identity("FP32"), repo, HOSTILE_FOLDER)
    return module_server(
        repo, "--registry-uri", uri, "--artifact-root", artifacts,
        "--registry-cache-dir", str(module_tmp / "cache"), "--model", "models:/digits@production",
        "--admin-token", TOKEN, "--grpc-port", "0",
    )  # fmt: skip


@pytest.fixture(scope="module")
def plain_server(module_tmp, module_server):
    """No registry and no admin token: the repository's models, actions refused."""
    repo = module_tmp / "plain"
    models.save(models.add_sub(), repo, "add_sub")
    return module_server(repo, "--grpc-port", "0")


@pytest.fixture(scope="module")
def explicit_server(module_tmp, module_server):
    """Explicit model control with an admin token: load and unload from the catalogue."""
    repo = module_tmp / "explicit"
    models.save(models.add_sub(), repo, "add_sub")
    return module_server(
        repo, "--model-control-mode", "explicit", "--admin-token", TOKEN, "--grpc-port", "0"
    )


@pytest.fixture
def client(registry_server):
    with httpx.Client(base_url=registry_server.url, timeout=30) as client:
        yield client


def _pages(client: httpx.Client) -> dict[str, str]:
    folder = httpx.URL("/ui/models/").join(HOSTILE_FOLDER.replace("<", "%3C").replace(">", "%3E"))
    paths = [
        "/ui",
        "/ui/models/hostile",
        "/ui/models/hostile/versions/1",
        "/ui/models/digits/versions/1",  # the hostile version is its descendant
        str(folder),
        f"{folder}/versions/1",
    ]
    pages = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        pages[path] = response.text
    return pages


def test_every_user_provided_string_is_escaped_on_every_page(client):
    pages = _pages(client)
    for path, text in pages.items():
        assert "<script>alert" not in text, path
        assert 'onmouseover="alert' not in text, path
    shown = "\n".join(pages.values())
    assert str(markupsafe.escape(HOSTILE_FOLDER)) in pages["/ui"]
    version_page = pages["/ui/models/hostile/versions/1"]
    # description, a tag's key and another's value, a metric's name, the run id
    assert version_page.count(str(markupsafe.escape(HOSTILE))) >= 5
    assert version_page.count("<script") == 1  # only the page's own script tag
    assert "&lt;script&gt;" in shown


def test_recipe_and_params_are_shown_as_escaped_json(client):
    page = client.get("/ui/models/hostile/versions/1").text
    assert "\\u003cscript\\u003e" in page  # Jinja's tojson escapes <, > and &


def test_pages_send_a_content_security_policy_that_forbids_inline_scripts(client):
    policy = client.get("/ui").headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [HOSTILE_FOLDER, "digits", "digits-int8", "digits-pruned", "hostile"]),
        ("pruned", ["digits-pruned"]),
        ("quant=int8", ["digits-int8"]),
        ("accuracy>0.97", ["digits"]),
        ("digits accuracy>=0.965 task=classification", ["digits", "digits-int8", "digits-pruned"]),
        ("team=vision loss<0.15", []),  # no one version has both
    ],
)
def test_search_filters_the_list(client, query, expected):
    response = client.get("/ui", params={"q": query})
    assert response.status_code == 200
    rows = [html.unescape(row.split('"')[0]) for row in response.text.split('data-model="')[1:]]
    assert rows == expected


def test_a_bad_metric_comparison_is_a_400_page_that_says_why(client):
    response = client.get("/ui", params={"q": "accuracy>high"})
    assert response.status_code == 400
    assert "is not a number" in response.text


@pytest.mark.parametrize(
    "path", ["/ui/models/nope", "/ui/models/digits/versions/9", "/ui/models/%3Cb%3E"]
)
def test_what_does_not_exist_is_a_404_page(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


def test_the_best_metric_and_serving_state_are_in_the_list(client):
    page = client.get("/ui").text
    row = page.split('data-model="digits"')[1].split("</tr>")[0]
    assert "accuracy 0.972" in row  # the best over versions, v2
    assert "production → v1" in row
    assert "yes</span> v1" in row  # served here: the alias's version


def test_admin_actions_need_the_token_and_never_echo_it(client, registry_server, module_tmp):
    url = "/ui/api/models/digits/aliases"
    body = {"alias": "staging", "version": 2}
    refused = client.post(url, json=body)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    wrong = client.post(url, json=body, headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/ui/api/admin", headers=bearer).status_code == 204
    moved = client.post(url, json=body, headers=bearer)
    assert moved.status_code == 200, moved.text
    tagged = client.post(
        "/ui/api/models/digits/versions/2/tags", json={"key": "ok", "value": "yes"}, headers=bearer
    )
    assert tagged.status_code == 200, tagged.text
    page = client.get("/ui/models/digits/versions/2", headers=bearer).text
    for text in (moved.text, tagged.text, page):
        assert TOKEN not in text
    assert "staging" in page
    assert "ok=yes" in page
    with Registry.open(f"sqlite:///{module_tmp / 'registry' / 'registry.db'}") as registry:
        assert registry.aliases("digits")["staging"] == 2


def test_bad_admin_bodies_are_400s(client):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    url = "/ui/api/models/digits/aliases"
    for body in ({"alias": "x"}, {"alias": "x", "version": 0}, {"alias": "1bad", "version": 1}):
        response = client.post(url, json=body, headers=bearer)
        assert response.status_code == 400, body
        assert "error" in response.json()
    missing = client.post("/ui/api/models/nope/aliases", json={"alias": "a", "version": 1},
                          headers=bearer)  # fmt: skip
    assert missing.status_code == 404


def test_load_outside_explicit_mode_is_refused_with_the_reason(client):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    response = client.post("/ui/api/models/digits/unload", headers=bearer)
    assert response.status_code == 400
    assert "explicit" in response.json()["error"]


def test_without_a_registry_the_repository_is_listed_and_actions_are_off(plain_server):
    with httpx.Client(base_url=plain_server.url, timeout=30) as client:
        page = client.get("/ui").text
        assert 'data-model="add_sub"' in page
        assert "admin-login" not in page  # no token configured: no sign-in at all
        version = client.get("/ui/models/add_sub/versions/1").text
        assert "model.onnx" in version
        assert 'data-input="a"' in version  # the try-it form, from the served signature
        refused = client.post(
            "/ui/api/models/add_sub/unload", headers={"Authorization": "Bearer anything"}
        )
        assert refused.status_code == 403


def test_the_server_logs_the_catalogue_url(plain_server):
    assert f"catalogue: {plain_server.url}/ui" in plain_server.logs()


def test_load_and_unload_as_admin_in_explicit_mode(explicit_server):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=explicit_server.url, timeout=30) as client:
        live = "/ui/models/add_sub/versions/1/live"
        assert 'data-loaded="no"' in client.get(live).text
        assert (
            'action="/ui/api/models/add_sub/load"'
            in client.get("/ui/models/add_sub/versions/1").text
        )
        assert client.post("/ui/api/models/add_sub/load").status_code == 401
        assert client.get("/v2/models/add_sub/ready").status_code != 200
        loaded = client.post("/ui/api/models/add_sub/load", headers=bearer)
        assert loaded.status_code == 200, loaded.text
        assert client.get("/v2/models/add_sub/ready").status_code == 200
        assert 'data-loaded="yes"' in client.get(live).text
        assert client.post("/ui/api/models/add_sub/unload", headers=bearer).status_code == 200
        assert client.get("/v2/models/add_sub/ready").status_code != 200
        missing = client.post("/ui/api/models/nope/load", headers=bearer)
        assert missing.status_code == 400  # Triton's "failed to load", as the V2 load API
        assert "failed to load 'nope'" in missing.json()["error"]


def test_a_served_version_shows_what_its_v2_metadata_says(client):
    served = client.get("/ui/models/digits/versions/1").text
    metadata = client.get("/v2/models/digits").json()["parameters"]
    assert metadata["model_uri"] == "models:/digits@production"
    for key, value in metadata.items():
        assert f'<th scope="row">{key}</th>' in served
        if isinstance(value, str):
            assert f"<code>{markupsafe.escape(value)}</code>" in served
    assert "V2 metadata" not in client.get("/ui/models/digits/versions/2").text  # not served


def test_a_version_page_lists_the_edge_devices_that_report_running_it(client):
    """The edge agent's reports (PUT /v2/registry/devices/ID) show on the version each
    device runs, the device's own words escaped, and not on the model's other versions."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for device, version in (("shelf-7", 1), ("door-2", 2)):
        report = {
            "model_uri": "models:/digits@production",
            "state": "serving",
            "version": version,
            "last_error": HOSTILE,
        }
        answer = client.put(f"/v2/registry/devices/{device}", json=report, headers=auth)
        assert answer.status_code == 200, answer.text
    first = client.get("/ui/models/digits/versions/1").text
    assert "Edge devices running it" in first
    assert "shelf-7" in first
    assert "door-2" not in first
    assert HOSTILE not in first
    assert str(markupsafe.escape(HOSTILE)) in first
    assert "door-2" in client.get("/ui/models/digits/versions/2").text
