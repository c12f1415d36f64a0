"""The Flower ClientApp: train the received global model on local data, or evaluate it.

The same app runs in the simulation (data handed over in memory) and in a
SuperNode (data read from the node's `.npz` file); `ClientSetup` is the only
difference. When the server's DP wrapper asks for it, Flower's `fixedclipping_mod`
clips the update on the client before it leaves (client-side fixed clipping).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from torch.utils.data import Dataset

from aiaas.federated import task
from aiaas.train.config import JobConfig

# Test hook: "PARTITION:ROUND" makes that client stop inside that round's training,
# after touching `<marker dir>/hang-PARTITION-ROUND`, so a test can kill it mid-round.
HANG_ENV = "AIAAS_FEDERATED_HANG"
HANG_MARKER_DIR_ENV = "AIAAS_FEDERATED_MARKER_DIR"
FAIL_ENV = "AIAAS_FEDERATED_FAIL"


@dataclass
class ClientSetup:
    job: JobConfig
    dataset: Dataset[Any]
    partition_id: int
    #: The fingerprint of `dataset` (computed from it when not given).
    data_fingerprint: str | None = None


SetupFn = Callable[[Context], ClientSetup]


def clip_when_asked(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's `fixedclipping_mod`, when the server's DP wrapper sent a clipping norm."""
    if KEY_CLIPPING_NORM in msg.content["config"]:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


def build_client_app(setup: SetupFn) -> ClientApp:
    """A ClientApp whose data and job come from `setup(context)`."""
    app = ClientApp()

    @app.train(mods=[clip_when_asked])
    def train(msg: Message, context: Context) -> Message:
        client = setup(context)
        config: Any = msg.content["config"]
        server_round = int(config["server-round"])
        _maybe_hang(client.partition_id, server_round)
        state = _arrays(msg).to_torch_state_dict()
        result = task.train_local(
            client.job,
            state,
            client.dataset,
            epochs=int(config["local-epochs"]),
            seed=task.round_seed(int(config["seed"]), server_round, client.partition_id),
            proximal_mu=float(config.get("proximal-mu", 0.0)),
        )
        metrics = MetricRecord(
            {
                "train_loss": result.train_loss,
                "num-examples": result.num_examples,
                "partition-id": client.partition_id,
            }
        )
        arrays = ArrayRecord.from_torch_state_dict(result.state_dict)
        data = ConfigRecord(
            {
                "dataset_fingerprint": client.data_fingerprint
                or task.data_fingerprint(client.dataset),
                "examples": result.num_examples,
            }
        )
        content = {"arrays": arrays, "metrics": metrics, task.CLIENT_DATA_RECORD: data}
        return Message(RecordDict(content), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        client = setup(context)
        state = _arrays(msg).to_torch_state_dict()
        scores = task.evaluate(client.job, state, client.dataset)
        metrics = MetricRecord(
            {
                **{f"eval_{key}": value for key, value in scores.items()},
                "num-examples": len(client.dataset),  # type: ignore[arg-type]
                "partition-id": client.partition_id,
            }
        )
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _arrays(msg: Message) -> ArrayRecord:
    record = msg.content["arrays"]
    if not isinstance(record, ArrayRecord):
        raise TypeError("the server's message carries no ArrayRecord under 'arrays'")
    return record


def _maybe_hang(partition_id: int, server_round: int) -> None:
    """Test hooks: hang (to be killed from outside) or fail in one client's round."""
    here = f"{partition_id}:{server_round}"
    if os.environ.get(FAIL_ENV, "") == here:
        raise RuntimeError(f"injected failure of client {partition_id} in round {server_round}")
    if os.environ.get(HANG_ENV, "") != here:
        return
    marker_dir = Path(os.environ.get(HANG_MARKER_DIR_ENV, "."))
    (marker_dir / f"hang-{partition_id}-{server_round}").touch()
    parent = os.getppid()
    while os.getppid() == parent:  # until the test kills us, or the process that ran us
        time.sleep(0.5)
    os._exit(1)
