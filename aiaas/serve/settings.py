"""What `aiaas serve` can be told, declared once.

Each field is a flag (`--http-port`), an environment variable (`AIAAS_HTTP_PORT`)
and a default at once: `aiaas serve`'s options are generated from this class
(aiaas/cli_settings.py), so adding a setting is one line here. Flags beat the
environment, which beats the defaults. Imports pydantic only, so that building the
command costs the other commands nothing.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ControlMode(StrEnum):
    NONE = "none"
    POLL = "poll"
    EXPLICIT = "explicit"


class LogLevel(StrEnum):
    """uvicorn's levels (it adds TRACE to logging when imported)."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


#: A list from the environment is comma-separated (`AIAAS_LOAD_MODEL=mlp,resnet`).
Names = Annotated[list[str], NoDecode]


class ServerSettings(BaseSettings):
    """Server settings; flags follow tritonserver's, environment variables use AIAAS_."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_", use_enum_values=False)

    model_repository: Path | None = Field(None, description="Triton-layout model repository.")
    host: str = Field("127.0.0.1", description="Address the HTTP and gRPC ports listen on.")
    http_port: int = Field(8000, ge=0, le=65535, description="Open Inference Protocol over HTTP.")
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="inference.GRPCInferenceService; 0 turns it off."
    )
    strict_readiness: bool = Field(False, description="Not ready until every model is ready.")
    log_level: LogLevel = Field(LogLevel.INFO, description="Server log level.")
    max_request_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest request body (HTTP) or message (gRPC)."
    )
    model_control_mode: ControlMode = Field(
        ControlMode.NONE, description="none: load all at start; poll: follow the folder; "
        "explicit: load and unload through the API."
    )  # fmt: skip
    repository_poll_secs: float = Field(
        15.0, gt=0, description="How often poll mode rescans the repository."
    )
    load_model: Names = Field(
        default_factory=list, description="Explicit mode: load this model at start (repeatable)."
    )
    shutdown_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long requests in flight may take to finish."
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Also serve /metrics on this port."
    )
    registry_uri: str | None = Field(
        None, description="Registry database for --model (default ~/.aiaas/registry.db)."
    )
    artifact_root: str | None = Field(
        None, description="Registry artifact store (default: next to the SQLite file)."
    )
    model: Names = Field(
        default_factory=list,
        description="models:/NAME@ALIAS or models:/NAME/VERSION from the registry (repeatable).",
    )
    registry_cache_dir: Path | None = Field(
        None, description="Where --model versions go (default ~/.aiaas/serve-cache/port-HTTP_PORT)."
    )
    registry_poll_secs: float = Field(
        2.0, gt=0, description="How often --model URIs are resolved again."
    )
    admin_token: str | None = Field(
        None, description="Bearer token every admin action (load, unload, shm, registry) needs."
    )
    api_key: str | None = Field(
        None, description="Bearer key the OpenAI routes (/v1) require (none: open)."
    )
    provenance_header: bool = Field(
        False,
        description="Every inference answer names the model version that computed it "
        "(header / gRPC trailing metadata aiaas-model-version).",
    )
    allow_open_admin: bool = Field(
        False, description="Serve beyond loopback with admin actions open to all (no token)."
    )
    tls_cert: Path | None = Field(None, description="PEM certificate (chain): HTTPS and gRPC TLS.")
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert.")
    max_header_bytes: int = Field(
        16 * 1024, gt=0, description="Largest request line + headers (HTTP): over it, 431."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send a request's headers (HTTP, gRPC)."
    )
    body_timeout_s: float = Field(
        120.0, gt=0, description="Time a client has to send a request's body (HTTP)."
    )
    max_tensor_elements: int = Field(
        16 * 1024 * 1024, gt=0, description="Most elements in one input tensor."
    )
    max_inputs: int = Field(64, gt=0, description="Most inputs (and outputs) in one request.")
    max_bytes_element: int = Field(
        16 * 1024 * 1024, gt=0, description="Longest single element of a BYTES tensor."
    )
    max_load_files: int = Field(64, ge=0, description="Most file: parameters in a load request.")
    max_load_file_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Total size of the files in one load request."
    )
    max_model_bytes: int | None = Field(
        None, gt=0, description="Largest model (files on disk) a load accepts; "
        "default 80% of MemAvailable at load time."
    )  # fmt: skip
    max_streams_per_client: int = Field(
        16, gt=0, description="Open streams (SSE, gRPC) one client address may hold at once."
    )
    workers: int = Field(
        1, ge=1, description="Front-end processes sharing the HTTP and gRPC ports beside an "
        "engine process and a process for each model; 1: everything in one process."
    )  # fmt: skip

    @field_validator("load_model", "model", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
