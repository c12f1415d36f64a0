"""Serving by alias: RegistrySource hands the server Triton-layout folders that follow
the registry's aliases."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aiaas.errors import InvalidArgument, NotFound
from aiaas.registry.source import RegistrySource


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_an_alias_is_served_as_its_version_folder(registry, onnx_file, tmp_path):
    first = registry.register("mlp", onnx_file("v1"))
    registry.register("mlp", onnx_file("v2"))
    registry.set_alias("mlp", "production", 1)
    source = RegistrySource(registry, ["models:/mlp@production"], tmp_path / "cache")

    folders = source.list_models()
    assert folders == {"mlp": tmp_path / "cache" / "mlp"}
    assert _tree(folders["mlp"]) == ["1/model.onnx"]
    assert source.metadata("mlp") == {"registry_version": 1, "sha256": first.sha256}


def test_moving_the_alias_leaves_only_the_new_version_folder(registry, onnx_file, tmp_path):
    registry.register("mlp", onnx_file("v1"))
    second = registry.register("mlp", onnx_file("v2"))
    registry.set_alias("mlp", "production", 1)
    source = RegistrySource(registry, ["models:/mlp@production"], tmp_path / "cache")
    source.list_models()

    registry.set_alias("mlp", "production", 2)
    folder = source.list_models()["mlp"]
    assert _tree(folder) == ["2/model.onnx"]
    assert (folder / "2" / "model.onnx").read_bytes() == onnx_file("v2").read_bytes()
    assert source.metadata("mlp") == {"registry_version": 2, "sha256": second.sha256}
    assert not list((tmp_path / "cache" / ".staging").iterdir())


def test_versions_and_sidecars_are_served_too(registry, onnx_file, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    onnx_file("enc").rename(bundle / "model.onnx")
    (bundle / "vocab.txt").write_text("hello")
    registry.register("enc", bundle)
    registry.register("cls", onnx_file("cls"))
    source = RegistrySource(registry, ["models:/enc/1", "models:/cls/latest"], tmp_path / "c")
    folders = source.list_models()
    assert _tree(folders["enc"]) == ["1/model.onnx", "1/vocab.txt"]
    assert _tree(folders["cls"]) == ["1/model.onnx"]


def test_a_damaged_cache_is_downloaded_again(registry, onnx_file, tmp_path):
    registry.register("mlp", onnx_file("v1"))
    cache = tmp_path / "cache"
    RegistrySource(registry, ["models:/mlp/1"], cache).list_models()
    (cache / "mlp" / "1" / "model.onnx").write_bytes(b"tampered")

    restarted = RegistrySource(registry, ["models:/mlp/1"], cache)
    folder = restarted.list_models()["mlp"]
    assert (folder / "1" / "model.onnx").read_bytes() == onnx_file("v1").read_bytes()


def test_an_unresolvable_alias_keeps_serving_the_last_version(
    registry, onnx_file, tmp_path, caplog
):
    registry.register("mlp", onnx_file("v1"))
    registry.set_alias("mlp", "production", 1)
    source = RegistrySource(registry, ["models:/mlp@production", "models:/nope@x"], tmp_path / "c")
    with caplog.at_level(logging.WARNING, "aiaas.registry.source"):
        assert set(source.list_models()) == {"mlp"}
        registry.delete_alias("mlp", "production")
        assert _tree(source.list_models()["mlp"]) == ["1/model.onnx"]
    assert "still serving models:/mlp/1" in caplog.text
    assert "models:/nope@x" in caplog.text
    with pytest.raises(NotFound):
        source.metadata("nope")


def test_a_corrupt_artifact_is_never_served(registry, onnx_file, tmp_path):
    version = registry.register("mlp", onnx_file("v1"))
    blob = Path(registry.artifacts.blob_path(version.files[0].sha256))
    blob.write_bytes(b"x" * version.size_bytes)
    source = RegistrySource(registry, ["models:/mlp/1"], tmp_path / "cache")
    assert source.list_models() == {}
    assert not (tmp_path / "cache" / "mlp" / "1").exists()


@pytest.mark.parametrize(
    "uris", [["models:/mlp"], ["mlp"], ["models:/mlp/1", "models:/mlp@production"]]
)
def test_bad_uri_lists_are_refused(registry, tmp_path, uris):
    with pytest.raises(InvalidArgument):
        RegistrySource(registry, uris, tmp_path)


def test_moving_the_alias_back_downloads_the_old_version_again(registry, onnx_file, tmp_path):
    registry.register("mlp", onnx_file("v1"))
    registry.register("mlp", onnx_file("v2"))
    registry.set_alias("mlp", "production", 1)
    source = RegistrySource(registry, ["models:/mlp@production"], tmp_path / "cache")
    source.list_models()
    registry.set_alias("mlp", "production", 2)
    source.list_models()
    registry.set_alias("mlp", "production", 1)
    folder = source.list_models()["mlp"]
    assert _tree(folder) == ["1/model.onnx"]
    assert (folder / "1" / "model.onnx").read_bytes() == onnx_file("v1").read_bytes()


def test_a_refused_version_is_a_problem_until_the_alias_moves_on(registry, onnx_file, tmp_path):
    first = registry.register("mlp", onnx_file("v1"))
    second = registry.register("mlp", onnx_file("v2"))
    registry.set_alias("mlp", "production", 1)
    source = RegistrySource(
        registry, ["models:/mlp@production"], tmp_path / "cache", min_refresh_s=float("inf")
    )
    source.list_models()
    assert source.problems() == {}
    Path(registry.artifacts.blob_path(second.files[0].sha256)).write_bytes(b"x" * 10)
    registry.set_alias("mlp", "production", 2)
    assert _tree(source.list_models()["mlp"]) == ["1/model.onnx"]  # answered from memory
    source.refresh()
    (problem,) = source.problems().values()
    assert "models:/mlp/2 is corrupt" in problem
    assert problem.endswith("still serving models:/mlp/1")
    assert _tree(source.list_models()["mlp"]) == ["1/model.onnx"]
    assert source.parameters("mlp", 1) == {
        "model_uri": "models:/mlp@production",
        "registry_version": 1,
        "sha256": first.sha256,
    }
    registry.set_alias("mlp", "production", 1)
    source.refresh()
    assert source.problems() == {}
