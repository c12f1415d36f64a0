"""Helpers the registry tests share: the CLI in this process, and what a subprocess needs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """`aiaas models ...` in this process, against the test's registry."""

    def __init__(self, registry_uri: str, artifact_root: str) -> None:
        self.env = {"AIAAS_REGISTRY_URI": registry_uri, "AIAAS_ARTIFACT_ROOT": artifact_root}

    def __call__(self, *args: object, code: int = 0):
        from aiaas.registry.cli import models_app

        result = CliRunner(env=self.env).invoke(models_app, [str(arg) for arg in args])
        assert isinstance(result.exception, SystemExit | None), result.exception
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        return result


def subprocess_env(registry_uri: str, artifact_root: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(AIAAS_REGISTRY_URI=registry_uri, AIAAS_ARTIFACT_ROOT=artifact_root, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


#: `aiaas models` without the rest of the `aiaas` command (its other packages are not ours).
MODELS_CLI = [sys.executable, "-c", "from aiaas.registry.cli import models_app; models_app()"]
