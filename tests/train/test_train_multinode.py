"""Two "nodes" (two launcher processes) joined by a c10d rendezvous on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys

from ports import free_port
from train_support import ROOT, TrainRuns, kill_tree, max_difference, run_train


def test_two_nodes_train_to_the_same_parameters_as_one_node_with_as_many_workers(
    train_runs: TrainRuns,
):
    """Node 0 is `aiaas train`, node 1 is plain torchrun on the worker module: they interoperate."""
    run_dir = train_runs.workdir / "runs" / "two-nodes"
    endpoint = f"127.0.0.1:{free_port()}"
    node1_log = train_runs.workdir / "two-nodes-node1.log"
    with open(node1_log, "w") as log:  # a file, not a pipe: a full pipe would stall the node
        node1 = subprocess.Popen(
            [
                sys.executable, "-m", "torch.distributed.run",
                "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "two-nodes",
                "-m", "aiaas.train.worker", str(train_runs.spec), "--set", f'run_dir="{run_dir}"',
            ],
            cwd=train_runs.workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        node0 = run_train(
            str(train_runs.spec), "--run-dir", str(run_dir), "--nproc", "1",
            "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", endpoint,
            "--rdzv-id", "two-nodes",
            cwd=train_runs.workdir, timeout=120,
        )  # fmt: skip
        node1.wait(timeout=60)
    finally:
        if node1.poll() is None:
            kill_tree(node1.pid)
            node1.wait()
        print(f"node 1 log:\n{node1_log.read_text()}")  # shown by pytest if the test fails
    logs = f"node 0:\n{node0.stdout}\nnode 1:\n{node1_log.read_text()}"
    assert node0.returncode == 0, logs
    assert node1.returncode == 0, logs
    one_node = train_runs.get("ddp-2", "--nproc", "2")
    assert max_difference(one_node, run_dir) < 1e-5
    assert max_difference(train_runs.baseline(), run_dir) < 1e-5
