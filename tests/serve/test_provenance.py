"""What a loaded version says about where it came from, as pure functions: which record
wins, what V2 parameters can carry, and the provenance line of its answers."""

from __future__ import annotations

import json

from aiaas import lineage
from aiaas.serve import provenance

FILE_RECORD = lineage.make_record(
    "compress",
    run_id="run-file",
    dataset_fingerprint="sha256:data",
    recipe={"quantize": "int8"},
    parents=[{"uri": "models:/digits/1", "sha256": "stale"}, {"path": "/a.onnx", "sha256": "p"}],
)


def of(**overrides):
    arguments = {
        "file_sha256": "f" * 64,
        "file_record": FILE_RECORD,
        "source_parameters": {},
        "source_record": None,
    } | overrides
    return provenance.of_version("digits-int8", 2, **arguments)


def test_a_file_served_from_a_folder_is_named_by_folder_version_and_file_hash():
    served = of()
    assert served.header == f"digits-int8/2 sha256={'f' * 64}"
    assert served.record == FILE_RECORD
    assert served.link == "/v2/models/digits-int8/versions/2/lineage"


def test_a_registry_version_is_named_by_its_uri_and_manifest_hash_and_links_the_registry():
    served = of(
        source_parameters={"registry_version": 5, "sha256": "m" * 64},
        source_record={"run_id": "run-reg", "parents": []},
    )
    assert served.header == f"models:/digits-int8/5 sha256={'m' * 64}"
    assert served.link == "/v2/registry/models/digits-int8/versions/5/lineage"
    parameters = served.metadata_parameters()
    assert "sha256" not in parameters  # the source's own parameter says it
    assert parameters["version_uri"] == "models:/digits-int8/5"


def test_the_registry_s_facts_win_and_parents_of_both_are_kept_once_each():
    registry_parent = {"uri": "models:/digits/1", "sha256": "fresh"}
    merged = provenance.merge(
        FILE_RECORD,
        {"run_id": "run-reg", "dataset_fingerprint": None, "parents": [registry_parent]},
    )
    assert merged is not None
    assert merged["run_id"] == "run-reg"
    assert merged["dataset_fingerprint"] == "sha256:data"  # the registry did not know it
    assert merged["parents"] == [registry_parent, {"path": "/a.onnx", "sha256": "p"}]
    assert list(merged)[: len(lineage.FIELDS)] == list(lineage.FIELDS)
    assert provenance.merge(None, None) is None


def test_metadata_parameters_are_scalars_with_parents_as_json_and_unknowns_left_out():
    parameters = of(file_record={**FILE_RECORD, "run_id": None}).metadata_parameters()
    assert all(isinstance(value, str | int) for value in parameters.values())
    assert "run_id" not in parameters
    assert json.loads(parameters["parents"]) == FILE_RECORD["parents"]
    assert parameters["sha256"] == "f" * 64
    assert parameters["lineage"] == "/v2/models/digits-int8/versions/2/lineage"


def test_a_file_without_a_record_has_its_hash_and_no_link():
    served = of(file_record=None)
    assert served.metadata_parameters() == {"sha256": "f" * 64}
    assert served.link is None
    assert served.card()["parents"] == []


def test_a_name_outside_ascii_is_percent_encoded_in_the_header():
    served = provenance.of_version(
        "grüße", 1, file_sha256="0", file_record=None, source_parameters={}, source_record=None
    )
    assert served.header == "gr%C3%BC%C3%9Fe/1 sha256=0"
    assert served.header.isascii()
