"""Flower's Simulation Runtime with an in-process backend instead of Ray.

`flwr.simulation.run_simulation` in Flower 1.32 knows one backend, Ray, and
exits when `ray` is not importable; Ray is not among our dependencies (it is
`flwr[simulation]`, ~100 MB and a cluster runtime for a job that trains
kilobyte-sized models on two cores). Everything else is Flower's: the in-memory
LinkState, the InMemoryGrid the ServerApp talks to, the Simulation Runtime's
node registry, message queues and worker threads (`vce_api.run_api`). The only
part written here is the `Backend` that the runtime hands each message to: it
calls the ClientApp in the worker thread, which is what Ray's actor does in a
separate process.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException, LoadClientAppError
from flwr.common.constant import RUN_ID_NUM_BYTES, TASK_ID_NUM_BYTES
from flwr.proto.task_pb2 import Task
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.fleet.vce.backend import Backend, BackendConfig
from flwr.server.superlink.fleet.vce.metrics import VceMetrics
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.server.superlink.linkstate.utils import generate_rand_int_from_bytes
from flwr.serverapp import ServerApp
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid


class InProcessBackend(Backend):
    """Runs the ClientApp in the Simulation Runtime's worker thread (Ray runs it in an actor)."""

    def __init__(self, backend_config: BackendConfig) -> None:
        super().__init__(backend_config)
        init_args: dict[str, Any] = dict(backend_config.get("init_args", {}))
        self.workers = int(init_args.get("workers", 1))
        self.app_fn: Callable[[], ClientApp] | None = None

    def build(self, app_fn: Callable[[], ClientApp]) -> None:
        self.app_fn = app_fn

    @property
    def num_workers(self) -> int:
        return self.workers

    def is_worker_idle(self) -> bool:
        return True

    def terminate(self) -> None:
        self.app_fn = None

    def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
        if self.app_fn is None:
            raise RuntimeError("build() was not called")
        # A private copy, as a separate process would get: mods (SecAgg+'s) edit the
        # content in place, and the server sends one content object to every node.
        message = copy.deepcopy(message)
        try:
            return self.app_fn()(message=message, context=context), context
        except LoadClientAppError:
            raise
        except Exception as error:
            raise ClientAppException(str(error)) from error


def simulate(
    server_app: ServerApp, client_app: ClientApp, num_clients: int, workers: int = 1
) -> None:
    """Run the ServerApp against `num_clients` simulated SuperNodes until its main returns.

    Client `i` sees `context.node_config["partition-id"] == i`, as with Ray.
    """
    run = Run.create_empty(run_id=generate_rand_int_from_bytes(RUN_ID_NUM_BYTES))
    run.primary_task_id = generate_rand_int_from_bytes(TASK_ID_NUM_BYTES)
    run.federation = NOOP_FEDERATION
    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    state: Any = factory.state()
    state.run_ids[run.run_id] = RunRecord(run=run)
    state.task_store[run.primary_task_id] = Task(task_id=run.primary_task_id, run_id=run.run_id)
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    nodes = vce_api._register_nodes(num_nodes=num_clients, state_factory=factory)
    stores = vce_api._register_node_info_stores(nodes_mapping=nodes, run=run)

    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            context = Context(
                run_id=run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
            )
            server_app(grid, context)
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error
        finally:
            stop.set()

    server = threading.Thread(target=serve, name="aiaas-serverapp", daemon=True)
    server.start()
    config: BackendConfig = {"init_args": {"workers": workers}}
    vce_api.run_api(
        lambda: client_app,
        lambda: InProcessBackend(config),
        nodes,
        factory,
        stores,
        stop,
        VceMetrics(),
    )
    server.join()
    if "error" in outcome:
        raise outcome["error"]
