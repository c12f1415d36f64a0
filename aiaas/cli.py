"""The `aiaas` command. Thin: parses flags and calls the packages.

Subcommands import their package only when they run, so `aiaas serve` never
pulls in torch and every command starts quickly.
"""

from __future__ import annotations

from aiaas.cli_settings import settings_command
from aiaas.exit_codes import ExitCode, PlainTyper, fail, fail_with
from aiaas.registry.cli import models_app
from aiaas.serve.settings import ServerSettings

app = PlainTyper(
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


def serve(settings: ServerSettings) -> None:
    """Serve a model repository and registry models over the Open Inference Protocol (V2)."""
    from aiaas.errors import AiaasError

    if settings.model_repository is None and not settings.model:
        raise fail("--model-repository or --model is required", ExitCode.BAD_INPUT)
    if settings.model_repository is not None and not settings.model_repository.is_dir():
        message = f"model repository {settings.model_repository} is not a directory"
        raise fail(message, ExitCode.NOT_FOUND)
    try:
        if settings.workers > 1:  # the supervisor stays thin: no models, no onnxruntime
            from aiaas.serve.workers.supervisor import supervise

            supervise(settings)
        else:
            from aiaas.serve.server import run

            run(settings)
    except AiaasError as error:  # before serving: a port in use, a --model not resolved
        raise fail_with(error) from None


app.command("serve")(settings_command(ServerSettings, serve))


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

# `aiaas edge`: aiaas.edge.cli imports typer only; onnx and the registry load when it runs.
from aiaas.edge.cli import edge_app  # noqa: E402

app.add_typer(edge_app, name="edge")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
