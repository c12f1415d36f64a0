"""The ServerApp and ClientApp that Flower's deployment runtime loads from our app bundle.

The SuperLink runs `server_app` in its `flwr-serverapp` process and each
SuperNode runs `client_app` in `flwr-clientapp` processes. Both learn what to
do from the run config that `aiaas federated server` submitted: the server a
settings file in its run directory, the clients the resolved train job as
JSON, so the server's SPEC is the one definition of the task. A client's data
comes from its own node config (`data-path`), never from the server.
"""

from __future__ import annotations

import json
import traceback
from functools import cache
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from aiaas.federated.client_app import ClientSetup, build_client_app
from aiaas.train.config import JobConfig, build_job_config
from aiaas.train.rundir import write_json

SETTINGS_KEY = "aiaas-settings"
JOB_KEY = "aiaas-job"
STATUS_FILE = "server-status.json"

server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    settings_path = Path(str(context.run_config[SETTINGS_KEY]))
    status = settings_path.parent / STATUS_FILE
    try:
        outcome = run_from_settings(grid, context, json.loads(settings_path.read_text()))
    except BaseException as error:
        write_json(
            status,
            {
                "state": "failed",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            },
        )
        raise
    write_json(status, outcome)


def run_from_settings(grid: Grid, context: Context, raw: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the job from the settings file the CLI wrote, run every round, publish."""
    from aiaas.federated.config import load_federated_job
    from aiaas.federated.rounds import ServerSettings, run_server
    from aiaas.federated.rundir import FederatedRunDir
    from aiaas.federated.session import finish, lineage_of

    spec = Path(raw["spec"]) if raw["spec"] else None
    overrides = [(str(key), value) for key, value in raw["overrides"]]
    fjob = load_federated_job(spec, overrides)
    run = FederatedRunDir(Path(raw["run_dir"]))
    settings = ServerSettings(
        federated_job=fjob,
        run=run,
        clients=raw["clients"],
        resume=raw["resume"],
        stop_after_round=raw["stop_after_round"],
        baseline_accuracy=raw["baseline_accuracy"],
        quiet=True,
    )
    if fjob.federated.secagg:
        from aiaas.federated.secagg import run_secagg_server

        outcome = run_secagg_server(grid, context, settings)
    else:
        outcome = run_server(grid, settings)
    samples: dict[str, int] = {}
    for line in run.read_rounds():
        samples |= line.get("samples_per_client", {})
    counts = [samples[key] for key in sorted(samples, key=int)]
    # Each client trained on its own file: the record lists what they reported, and the
    # server's --partition flag is kept only as what the operator declared.
    lineage = lineage_of(fjob, raw["clients"], "client files", counts, outcome, run.read_rounds())
    if raw["partition"] != "unknown":
        lineage["partition_declared"] = raw["partition"]
    published = finish(fjob, run, outcome, lineage)
    state = "finished" if outcome.finished else "stopped"
    return {"state": state, "last_round": outcome.last_round, "published": published}


@cache
def _job(text: str) -> JobConfig:
    return build_job_config(json.loads(text))


@cache
def _dataset(path: str) -> Any:
    from aiaas.train.data import load_dataset

    return load_dataset(path, {}, Path("/"))


def _setup(context: Context) -> ClientSetup:
    job = _job(str(context.run_config[JOB_KEY]))
    data_path = str(context.node_config["data-path"])
    return ClientSetup(
        job=job,
        dataset=_dataset(data_path),
        partition_id=int(context.node_config["partition-id"]),
        data_fingerprint=_fingerprint(data_path),
    )


@cache
def _fingerprint(path: str) -> str:
    from aiaas.federated.task import data_fingerprint

    return data_fingerprint(_dataset(path), path)


client_app: ClientApp = build_client_app(_setup)


def _secagg_client_app() -> ClientApp:
    from aiaas.federated.secagg import build_secagg_client_app

    return build_secagg_client_app(_setup)


def __getattr__(name: str) -> Any:
    """`secagg_client_app` is built on first use: only SecAgg+ runs need the legacy stack."""
    if name == "secagg_client_app":
        return _secagg_client_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
