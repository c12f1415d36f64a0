"""`aiaas models alias ...`: names such as `production` that point at one version each."""

from __future__ import annotations

import typer

from aiaas.registry.cli_common import ArtifactRoot, Json, RegistryUri, opened, plain_errors

alias_app = typer.Typer(help="Point names such as 'production' at versions.", no_args_is_help=True)


@alias_app.command("set")
@plain_errors
def alias_set(
    name: str,
    alias: str,
    version: str,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Point ALIAS of model NAME at VERSION (moving it if it exists)."""
    from aiaas.registry.uri import parse_version

    number = parse_version(version)
    with opened(registry_uri, artifact_root) as registry:
        target = registry.set_alias(name, alias, number)
    typer.echo(f"models:/{name}@{alias} -> {target.uri}")


@alias_app.command("delete")
@plain_errors
def alias_delete(
    name: str, alias: str, registry_uri: RegistryUri = None, artifact_root: ArtifactRoot = None
) -> None:
    """Delete ALIAS of model NAME (the version stays)."""
    with opened(registry_uri, artifact_root) as registry:
        registry.delete_alias(name, alias)
    typer.echo(f"deleted alias models:/{name}@{alias}")


@alias_app.command("list")
@plain_errors
def alias_list(
    name: str,
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """List the aliases of model NAME."""
    from aiaas.registry import cli_output

    with opened(registry_uri, artifact_root) as registry:
        aliases = registry.aliases(name)
    if json_output:
        cli_output.print_json(aliases)
    else:
        for alias, number in aliases.items():
            typer.echo(f"{alias}\tmodels:/{name}/{number}")
