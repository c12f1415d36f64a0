"""A bad flag value, in every command: one line naming the flag and what it allows,
exit 2, no traceback and no usage box — checked by click before any work starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "examples/train/digits.toml")


def aiaas(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIAAS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["serve", "--log-level", "verbose"],
            "error: Invalid value for '--log-level': 'verbose' is not one of 'critical', "
            "'error', 'warning', 'info', 'debug', 'trace'.",
        ),
        (
            ["serve", "--model-control-mode", "bogus"],
            "error: Invalid value for '--model-control-mode': 'bogus' is not one of 'none', "
            "'poll', 'explicit'.",
        ),
        (
            ["serve", "--http-port", "70000"],
            "error: Invalid value for '--http-port': 70000 is not in the range 0<=x<=65535.",
        ),
        (
            ["serve", "--repository-poll-secs", "0", "--model-repository", "."],
            "error: --repository-poll-secs: Input should be greater than 0",
        ),
        (
            ["export", "m:f", "--out", "o", "--optimization", "max"],
            "error: Invalid value for '--optimization': 'max' is not one of 'extended', "
            "'basic', 'none'.",
        ),
        (
            ["compress", "m.onnx", "--eval", "e.npz", "--out", "o", "--quantize", "int4"],
            "error: Invalid value for '--quantize': 'int4' is not one of 'dynamic', 'static'.",
        ),
        (
            ["compress", "m.onnx", "--eval", "e.npz", "--out", "o", "--select-by", "speed"],
            "error: Invalid value for '--select-by': 'speed' is not one of 'batch16', "
            "'batch1', 'size'.",
        ),
        (
            ["train", SPEC, "--precision", "fp8"],
            "error: Invalid value for '--precision': 'fp8' is not one of 'fp32', 'bf16'.",
        ),
        (
            ["federated", "simulate", SPEC, "--strategy", "fedsgd"],
            "error: Invalid value for '--strategy': 'fedsgd' is not one of 'fedavg', "
            "'fedprox', 'fedadam'.",
        ),
        (
            ["edge", "bundle", "models:/m/1", "--out", "o", "--variant", "int2"],
            "error: Invalid value for '--variant': 'int2' is not one of 'int8', 'int4'.",
        ),
        (
            ["models", "list", "--json", "--limit", "x"],
            "error: No such option '--limit'.",
        ),
    ],
)
def test_a_bad_flag_value_is_one_line_and_exit_2(args, expected):
    result = aiaas(*args)
    assert (result.returncode, result.stderr.rstrip("\n"), result.stdout) == (2, expected, "")
