"""run.py's own parts, in process: version comparison and input files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.edge import runner

versions = st.tuples(*[st.integers(0, 300)] * 3)


@given(versions, versions)
def test_min_onnxruntime_compares_versions_as_numbers(needed, installed) -> None:
    text_needed, text_installed = ".".join(map(str, needed)), ".".join(map(str, installed))
    manifest = {"min_onnxruntime": text_needed}
    if installed >= needed:
        runner.check_onnxruntime(manifest, text_installed)
    else:
        expected = re.escape(f">= {text_needed}; {text_installed} is installed")
        with pytest.raises(runner.Refused, match=expected):
            runner.check_onnxruntime(manifest, text_installed)


def test_a_local_build_suffix_does_not_hide_the_version() -> None:
    runner.check_onnxruntime({"min_onnxruntime": "1.18"}, "1.18.0+cpu")
    with pytest.raises(runner.Refused):
        runner.check_onnxruntime({"min_onnxruntime": "1.18"}, "1.17.3rc1")


MANIFEST = {
    "signature": {
        "inputs": [
            {"name": "a", "datatype": "INT32", "shape": [-1, 2]},
            {"name": "b", "datatype": "FP32", "shape": [-1, 2]},
        ]
    }
}


def test_inputs_by_name_are_cast_to_the_signature(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.ones((1, 2)), b=np.ones((1, 2), dtype=np.int64))

    feed = runner.read_inputs(tmp_path / "x.npz", MANIFEST)

    assert (feed["a"].dtype, feed["b"].dtype) == (np.int32, np.float32)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: np.save(p / "x.npy", np.ones(2)), "the model takes 2 inputs (a, b)"),
        (lambda p: np.savez(p / "x.npz", a=np.ones(2)), "has no array named 'b'"),
        (lambda p: (p / "x.npz").write_text("nope"), "not a readable .npy/.npz file"),
    ],
)
def test_an_input_file_that_does_not_fit_is_refused(tmp_path: Path, write, message) -> None:
    write(tmp_path)
    path = next(tmp_path.iterdir())

    with pytest.raises(runner.Refused, match=re.escape(message)):
        runner.read_inputs(path, MANIFEST)
