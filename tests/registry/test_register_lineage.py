"""`register` of a file carrying a lineage record: what the caller left out (run, params,
parents) comes from the record, so a copied file keeps its thread in any registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from aiaas import lineage
from aiaas.registry import Registry


def stamped(path: Path, record: dict) -> Path:
    model = onnx.load(str(path))
    lineage.set_on_model(model, record)
    onnx.save(model, str(path))
    return path


def test_a_recorded_file_fills_run_params_and_known_parents(registry, onnx_file):
    trained = registry.register("digits", onnx_file("trained"))
    record = lineage.make_record(
        "compress",
        run_id="digits-20261204-run",
        dataset_fingerprint="sha256:data",
        recipe={"steps": ["quantize"]},
        parents=[
            {"uri": trained.uri, "sha256": trained.sha256},
            {"path": "/abs/weights.pt", "sha256": "0" * 64},
        ],
    )
    version = registry.register("digits-int8", stamped(onnx_file("compressed"), record))
    assert version.run_id == "digits-20261204-run"
    assert version.params == {"dataset_fingerprint": "sha256:data", "lineage": record}
    assert [parent.uri for parent in version.parents] == [trained.uri]
    assert [node.ref.uri for node in registry.lineage(trained.uri).descendants] == [version.uri]


def test_what_the_caller_gives_wins_over_the_record(registry, onnx_file):
    trained = registry.register("digits", onnx_file("trained"))
    other = registry.register("other", onnx_file("other"))
    record = lineage.make_record(
        "compress", run_id="from-record", parents=[{"uri": trained.uri, "sha256": trained.sha256}]
    )
    version = registry.register(
        "digits-int8",
        stamped(onnx_file("compressed"), record),
        run_id="given",
        params={"lineage": "mine"},
        parents=[other.uri],
    )
    assert version.run_id == "given"
    assert version.params == {"lineage": "mine"}
    assert [parent.uri for parent in version.parents] == [other.uri]


def test_a_copy_in_another_registry_keeps_its_run_but_links_no_stranger(
    registry, onnx_file, tmp_path
):
    trained = registry.register("digits", onnx_file("trained"))
    record = lineage.make_record(
        "compress", run_id="the-run", parents=[{"uri": trained.uri, "sha256": trained.sha256}]
    )
    copied = tmp_path / "mailed" / "model.onnx"
    copied.parent.mkdir()
    shutil.copyfile(stamped(onnx_file("compressed"), record), copied)
    elsewhere_uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with Registry.open(elsewhere_uri, str(tmp_path / "elsewhere-artifacts")) as elsewhere:
        # Same name and number, other content: not the parent the record names.
        elsewhere.register("digits", onnx_file("someone-else"))
        version = elsewhere.register("digits-int8", copied)
    assert version.run_id == "the-run"
    assert version.parents == ()
    assert version.params is not None
    assert version.params["lineage"]["parents"] == record["parents"]


def test_a_file_without_a_record_registers_as_before(registry, onnx_file):
    version = registry.register("plain", onnx_file("plain"))
    assert version.run_id is None
    assert version.params is None
    assert version.parents == ()
