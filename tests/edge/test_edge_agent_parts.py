"""The agent's parts on their own: the folder layout's atomic swap, the backoff's bounds,
the checks a version must pass."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest
from edge_agent_support import add_model, bundle, failing_model

from aiaas.edge import manifest
from aiaas.edge.agent import Agent, AgentConfig
from aiaas.edge.checks import check_version
from aiaas.edge.layout import AgentDir
from aiaas.edge.manifest import BundleRejected


def _staged(layout: AgentDir, version: int, value: float) -> None:
    add_model(layout.staging(version) / "model.onnx", value)


def test_install_points_current_at_a_complete_folder_and_prune_keeps_two(tmp_path):
    layout = AgentDir(tmp_path / "device")
    layout.prepare()
    assert layout.installed() is None
    for version in (1, 2, 3):
        _staged(layout, version, version)
        layout.install(version, {"name": "mlp", "version": version, "sha256": f"{version:064x}"})
    assert (layout.current).resolve().name == "3"
    assert (layout.current / "3" / "model.onnx").is_file()
    assert layout.installed() == {"name": "mlp", "version": 3, "sha256": f"{3:064x}"}
    assert not list(layout.root.glob("staging-*"))
    layout.prune({layout.root / "versions" / "3", layout.root / "versions" / "2"})
    assert sorted(p.name for p in (layout.root / "versions").iterdir()) == ["2", "3"]
    assert layout.kept(2, f"{2:064x}") == layout.root / "versions" / "2"
    assert layout.kept(2, f"{9:064x}") is None  # same number, other content: not reused


def test_a_leftover_of_an_interrupted_swap_is_cleared_and_current_unchanged(tmp_path):
    layout = AgentDir(tmp_path / "device")
    layout.prepare()
    _staged(layout, 1, 1)
    layout.install(1, {"name": "mlp", "version": 1, "sha256": "a" * 64})
    (layout.root / ".current.tmp").symlink_to("versions/9")  # killed before os.replace
    layout.prepare()
    assert not (layout.root / ".current.tmp").is_symlink()
    assert layout.current.resolve().name == "1"


def test_the_version_being_served_is_never_replaced_in_place(tmp_path):
    layout = AgentDir(tmp_path / "device")
    layout.prepare()
    _staged(layout, 1, 1)
    layout.install(1, {"name": "mlp", "version": 1, "sha256": "a" * 64})
    _staged(layout, 1, 5)
    with pytest.raises(OSError, match="being served"):
        layout.install(1, {"name": "mlp", "version": 1, "sha256": "b" * 64})
    assert json.loads((layout.current / "registry.json").read_text())["sha256"] == "a" * 64


@pytest.mark.parametrize("failures", [1, 2, 3, 6, 20])
def test_backoff_grows_from_the_poll_interval_to_the_cap_with_jitter(tmp_path, failures):
    config = AgentConfig(
        registry_url="http://127.0.0.1:9",
        model_uri="models:/mlp@production",
        directory=tmp_path,
        device_id="d",
        poll_secs=0.5,
        max_backoff_secs=8.0,
    )
    agent = Agent(config)
    try:
        agent._failures = failures
        ceiling = min(8.0, 0.5 * 2**failures)
        delays = [agent._delay() for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered: a fleet does not retry in step
        agent._failures = 0
        assert agent._delay() == 0.5
    finally:
        agent.close()


def test_checks_accept_a_plain_version_without_a_key_and_refuse_it_with_one(tmp_path):
    folder = tmp_path / "plain"
    add_model(folder / "model.onnx", 1)
    assert check_version(folder, None) is None
    keys = manifest.keygen(tmp_path / "keys")
    with pytest.raises(BundleRejected, match="not a signed bundle"):
        check_version(folder, keys.public)


def test_checks_verify_a_signed_bundle_and_its_onnxruntime_floor(tmp_path):
    keys = manifest.keygen(tmp_path / "keys")
    good = bundle(tmp_path / "good", 1, keys.private, fields={"min_onnxruntime": ort.__version__})
    assert check_version(good, keys.public)["name"] == "mlp"
    newer = bundle(tmp_path / "newer", 1, keys.private, fields={"min_onnxruntime": "999.1"})
    with pytest.raises(BundleRejected, match=r"needs onnxruntime >= 999\.1") as refused:
        check_version(newer, keys.public)
    assert str(tmp_path) not in refused.value.message
    broken = bundle(tmp_path / "broken", 1, None, model=failing_model(tmp_path / "f.onnx"))
    with pytest.raises(BundleRejected, match="the sample inference failed"):
        check_version(broken, None)
