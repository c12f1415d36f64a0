"""Round bookkeeping in simulation: resume, failed clients, differential privacy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fed_support import DIGITS_SPEC, final_state, max_difference, write_spec

from aiaas.federated.client_app import FAIL_ENV
from aiaas.federated.config import load_federated_job
from aiaas.federated.partition import parse_scheme
from aiaas.federated.rounds import FederationFailed
from aiaas.federated.session import simulate_job
from aiaas.train.config import ConfigError


@pytest.fixture(autouse=True)
def _quiet_flower():
    logging.getLogger("flwr").setLevel(logging.WARNING)


def run(tmp_path: Path, name: str, *overrides: tuple[str, object], clients: int = 4, **options):
    spec = tmp_path / "spec.toml"
    if not spec.exists():
        write_spec(tmp_path, DIGITS_SPEC)
    fjob = load_federated_job(
        spec, [("run_dir", str(tmp_path / name)), ("export.enabled", False), *overrides]
    )
    return simulate_job(
        fjob, clients=clients, scheme=parse_scheme("dirichlet:1"), quiet=True, **options
    )


def test_resumed_fedadam_run_ends_with_the_parameters_of_an_uninterrupted_one(tmp_path):
    fedadam = (("federated.strategy", "fedadam"), ("federated.server_lr", 0.05))
    whole = run(tmp_path, "whole", *fedadam)
    stopped = run(tmp_path, "parts", *fedadam, stop_after_round=2)
    assert not stopped.outcome.finished
    assert stopped.outcome.last_round == 2
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume"):
        run(tmp_path, "parts", *fedadam)
    resumed = run(tmp_path, "parts", *fedadam, resume=True)
    assert resumed.outcome.finished
    assert max_difference(final_state(whole.run.root), final_state(resumed.run.root)) == 0.0
    assert [line["round"] for line in resumed.run.read_rounds()] == [1, 2, 3]
    # Without FedAdam's moments in the checkpoint the resumed run would drift.
    checkpoint = resumed.run.load_latest_checkpoint()
    assert checkpoint is not None
    assert set(checkpoint["strategy"]) == {"m_t", "v_t"}


def test_a_client_failing_mid_round_is_logged_and_the_run_completes(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "2:2")  # client 2 raises inside round 2's training
    result = run(tmp_path, "faulty", ("federated.min_fit_clients", 3))
    assert result.outcome.finished
    lines = result.run.read_rounds()
    assert [line["clients"] for line in lines] == [[0, 1, 2, 3], [0, 1, 3], [0, 1, 2, 3]]
    (failure,) = lines[1]["failed"]
    assert failure["partition_id"] == 2
    assert failure["stage"] == "train"
    assert "injected failure of client 2 in round 2" in failure["reason"]
    assert not lines[0]["failed"]
    assert not lines[2]["failed"]


def test_a_round_with_fewer_answers_than_min_fit_clients_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "1:1")
    with pytest.raises(FederationFailed, match="round 1: 3 client\\(s\\) answered, min_fit"):
        run(tmp_path, "too-few", ("federated.min_fit_clients", 4))


def test_dp_clipping_bounds_every_update_and_noise_changes_the_result(tmp_path):
    plain = run(tmp_path, "plain")
    assert max(plain.run.read_rounds()[0]["update_norms"].values()) > 0.5  # clipping bites
    clipped = run(tmp_path, "clipped", ("federated.dp_clip", 0.5))
    for line in clipped.run.read_rounds():
        assert len(line["update_norms"]) == 4
        assert max(line["update_norms"].values()) <= 0.5 + 1e-5
    noisy = run(tmp_path, "noisy", ("federated.dp_clip", 0.5), ("federated.dp_noise", 1.0))
    assert max_difference(final_state(clipped.run.root), final_state(noisy.run.root)) > 1e-3


def test_secagg_aggregates_to_fedavg_up_to_its_quantization(tmp_path):
    common = (("federated.rounds", 2), ("federated.fraction_evaluate", 0.0))
    plain = run(tmp_path, "plain", *common)
    secure = run(tmp_path, "secure", *common, ("federated.secagg", True))
    assert secure.outcome.finished
    assert all(line["secagg"] for line in secure.run.read_rounds())
    difference = max_difference(final_state(plain.run.root), final_state(secure.run.root))
    # The server only unmasked the quantized sum (2**22 levels over [-8, 8]), not updates.
    assert 0 < difference < 1e-3
