"""Distributed training on torchrun: DDP or FSDP2, DCP checkpoints, elastic restarts.

`aiaas train SPEC --nproc N` checks the SPEC (`config.py`, `spec.py`), then
starts N workers through torch's elastic agent (`launch.py`); each worker
(`worker.py`) runs the loop in `loop.py` and rank 0 exports the result
(`publish.py`). Importing this package does not import torch: the CLI registers
`aiaas train` without slowing `aiaas serve`.
"""

from aiaas.train.config import ConfigError, JobConfig, build_job_config
from aiaas.train.spec import load_job_config

__all__ = ["ConfigError", "JobConfig", "build_job_config", "load_job_config"]
