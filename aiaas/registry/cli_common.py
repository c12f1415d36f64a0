"""What every `aiaas models` command shares: the registry options, opening and closing
the registry, and turning errors into one line on stderr and an exit code.

Exit codes: 1 when the model, version or alias does not exist; 2 for bad input, a
name already taken, or an action the registry's state refuses (deleting an
aliased version, a corrupt artifact); 3 when the registry cannot be reached or
fails in an unexpected way (AIAAS_DEBUG=1 shows the traceback then).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from aiaas.errors import AiaasError, NotFound, Unavailable

if TYPE_CHECKING:
    from aiaas.registry.api import Registry

P = ParamSpec("P")
R = TypeVar("R")

EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3

RegistryUri = Annotated[
    str | None,
    typer.Option(
        "--registry-uri",
        envvar="AIAAS_REGISTRY_URI",
        help="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB [default: ~/.aiaas/registry.db]",
        show_default=False,
    ),
]
ArtifactRoot = Annotated[
    str | None,
    typer.Option(
        "--artifact-root",
        envvar="AIAAS_ARTIFACT_ROOT",
        help="Directory or fsspec URL of the artifact store [default: next to the SQLite file]",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE, repeatable.")]


def exit_code(error: AiaasError) -> int:
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, Unavailable) or error.http_status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT


def plain_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Our errors become one line on stderr; anything else too, unless AIAAS_DEBUG is set."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except AiaasError as error:
            typer.echo(f"error: {error.message}", err=True)
            raise typer.Exit(exit_code(error)) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:
            if os.environ.get("AIAAS_DEBUG"):
                raise
            typer.echo(f"error: unexpected {type(error).__name__}: {error}", err=True)
            raise typer.Exit(EXIT_UNAVAILABLE) from None

    return wrapper


@contextmanager
def opened(
    registry_uri: str | None, artifact_root: str | None, *, create: bool = False
) -> Iterator[Registry]:
    """The registry; only commands that add to it (`create`) may make a new SQLite file."""
    from aiaas.registry.api import Registry

    registry = Registry.open(registry_uri, artifact_root, create=create)
    try:
        yield registry
    finally:
        registry.close()
