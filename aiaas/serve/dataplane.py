"""The data plane: what every front end calls, and the only place requests are checked
against models. REST and gRPC translate wire bytes to ``InferRequest`` and back;
everything between (validation, batching, statistics) happens here once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aiaas import __version__, tensors
from aiaas.errors import AiaasError, InvalidArgument, NotFound
from aiaas.serve import classification, shared_memory, uploads
from aiaas.serve import config as model_config
from aiaas.serve.cuda_shared_memory import NoCudaSharedMemory
from aiaas.serve.limits import RequestLimits, StreamSlots, check_model_name
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.serve.repository import ControlMode, ModelRepository, ModelVersion
from aiaas.serve.shared_memory import SystemSharedMemory
from aiaas.serve.stats import statistics_json
from aiaas.serve.types import InferOutput, InferRequest, InferResponse

SERVER_NAME = "aiaas"
#: Triton's names for the protocol extensions this server implements. Not
#: "cuda_shared_memory": its routes answer (so Triton's clients can clean up), but no
#: CUDA region can ever be registered here, so listing it would promise what the
#: server cannot do. Triton's clients never read this list before calling them.
EXTENSIONS = (
    "model_repository",
    "schedule_policy",
    "model_configuration",
    "binary_tensor_data",
    "statistics",
    "classification",
    "system_shared_memory",
)


class DataPlane:
    def __init__(
        self,
        repository: ModelRepository,
        *,
        strict_readiness: bool = False,
        shared_memory: SystemSharedMemory | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        self.repository = repository
        self.limits = limits or RequestLimits()
        #: Open streams per client address, shared by every front end that streams.
        self.streams = StreamSlots(self.limits.max_streams_per_client)
        self.strict_readiness = strict_readiness
        self.shared_memory = shared_memory or SystemSharedMemory()
        self.cuda_shared_memory = NoCudaSharedMemory()
        self.started = False

    # ---- health and metadata -------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        if not self.started:
            return False
        return self.repository.all_ready() if self.strict_readiness else True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_ready(self, name: str, version: str | None) -> bool:
        return self.repository.model_ready(name, version)

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        loaded = self.repository.get(name, version)
        entry_versions = [v.version for v in self.repository.loaded_versions() if v.name == name]
        metadata: dict[str, Any] = {
            "name": name,
            "versions": [str(v) for v in sorted(entry_versions)],
            "platform": loaded.config.platform,
            "inputs": [s.to_dict() for s in loaded.serving.inputs],
            "outputs": [s.to_dict() for s in loaded.serving.outputs],
        }
        if loaded.parameters:
            metadata["parameters"] = dict(loaded.parameters)
        return metadata

    def model_lineage(self, name: str, version: str | None) -> dict[str, Any]:
        """The full lineage record of a served version (the registry's, over its file's)."""
        loaded = self.repository.get(name, version)
        record = loaded.provenance.record
        if record is None:
            raise NotFound(
                f"model '{name}' version {loaded.version} has no lineage record: its file "
                "carries no aiaas.lineage metadata and it is not served from a registry"
            )
        return record

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """The complete configuration in use (after completion), in Triton's JSON form."""
        return model_config.to_json_dict(self.repository.get(name, version).config)

    async def model_statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        """Triton's statistics extension: all models, one model, or one version
        (asynchronous: models served by processes of their own are asked first)."""
        await self.repository.hosting.refresh()
        if name is None:
            chosen = self.repository.loaded_versions()
        elif version is None:
            self.repository.get(name)
            chosen = [v for v in self.repository.loaded_versions() if v.name == name]
        else:
            chosen = [self.repository.get(name, version)]
        return {"model_stats": [statistics_json(v.stats) for v in chosen]}

    async def register_shared_memory(
        self, name: str, key: object, offset: object, byte_size: object
    ) -> None:
        """Register a region here and wherever a model runs in a process of its own."""
        self.shared_memory.register(name, key, offset, byte_size)
        await self.repository.hosting.registered(self.shared_memory.status(name)[0])

    async def unregister_shared_memory(self, name: str | None) -> None:
        self.shared_memory.unregister(name)
        await self.repository.hosting.unregistered(name)

    # ---- model control -------------------------------------------------------------

    async def load(self, name: str, parameters: dict[str, Any]) -> None:
        """Triton's load: optionally with a JSON config override and ``file:`` model files
        (as bytes: the front end decodes its wire form); failures start with Triton's
        "failed to load '<name>'" and leave the previous version serving."""
        self._check_explicit()
        check_model_name(name)
        try:
            config_override = _config_override(parameters)
            files = uploads.passed_files(parameters)
            self.limits.check_files(files)
            if files and config_override is None:
                raise InvalidArgument("model files were passed without a 'config' parameter")
            folder = uploads.write_model_folder(files) if files else None
        except AiaasError as error:
            raise type(error)(f"failed to load '{name}': {error}") from None
        try:
            await self.repository.load(
                name, config_override=config_override, folder_override=folder
            )
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    async def unload(self, name: str) -> None:
        self._check_explicit()
        check_model_name(name)
        await self.repository.unload(name)

    def _check_explicit(self) -> None:
        if self.repository.mode != ControlMode.EXPLICIT:
            raise InvalidArgument(
                "explicit model load / unload is not allowed in model control mode "
                f"'{self.repository.mode}'; start the server with --model-control-mode explicit"
            )

    # ---- inference -----------------------------------------------------------------

    async def acquire_stream(self, client: str | None) -> Callable[[], None]:
        """A stream slot for ``client`` (429 / RESOURCE_EXHAUSTED when it holds them all);
        returns the release. Asynchronous because a `--workers` front end asks the engine,
        which counts every front end's streams."""
        return self.streams.acquire(client)

    def check_addressed(self, name: str, version: str | None) -> None:
        """Raise the protocol's error when no loaded model answers this address.

        Front ends call it before they decode an infer body: as Triton does, the model
        is looked up first, so a request to a model or version that does not exist is
        404 / NOT_FOUND whatever its body holds, never a complaint about the body.
        """
        check_model_name(name)
        self.repository.get(name, version)

    async def confirm_addressed(self, name: str, version: str | None) -> None:
        """Nothing to do: ``check_addressed`` already asked the repository. Front ends call
        it when a body fails to decode, for a data plane in another process (see
        ``workers.remote``) whose ``check_addressed`` cannot tell."""

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        loaded = self.repository.get(name, version)
        if loaded.hosted is not None:  # the model's own process checks and answers it
            return await loaded.hosted.infer(name, version, request)
        if loaded.engine is not None:
            raise InvalidArgument(
                f"model '{name}' generates text: use /v1/completions, /v1/chat/completions "
                f"or the generate extension (/v2/models/{name}/generate)"
            )
        started = time.perf_counter_ns()
        ok = False
        try:
            self._read_shared_inputs(request)
            for item in request.inputs:
                if item.datatype == "BYTES":
                    self.limits.check_bytes_elements(item.data.flat, f"input '{item.name}'")
            inputs = validate_inputs(loaded, request)
            names = requested_outputs(loaded, request)
            classes = classified_outputs(request)
            arrays = await loaded.batcher.infer(
                inputs,
                names,
                priority=_int_parameter(request.parameters, "priority"),
                timeout_us=_int_parameter(request.parameters, "timeout"),
            )
            response = InferResponse(
                model_name=name,
                model_version=str(loaded.version),
                id=request.id,
                outputs=[self._finish(loaded, request, n, arrays[n], classes) for n in names],
                provenance=loaded.provenance.header,
            )
            ok = True
            return response
        finally:
            loaded.stats.record_request(ok, time.perf_counter_ns() - started)

    def _read_shared_inputs(self, request: InferRequest) -> None:
        """Inputs that name a shared-memory region get their data from it."""
        for item in request.inputs:
            if shared_memory.is_shared(item.parameters):
                where = f"input '{item.name}'"
                raw = self.shared_memory.read(item.parameters, where)
                item.data = tensors.from_raw(raw, item.datatype, item.shape, where)

    def _finish(
        self,
        loaded: ModelVersion,
        request: InferRequest,
        name: str,
        array: np.ndarray,
        classes: dict[str, int],
    ) -> InferOutput:
        """Classify the output when asked; one requested into a shared-memory region is
        written there, not returned."""
        output = _output(name, _classify(loaded, name, array, classes))
        wanted = next((o for o in request.outputs or () if o.name == name), None)
        if wanted is None or not shared_memory.is_shared(wanted.parameters):
            return output
        raw = tensors.to_raw(output.data)
        self.shared_memory.write(wanted.parameters, raw, f"output '{output.name}'")
        output.parameters = {
            shared_memory.REGION: wanted.parameters[shared_memory.REGION],
            shared_memory.BYTE_SIZE: len(raw),
        }
        return output


