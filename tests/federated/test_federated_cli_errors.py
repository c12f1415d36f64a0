"""Bad input: one line naming the problem, exit code 2, before Flower starts anything."""

from __future__ import annotations

import numpy as np
import pytest
from fed_support import DIGITS_SPEC, write_spec
from typer.testing import CliRunner

from aiaas.cli import app


@pytest.fixture
def spec(tmp_path):
    return write_spec(tmp_path)


def invoke(*args: str):
    return CliRunner().invoke(app, ["federated", *args])


def assert_one_line(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [message]


def test_a_misspelt_federated_key_names_the_key_and_the_fix(tmp_path):
    path = write_spec(tmp_path, DIGITS_SPEC.replace("rounds = 3", "rouns = 3"))
    assert_one_line(
        invoke("simulate", str(path), "--run-dir", str(tmp_path / "run")),
        "error: federated.rouns: unknown key (did you mean 'federated.rounds'?)",
    )


def test_a_bad_train_section_fails_as_aiaas_train_would(tmp_path):
    path = write_spec(tmp_path, DIGITS_SPEC.replace("digits_mlp", "digits_mpl"))
    assert_one_line(
        invoke("simulate", str(path)),
        "error: model.factory: 'aiaas.train.examples' has no attribute 'digits_mpl' "
        "(did you mean 'aiaas.train.examples:digits_mlp'?)",
    )


@pytest.mark.parametrize(
    ("partition", "message"),
    [
        (
            "shards:200",
            "error: --partition: shards:200 x 10 clients = 2000 shards but only 1437 samples",
        ),
        ("dirichlet:0", "error: --partition: dirichlet ALPHA must be > 0, got 0"),
        ("dirichlet:-0.5", "error: --partition: dirichlet ALPHA must be > 0, got -0.5"),
    ],
)
def test_an_impossible_partition_is_refused(spec, tmp_path, partition, message):
    scheme = ["--clients", "10", "--partition", partition]
    assert_one_line(invoke("simulate", str(spec), *scheme), message)
    assert_one_line(invoke("partition", str(spec), *scheme, "--out", str(tmp_path / "p")), message)
    assert not (tmp_path / "p").exists()


def test_more_minimum_clients_than_clients_is_refused(spec, tmp_path):
    assert_one_line(
        invoke("simulate", str(spec), "--clients", "2", "--min-available-clients", "3"),
        "error: federated.min_available_clients: 3 exceeds the 2 client(s)",
    )
    assert_one_line(
        invoke(
            "server",
            str(spec),
            "--address",
            "127.0.0.1:1",
            "--insecure",
            "--clients",
            "4",
            "--min-fit-clients",
            "5",
            "--run-dir",
            str(tmp_path / "run"),
        ),
        "error: federated.min_fit_clients: 5 exceeds the 4 client(s)",
    )
    assert not (tmp_path / "run").exists()


def test_a_client_data_file_without_y_is_refused(spec, tmp_path):
    np.savez(tmp_path / "client-000.npz", x=np.zeros((4, 64), dtype=np.float32))
    assert_one_line(
        invoke(
            "client",
            str(spec),
            "--server",
            "127.0.0.1:1",
            "--insecure",
            "--data",
            str(tmp_path / "client-000.npz"),
        ),
        f"error: --data: {tmp_path / 'client-000.npz'} lacks array(s) y (needs x and y)",
    )
    assert not (tmp_path / "client-000.client.log").exists()


def test_tls_is_required_unless_insecure_is_asked_for(spec, tmp_path):
    assert_one_line(
        invoke("server", str(spec), "--address", "127.0.0.1:1", "--run-dir", str(tmp_path)),
        "error: --certificates: required (or --insecure to run without TLS)",
    )
    assert_one_line(
        invoke(
            "server",
            str(spec),
            "--address",
            "127.0.0.1:1",
            "--certificates",
            str(tmp_path),
            "--run-dir",
            str(tmp_path / "run"),
        ),
        f"error: --certificates: {tmp_path} lacks ca.crt, server.pem, server.key",
    )


def test_a_bad_address_is_refused(spec):
    assert_one_line(
        invoke("client", str(spec), "--server", "localhost", "--insecure", "--data", "x.npz"),
        "error: --server: 'localhost' is not HOST:PORT",
    )


def test_secagg_with_dp_is_refused(spec):
    assert_one_line(
        invoke("simulate", str(spec), "--secagg", "--dp-clip", "1.0"),
        "error: federated.secagg: works with strategy fedavg and without DP here",
    )
