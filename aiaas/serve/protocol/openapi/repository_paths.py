"""Triton's model repository extension (index, load, unload) and its system and CUDA
shared memory extensions: the admin actions on what a server holds."""

from __future__ import annotations

from aiaas.serve.protocol.openapi.operations import BEARER_IF_SET, Paths, errors, link, ok, op
from aiaas.serve.protocol.openapi.schemas import ref

_SHM = "/v2/systemsharedmemory"
_CUDA_SHM = "/v2/cudasharedmemory"


def repository_paths() -> Paths:
    model = "/v2/repository/models/{model}"
    ready_link = link("modelReady", model="$request.path.model")
    return {
        "/v2/repository/index": {
            "post": op(
                "repositoryIndex",
                "repository",
                {
                    "200": ok(
                        "Every model the repository knows, with its state.",
                        ref("RepositoryIndex"),
                        links={
                            "ModelMetadata": link("modelMetadata", model="$response.body#/0/name")
                        },
                    ),
                    **errors((400, 413)),
                },
                body=ref("RepositoryIndexRequest"),
            )
        },
        f"{model}/load": {
            "post": op(
                "repositoryModelLoad",
                "repository",
                {
                    "200": ok("Loaded.", links={"ModelReady": ready_link}),
                    **errors((400, 401, 403, 404, 409, 413, 503)),
                },
                body=ref("LoadRequest"),
                security=BEARER_IF_SET,
            )
        },
        f"{model}/unload": {
            "post": op(
                "repositoryModelUnload",
                "repository",
                {
                    "200": ok("Unloaded.", links={"ModelReady": ready_link}),
                    **errors((400, 401, 403, 404, 413, 503)),
                },
                security=BEARER_IF_SET,
            )
        },
    }


def shared_memory_paths() -> Paths:
    """System shared memory (its register body required) and CUDA shared memory."""
    return {
        **_shared_memory_paths(_SHM, "system", "SharedMemoryRegisterRequest"),
        **_shared_memory_paths(_CUDA_SHM, "cuda", "CudaSharedMemoryRegisterRequest"),
    }


def _shared_memory_paths(prefix: str, kind: str, register_body: str) -> Paths:
    status = "SharedMemoryStatus" if kind == "system" else "CudaSharedMemoryStatus"
    region = f"{prefix}/region/{{region}}"
    done = ok("Done.")
    name = "systemSharedMemory" if kind == "system" else "cudaSharedMemory"
    status_link = link(f"{name}RegionStatus", region="$request.path.region")
    return {
        f"{prefix}/status": {
            "get": op(f"{name}Status", "shared memory", {"200": ok("Regions.", ref(status))})
        },
        f"{region}/status": {
            "get": op(
                f"{name}RegionStatus",
                "shared memory",
                {"200": ok("The region.", ref(status)), **errors((400, 404))},
            )
        },
        f"{region}/register": {
            "post": op(
                f"{name}Register",
                "shared memory",
                {
                    "200": ok("Registered.", links={"RegionStatus": status_link}),
                    **errors((400, 401, 403, 404, 409, 413)),
                },
                body=ref(register_body),
                body_required=kind == "system",
                security=BEARER_IF_SET,
            )
        },
        f"{prefix}/unregister": {
            "post": op(
                f"{name}UnregisterAll",
                "shared memory",
                {"200": done, **errors((401, 403, 413))},
                security=BEARER_IF_SET,
            )
        },
        f"{region}/unregister": {
            "post": op(
                f"{name}Unregister",
                "shared memory",
                {"200": done, **errors((400, 401, 403, 404, 413))},
                security=BEARER_IF_SET,
            )
        },
    }
