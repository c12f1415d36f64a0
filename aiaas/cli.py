"""The `aiaas` command. Thin: parses flags and calls the packages.

Subcommands import their package only when they run, so `aiaas serve` never
pulls in torch and every command starts quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiaas.registry.cli import models_app
from aiaas.registry.cli_common import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, ArtifactRoot, RegistryUri

app = typer.Typer(
    name="aiaas",
    help="From a PyTorch model to a production endpoint.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")


@app.callback()
def _root() -> None:
    """From a PyTorch model to a production endpoint."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one plain line to stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def serve(
    model_repository: Annotated[
        Path | None, typer.Option("--model-repository", help="Triton-layout model repository.")
    ] = None,
    http_port: Annotated[int, typer.Option("--http-port")] = 8000,
    grpc_port: Annotated[
        int, typer.Option("--grpc-port", help="inference.GRPCInferenceService; 0 turns it off.")
    ] = 8001,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    strict_readiness: Annotated[
        bool, typer.Option("--strict-readiness", help="Not ready until every model is ready.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes")] = 64 * 1024 * 1024,
    model_control_mode: Annotated[
        str, typer.Option("--model-control-mode", help="none | poll | explicit")
    ] = "none",
    repository_poll_secs: Annotated[float, typer.Option("--repository-poll-secs")] = 15.0,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Also serve /metrics on this port.")
    ] = None,
    load_model: Annotated[
        list[str] | None, typer.Option("--load-model", help="Explicit mode: load at start.")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help="models:/NAME@ALIAS or models:/NAME/VERSION from the registry."
        ),
    ] = None,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
    registry_cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--registry-cache-dir",
            help="Where --model versions are downloaded (default ~/.aiaas/serve-cache/port-N).",
            show_default=False,
        ),
    ] = None,
    registry_poll_secs: Annotated[
        float, typer.Option("--registry-poll-secs", help="How often --model URIs are resolved.")
    ] = 2.0,
    admin_token: Annotated[
        str | None,
        typer.Option(
            "--admin-token",
            envvar="AIAAS_ADMIN_TOKEN",
            help="Bearer token for alias changes through /v2/registry.",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="AIAAS_API_KEY",
            help="Bearer key the OpenAI routes (/v1) require.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a model repository and registry models over the Open Inference Protocol (V2)."""
    from pydantic import ValidationError

    from aiaas.errors import AiaasError, Unavailable
    from aiaas.serve.server import ServerSettings, run

    if model_repository is None and not model:
        raise fail("--model-repository or --model is required")
    if model_repository is not None and not model_repository.is_dir():
        raise fail(f"model repository {model_repository} is not a directory")
    try:
        settings = ServerSettings(
            model_repository=model_repository,
            http_port=http_port,
            grpc_port=grpc_port,
            host=host,
            strict_readiness=strict_readiness,
            log_level=log_level,
            max_request_bytes=max_request_bytes,
            model_control_mode=model_control_mode,
            repository_poll_secs=repository_poll_secs,
            load_model=load_model or [],
            metrics_port=metrics_port,
            registry_uri=registry_uri,
            artifact_root=artifact_root,
            registry_models=model or [],
            registry_cache_dir=registry_cache_dir,
            registry_poll_secs=registry_poll_secs,
            admin_token=admin_token,
            api_key=api_key,
        )
    except ValidationError as error:
        first = error.errors()[0]
        flag = "-".join(map(str, first["loc"])).replace("_", "-")
        raise fail(f"--{flag}: {first['msg']}") from None
    try:
        run(settings)
    except AiaasError as error:  # before serving: a --model the registry cannot resolve
        code = EXIT_UNAVAILABLE if isinstance(error, Unavailable) else EXIT_BAD_INPUT
        raise fail(error.message, code) from None


# `aiaas train`: aiaas.train.cli imports typer only; torch loads when the command runs.
from aiaas.train.cli import train as _train  # noqa: E402

app.command("train")(_train)

# `aiaas export`: aiaas.export.cli imports typer only; torch loads when the command runs.
from aiaas.export.cli import export_app  # noqa: E402

app.add_typer(export_app, name="export")

# `aiaas compress`: aiaas.compress.cli imports typer only; torch loads when the command runs.
from aiaas.compress.cli import compress_app  # noqa: E402

app.add_typer(compress_app, name="compress")

# `aiaas federated`: aiaas.federated.cli imports typer only; torch and flwr load when it runs.
from aiaas.federated.cli import federated_app  # noqa: E402

app.add_typer(federated_app, name="federated")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
