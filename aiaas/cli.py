"""The `aiaas` command. Thin: parses flags and calls the packages.

Subcommands import their package only when they run, so `aiaas serve` never
pulls in torch and every command starts quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiaas.registry.cli import models_app

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
) -> None:
    """Serve a model repository over the Open Inference Protocol (KServe V2)."""
    from pydantic import ValidationError

    from aiaas.serve.server import ServerSettings, run

    if model_repository is None:
        raise fail("--model-repository is required")
    if not model_repository.is_dir():
        raise fail(f"model repository {model_repository} is not a directory")
    try:
        settings = ServerSettings(
            model_repository=model_repository,
            http_port=http_port,
            host=host,
            strict_readiness=strict_readiness,
            log_level=log_level,
            max_request_bytes=max_request_bytes,
            model_control_mode=model_control_mode,
            repository_poll_secs=repository_poll_secs,
            load_model=load_model or [],
            metrics_port=metrics_port,
        )
    except ValidationError as error:
        first = error.errors()[0]
        flag = "-".join(map(str, first["loc"])).replace("_", "-")
        raise fail(f"--{flag}: {first['msg']}") from None
    run(settings)


# `aiaas train`: aiaas.train.cli imports typer only; torch loads when the command runs.
from aiaas.train.cli import train as _train  # noqa: E402

app.command("train")(_train)

# `aiaas export`: aiaas.export.cli imports typer only; torch loads when the command runs.
from aiaas.export.cli import export as _export  # noqa: E402

app.command("export")(_export)

# `aiaas compress`: aiaas.compress.cli imports typer only; torch loads when the command runs.
from aiaas.compress.cli import compress as _compress  # noqa: E402

app.command("compress")(_compress)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
