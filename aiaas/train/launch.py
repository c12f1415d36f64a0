"""Start the workers of this node through torch's elastic agent, as torchrun does.

`aiaas train` is torchrun with the flags taken from the SPEC: the same
`LaunchConfig`, the same rendezvous (c10d), the same restart policy. So a job
started here and a job started by `torchrun -m aiaas.train.worker` on another
node can join one rendezvous, and a dead worker is handled by the agent, not by us.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from aiaas.train.config import ConfigError, JobConfig
from aiaas.train.interrupt import Interrupted, quiet_shutdown, stopped_message
from aiaas.train.rundir import RunDir

FRESH_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"


class TrainingFailed(Exception):
    """Workers failed beyond the restarts allowed; the message names the first failure."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_can_start(job: JobConfig) -> None:
    """Refuse, before any worker exists, what workers would refuse after a rendezvous."""
    run = RunDir(Path(job.run_path))
    if job.checkpoint.resume and not run.has_checkpoint():
        raise ConfigError("--resume", f"{run.root} has no complete checkpoint to resume from")
    if not job.checkpoint.resume and run.has_checkpoint():
        raise ConfigError(
            "", f"{run.root} already holds checkpoints; pass --resume or choose another --run-dir"
        )
    if job.parallel.max_nodes > 1 and not job.parallel.rdzv_endpoint:
        raise ConfigError("--rdzv-endpoint", "is required with more than one node (host:port)")
    if job.export.enabled and job.export.registry_uri:
        _check_registry_folder(job.export.registry_uri)


def _check_registry_folder(uri: str) -> None:
    """A SQLite registry in a folder that does not exist would fail only after training."""
    from aiaas.errors import InvalidArgument
    from aiaas.registry.db import resolve_uri, sqlite_path

    try:
        path = sqlite_path(resolve_uri(uri))
    except InvalidArgument as error:
        raise ConfigError("--registry-uri", error.message) from None
    if path is not None and not path.parent.is_dir():
        raise ConfigError("--registry-uri", f"folder {path.parent} does not exist")


def launch_config(job: JobConfig) -> LaunchConfig:
    parallel = job.parallel
    single_node = parallel.max_nodes == 1 and not parallel.rdzv_endpoint
    rdzv_configs: dict[str, object] = {}
    if parallel.node_rank > 0:
        # c10d elects its store host by hostname; on one machine every node would match.
        rdzv_configs["is_host"] = False
    nproc = parallel.nproc
    return LaunchConfig(
        min_nodes=parallel.min_nodes,
        max_nodes=parallel.max_nodes,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()) if single_node else (parallel.rdzv_id or job.name),
        rdzv_backend=parallel.rdzv_backend,
        rdzv_endpoint="localhost:0" if single_node else parallel.rdzv_endpoint,
        rdzv_configs=rdzv_configs,
        max_restarts=parallel.max_restarts,
        logs_specs=DefaultLogsSpecs(
            log_dir=str(RunDir(Path(job.run_path)).logs),
            # Rank 0 keeps the terminal (live progress); the others write to files.
            redirects={rank: Std.ALL for rank in range(1, nproc)} | {0: Std.NONE},
        ),
    )


def launch(job: JobConfig, worker_args: list[str]) -> None:
    """Run this node's workers to completion; raises `TrainingFailed` if they do not finish,
    `Interrupted` if a signal (Ctrl-C) stopped them."""
    # Workers of a restarted group must not read the previous attempt's keys (gloo's peer
    # addresses) from a store shared across rendezvous rounds: torch issue #135712.
    os.environ.setdefault(FRESH_STORE_ENV, "1")
    if "OMP_NUM_THREADS" not in os.environ:
        # As torchrun does, and for the same reason: N workers x all cores oversubscribes.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // job.parallel.nproc))
    config = launch_config(job)
    Path(job.run_path).mkdir(parents=True, exist_ok=True)
    command = ["-u", "-m", "aiaas.train.worker", *worker_args]
    try:
        with quiet_shutdown():
            elastic_launch(config, sys.executable)(*command)
    except SignalException:
        raise Interrupted(stopped_message(RunDir(Path(job.run_path)))) from None
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        code = failure.exitcode
        detail = f"exit code {code}" if code >= 0 else f"killed by {failure.signal_name()}"
        message = failure.message
        if isinstance(message, dict):  # the error file's record, not yet reduced to its text
            message = str(message.get("message", ""))
        first_line = (message or "").strip().splitlines()[:1]
        if first_line and not first_line[0].startswith("To enable traceback"):
            detail += f": {first_line[0]}"
        raise TrainingFailed(
            f"worker rank {rank} failed ({detail}); logs in {job.run_path}/logs", code
        ) from None
