"""A federated model's lineage says what the clients did: each client's data fingerprint
and size, as the clients reported them, in the registry and in the ONNX file itself."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import onnx
import pytest
from fed_support import DIGITS_SPEC, write_spec

from aiaas import lineage
from aiaas.federated import task
from aiaas.federated.config import load_federated_job
from aiaas.federated.partition import parse_scheme
from aiaas.federated.session import simulate_job
from aiaas.registry.api import Registry
from aiaas.train.data import load_dataset


# With SecAgg+ the clients' updates are masked but their reports (a hash and a count) are
# not: the thread is the same on Flower's legacy path as on its message API.
@pytest.mark.parametrize("secagg", [False, True], ids=["plain", "secagg"])
def test_a_federated_version_lists_each_clients_data_fingerprint_and_size(
    tmp_path: Path, secagg: bool
):
    logging.getLogger("flwr").setLevel(logging.WARNING)
    spec = write_spec(tmp_path, DIGITS_SPEC)
    registry_uri = f"sqlite:///{tmp_path / 'registry.db'}"
    fjob = load_federated_job(
        spec,
        [
            ("run_dir", str(tmp_path / "run")),
            ("federated.rounds", 1),
            ("federated.secagg", secagg),
            ("export.registry_uri", registry_uri),
        ],
    )
    result = simulate_job(fjob, clients=2, scheme=parse_scheme("shards:2"), quiet=True)
    assert result.outcome.finished

    # What each client trained on, computed here from the partition, not from the server.
    dataset = load_dataset(fjob.job.data.dataset, fjob.job.data.kwargs, tmp_path)
    expected = [
        {
            "client": index,
            "dataset_fingerprint": task.data_fingerprint(task.subset(dataset, part)),
            "examples": len(part),
        }
        for index, part in enumerate(result.parts)
    ]
    assert expected[0]["dataset_fingerprint"] != expected[1]["dataset_fingerprint"]
    with Registry.open(uri=registry_uri) as registry:
        (version,) = registry.versions("digits")
    assert version.params is not None
    assert version.params["client_data"] == expected
    combined = task.combined_fingerprint(item["dataset_fingerprint"] for item in expected)
    assert version.params["dataset_fingerprint"] == combined
    assert Path(version.params["run_dir"]).is_absolute()

    # The file carries the same thread without the registry.
    info = json.loads((result.run.root / "run.json").read_text())
    assert Path(info["run_dir"]).is_absolute()
    published = json.loads((result.run.root / "final" / "publish.json").read_text())
    assert Path(published["model_repository"]).is_absolute()
    model = onnx.load(published["onnx"])
    record = lineage.from_metadata({prop.key: prop.value for prop in model.metadata_props})
    assert record is not None
    assert record["step"] == "federated"
    assert record["run_id"] == info["run_id"] == version.run_id
    assert record["dataset_fingerprint"] == combined
    assert record["recipe_digest"] == lineage.recipe_digest(version.recipe)