def _output(name: str, array: np.ndarray) -> InferOutput:
    return InferOutput(name, tensors.datatype_of(array), tuple(array.shape), array)


def _config_override(parameters: dict[str, Any]) -> pb.ModelConfig | None:
    override = parameters.get("config")
    if override is None:
        return None
    if not isinstance(override, str):
        raise InvalidArgument("'config' must be a JSON string")
    return model_config.parse_json(override)


def classified_outputs(request: InferRequest) -> dict[str, int]:
    """Requested outputs with a class_count, checked before the model runs."""
    wanted = request.outputs or ()
    counts = {o.name: classification.class_count(o.parameters, o.name) for o in wanted}
    return {name: k for name, k in counts.items() if k is not None}


def _classify(
    loaded: ModelVersion, name: str, array: np.ndarray, classes: dict[str, int]
) -> np.ndarray:
    if name not in classes:
        return array
    batched = loaded.serving.max_batch_size > 0
    return classification.top_k(array, classes[name], loaded.labels.get(name), batched=batched)


def _int_parameter(parameters: dict[str, Any], key: str) -> int:
    value = parameters.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"parameter '{key}' must be a non-negative integer, got {value!r}")
    return int(value)


def validate_inputs(loaded: ModelVersion, request: InferRequest) -> dict[str, np.ndarray]:
    """Check names, datatypes, shapes and batch size against the model; return the arrays."""
    specs = {spec.name: spec for spec in loaded.serving.inputs}
    max_batch = loaded.serving.max_batch_size
    arrays: dict[str, np.ndarray] = {}
    batch_sizes: set[int] = set()
    for item in request.inputs:
        spec = specs.get(item.name)
        if spec is None:
            raise InvalidArgument(
                f"unexpected inference input '{item.name}' for model '{loaded.name}'; "
                f"expected {', '.join(specs)}"
            )
        if item.name in arrays:
            raise InvalidArgument(f"input '{item.name}' is given more than once")
        if item.datatype != spec.datatype:
            raise InvalidArgument(
                f"input '{item.name}': datatype {item.datatype} does not match the model's "
                f"{spec.datatype}"
            )
        _check_dims(loaded.name, item.name, item.shape, spec.shape)
        if max_batch > 0:
            batch_sizes.add(item.shape[0])
        arrays[item.name] = item.data
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise InvalidArgument(
            f"expected {len(specs)} inputs but got {len(arrays)} for model '{loaded.name}': "
            f"missing input '{missing[0]}'"
        )
    if len(batch_sizes) > 1:
        raise InvalidArgument(f"inputs disagree on the batch size: {sorted(batch_sizes)}")
    if batch_sizes and (batch := batch_sizes.pop()) > max_batch:
        raise InvalidArgument(f"batch size {batch} exceeds the model's max_batch_size {max_batch}")
    return arrays


def _check_dims(model: str, name: str, shape: Sequence[int], expected: Sequence[int]) -> None:
    fits = len(shape) == len(expected) and all(
        want == -1 or got == want for got, want in zip(shape, expected, strict=True)
    )
    if not fits:
        raise InvalidArgument(
            f"input '{name}': shape {list(shape)} does not match the model's {list(expected)} "
            f"(-1 is any size) for model '{model}'"
        )


def requested_outputs(loaded: ModelVersion, request: InferRequest) -> list[str]:
    known = [spec.name for spec in loaded.serving.outputs]
    if not request.outputs:
        return known
    names: list[str] = []
    for output in request.outputs:
        if output.name not in known:
            raise InvalidArgument(
                f"unexpected inference output '{output.name}' for model '{loaded.name}'; "
                f"it has {', '.join(known)}"
            )
        names.append(output.name)
    return names
