"""The ONNX Runtime sessions get the threading the model's configuration asks for."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import pytest

from aiaas.serve import config, serving_config
from aiaas.serve.runtimes.onnx import OnnxModel


def load(tmp_path: Path, text: str) -> OnnxModel:
    path = models.save(models.add_sub(), tmp_path, "m")
    return OnnxModel(path, serving_config.runtime_options(config.parse_pbtxt(text)))


def spinning(value: str) -> str:
    return f'parameters {{ key: "spinning" value: {{ string_value: "{value}" }} }}'


@pytest.mark.parametrize(
    ("text", "allowed", "stopped_after_run"),
    [
        ("", "1", "1"),  # the default: spin while a run lasts, stop when it returns
        (spinning("run"), "1", "1"),
        (spinning("always"), "1", "0"),
        (spinning("never"), "0", "0"),
    ],
)
def test_sessions_spin_as_the_config_says(tmp_path, text, allowed, stopped_after_run):
    options = load(tmp_path, text).sessions[0].get_session_options()
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == allowed
    assert options.get_session_config_entry("session.force_spinning_stop") == stopped_after_run


@pytest.mark.parametrize("value", ["run", "never"])
def test_every_instance_answers_whatever_the_spinning(tmp_path, value):
    model = load(tmp_path, "instance_group [ { count: 2 } ]\n" + spinning(value))
    a = np.arange(8, dtype=np.int32).reshape(2, 4)
    b = np.ones((2, 4), np.int32)
    for instance in (0, 1):
        out = model.run(instance, {"a": a, "b": b}, ["sum", "difference"])
        np.testing.assert_array_equal(out["sum"], a + b)
        np.testing.assert_array_equal(out["difference"], a - b)
