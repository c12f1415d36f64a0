"""Flower's Simulation Runtime driven by a train SPEC: aggregation, equivalence, accuracy."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch
from fed_support import (
    DIGITS_SPEC,
    PYTHON,
    ROOT,
    SCALAR_SPEC,
    constant_dataset,
    final_state,
    max_difference,
    write_spec,
)

from aiaas.federated.config import load_federated_job
from aiaas.federated.partition import parse_scheme
from aiaas.federated.session import simulate_job, simulate_partitions


@pytest.fixture(autouse=True)
def _quiet_flower():
    logging.getLogger("flwr").setLevel(logging.WARNING)


def job(tmp_path: Path, text: str, run: str, *overrides: tuple[str, object]):
    spec = tmp_path / "spec.toml"
    if not spec.exists():
        write_spec(tmp_path, text)
    return load_federated_job(
        spec, [("run_dir", str(tmp_path / run)), ("export.enabled", False), *overrides]
    )


def accuracy(result) -> float:
    return result.outcome.metrics["server_eval_accuracy"]


def test_fedavg_is_the_sample_weighted_mean_of_unequal_clients(tmp_path):
    # One SGD step at lr 1 takes client k's weight from 0 to its label value c_k, so
    # FedAvg must give (1*0 + 3*4) / 4 = 3; an unweighted mean would give 2.
    fjob = job(tmp_path, SCALAR_SPEC, "run")
    subsets = [constant_dataset(0.0, 1), constant_dataset(4.0, 3)]
    result = simulate_partitions(fjob, subsets, partition="custom", quiet=True)
    assert result.outcome.finished
    assert final_state(result.run.root)["weight"].tolist() == [3.0]
    (line,) = result.run.read_rounds()
    assert line["samples_per_client"] == {"0": 1, "1": 3}
    assert line["clients"] == [0, 1]


def test_one_client_with_all_data_equals_centralized_training(tmp_path):
    central_spec = DIGITS_SPEC.split("[federated]")[0].replace(
        "global_batch_size = 16", "global_batch_size = 1437"
    )  # the whole training split: one step of full-batch gradient descent
    write_spec(tmp_path, central_spec, "central.toml")
    trained = subprocess.run(
        [
            PYTHON,
            "-m",
            "aiaas.cli",
            "train",
            str(tmp_path / "central.toml"),
            "--nproc",
            "1",
            "--no-export",
            "--run-dir",
            str(tmp_path / "central"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert trained.returncode == 0, trained.stderr
    central = torch.load(tmp_path / "central" / "final" / "model.pt", weights_only=False)

    fjob = job(
        tmp_path,
        central_spec + "[federated]\nrounds = 1\nmin_available_clients = 1\nmin_fit_clients = 1\n",
        "federated",
    )
    result = simulate_job(fjob, clients=1, scheme=parse_scheme("iid"), quiet=True)
    federated = final_state(result.run.root)
    initial = torch.load(result.run.checkpoints / "round-0001.pt", weights_only=False)
    assert max_difference(federated, central) < 1e-6
    assert max_difference(federated, _initial(fjob)) > 1e-3  # it did train
    assert initial["round"] == 1


def _initial(fjob):
    from aiaas.federated.task import initial_state

    return initial_state(fjob.job)


def test_iid_fedavg_on_ten_digits_clients_is_within_two_points_of_centralized(tmp_path):
    settings = [
        ("optimizer.lr", 0.5),
        ("federated.min_available_clients", 1),
        ("federated.min_fit_clients", 1),
    ]
    central = simulate_job(
        job(
            tmp_path,
            DIGITS_SPEC,
            "central",
            *settings,
            ("federated.rounds", 1),
            ("federated.local_epochs", 30),
        ),
        clients=1,
        scheme=parse_scheme("iid"),
        quiet=True,
    )
    iid = simulate_job(
        job(
            tmp_path,
            DIGITS_SPEC,
            "iid",
            *settings,
            ("federated.rounds", 6),
            ("federated.local_epochs", 5),
        ),
        clients=10,
        scheme=parse_scheme("iid"),
        quiet=True,
    )
    assert accuracy(central) > 0.95
    assert abs(accuracy(iid) - accuracy(central)) <= 0.02
    lines = iid.run.read_rounds()
    assert [line["round"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(len(line["clients"]) == 10 and not line["failed"] for line in lines)
    assert {"train_loss", "server_eval_accuracy", "client_eval_accuracy", "round_s"} <= set(
        lines[-1]
    )
    assert iid.run.plot.stat().st_size > 10_000


def test_shards_runs_are_recorded_with_fedavg_and_fedprox(tmp_path):
    results = {}
    for strategy in ("fedavg", "fedprox"):
        results[strategy] = simulate_job(
            job(
                tmp_path,
                DIGITS_SPEC,
                strategy,
                ("federated.strategy", strategy),
                ("federated.proximal_mu", 1.0),
                ("federated.rounds", 2),
            ),
            clients=10,
            scheme=parse_scheme("shards:2"),
            quiet=True,
        )
    for strategy, result in results.items():
        config = json.loads((result.run.root / "config.json").read_text())
        assert config["partition"] == "shards:2"
        assert config["federated"]["strategy"] == strategy
        assert len(result.run.read_rounds()) == 2
    # The proximal term pulls clients back to the global model: different, smaller updates.
    fedavg, fedprox = (final_state(results[name].run.root) for name in ("fedavg", "fedprox"))
    assert max_difference(fedavg, fedprox) > 1e-3
    norms = {
        name: sum(results[name].run.read_rounds()[0]["update_norms"].values()) for name in results
    }
    assert norms["fedprox"] < norms["fedavg"]
