"""Registering an export: a file identical to an earlier version is said, not silent."""

from __future__ import annotations

import torch

from aiaas.export import export_onnx
from aiaas.export.registering import register_file


def test_registering_the_same_file_twice_says_which_version_has_it(tmp_path, capsys):
    report = export_onnx(torch.nn.Linear(4, 2), {"x": torch.randn(2, 4)}, tmp_path / "m.onnx")
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    assert register_file(report.path, "m", uri) == "models:/m/1"
    assert capsys.readouterr().err == ""
    assert register_file(report.path, "m", uri) == "models:/m/2"
    assert capsys.readouterr().err == (
        "note: models:/m/2 has the same files as models:/m/1 (same sha256)\n"
    )
