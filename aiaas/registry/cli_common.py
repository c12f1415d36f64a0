"""What every `aiaas models` command shares: the registry options, opening and closing
the registry, and turning errors into one line on stderr and an exit code.

Exit codes are `aiaas.exit_codes`' table: 3 when the model, version or alias does
not exist; 2 for bad input, a name already taken, or an action the registry's state
refuses (deleting an aliased version, a corrupt artifact); 4 when the registry
cannot be reached; 1 for an unexpected failure (AIAAS_DEBUG=1 shows its traceback).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from aiaas.exit_codes import plain_errors

if TYPE_CHECKING:
    from aiaas.registry.api import Registry

__all__ = ["ArtifactRoot", "Json", "RegistryUri", "Tags", "opened", "plain_errors"]

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
