"""`aiaas models ...`: the registry from the shell. Thin: parses, calls `Registry`, prints.

Every mistake is one line on stderr and a non-zero exit, never a traceback (exit
codes in `cli_common`). Heavy imports (SQLAlchemy, Alembic, onnx) happen inside
the commands, so that importing this module costs other `aiaas` commands nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiaas.registry.cli_alias import alias_app
from aiaas.registry.cli_common import (
    ArtifactRoot,
    Json,
    RegistryUri,
    Tags,
    opened,
    plain_errors,
)

models_app = typer.Typer(
    help="The model registry: versions, aliases, lineage, artifacts.",
    no_args_is_help=True,
)
models_app.add_typer(alias_app, name="alias")


@models_app.command()
@plain_errors
def register(
    name: Annotated[str, typer.Argument(help="Model name; created on its first version.")],
    path: Annotated[Path, typer.Argument(help="An ONNX file, or a folder with one and sidecars.")],
    description: Annotated[str | None, typer.Option("--description")] = None,
    tag: Tags = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="KEY=NUMBER.")] = None,
    parent: Annotated[
        list[str] | None, typer.Option("--parent", help="models:/NAME/VERSION it was made from.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="The run that made it.")] = None,
    params_json: Annotated[str | None, typer.Option("--params-json")] = None,
    recipe_json: Annotated[str | None, typer.Option("--recipe-json")] = None,
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Store PATH as the next version of model NAME."""
    from aiaas.registry import cli_output, parsing

    tags = parsing.parse_tags(tag or [])
    metrics = parsing.parse_metrics(metric or [])
    params = parsing.parse_json_object(params_json, "--params-json")
    recipe = parsing.parse_json_object(recipe_json, "--recipe-json")
    with opened(registry_uri, artifact_root, create=True) as registry:
        version = registry.register(
            name,
            path,
            description=description,
            tags=tags,
            metrics=metrics,
            parents=parent or [],
            run_id=run_id,
            params=params,
            recipe=recipe,
        )
    if json_output:
        cli_output.print_json(version.to_dict())
    else:
        typer.echo(f"registered {version.uri} (sha256 {version.sha256})")
    if version.identical_to:
        typer.echo(cli_output.identical_note(version), err=True)


@models_app.command()
@plain_errors
def create(
    name: str,
    description: Annotated[str | None, typer.Option("--description")] = None,
    tag: Tags = None,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Create an empty model (register creates it too); fails if the name is taken."""
    from aiaas.registry import parsing

    tags = parsing.parse_tags(tag or [])
    with opened(registry_uri, artifact_root, create=True) as registry:
        registry.create_model(name, description=description, tags=tags)
    typer.echo(f"created model {name}")


@models_app.command("list")
@plain_errors
def list_models(
    json_output: Json = False, registry_uri: RegistryUri = None, artifact_root: ArtifactRoot = None
) -> None:
    """List registered models."""
    from aiaas.registry import cli_output

    with opened(registry_uri, artifact_root) as registry:
        models = registry.list_models()
    if json_output:
        cli_output.print_json([model.to_dict() for model in models])
    else:
        cli_output.console.print(cli_output.models_table(models))


@models_app.command()
@plain_errors
def show(
    uri: Annotated[str, typer.Argument(help="models:/NAME, models:/NAME/VERSION or @ALIAS.")],
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Show a model with its versions and the edge devices running it, or one version:
    signature, files, metrics, parents."""
    from aiaas.registry import cli_output
    from aiaas.registry.uri import parse_uri

    parsed = parse_uri(uri)
    with opened(registry_uri, artifact_root) as registry:
        if parsed.is_model:
            model = registry.get_model(parsed.name)
            versions = registry.versions(parsed.name)
            devices = registry.devices(parsed.name)
        else:
            version = registry.resolve(parsed)
    if parsed.is_model and json_output:
        cli_output.print_json(
            {
                **model.to_dict(),
                "versions": [v.to_dict() for v in versions],
                "devices": [d.to_dict() for d in devices],
            }
        )
    elif parsed.is_model:
        cli_output.show_model(model, versions, devices)
    elif json_output:
        cli_output.print_json(version.to_dict())
    else:
        cli_output.show_version(version)


@models_app.command()
@plain_errors
def versions(
    name: str,
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """List the versions of model NAME."""
    from aiaas.registry import cli_output

    with opened(registry_uri, artifact_root) as registry:
        found = registry.versions(name)
    if json_output:
        cli_output.print_json([version.to_dict() for version in found])
    else:
        cli_output.console.print(cli_output.versions_table(found, full_uri=False))


@models_app.command()
@plain_errors
def tag(
    uri: Annotated[str, typer.Argument(help="models:/NAME (the model) or a version URI.")],
    tags: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE ...")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="KEY to remove.")] = None,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Set (or remove) tags on a model or a version."""
    from aiaas.errors import InvalidArgument
    from aiaas.registry import parsing

    parsed = parsing.parse_tags(tags or [])
    if not parsed and not remove:
        raise InvalidArgument("give at least one KEY=VALUE or --remove KEY")
    with opened(registry_uri, artifact_root) as registry:
        registry.tag(uri, parsed, remove or [])
    typer.echo(f"tagged {uri}")


@models_app.command()
@plain_errors
def delete(
    uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION, or models:/NAME for all.")],
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Delete a version or a whole model (refused while aliased); files stay until `gc`."""
    with opened(registry_uri, artifact_root) as registry:
        registry.delete(uri)
    typer.echo(f"deleted {uri}")


@models_app.command()
@plain_errors
def download(
    uri: str,
    dest: Annotated[Path, typer.Argument(help="A new or empty directory.")],
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Copy a version's files into DEST, verifying every sha256."""
    from aiaas.registry import cli_output
    from aiaas.registry.uri import parse_version_uri

    parsed = parse_version_uri(uri)  # a mistake in the command line is said first
    with opened(registry_uri, artifact_root) as registry:
        version = registry.resolve(parsed)
        registry.download_version(version, dest)
    if json_output:
        cli_output.print_json({"uri": version.uri, "path": str(dest), "sha256": version.sha256})
    else:
        typer.echo(f"downloaded {version.uri} to {dest}")


@models_app.command()
@plain_errors
def lineage(
    uri: str,
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Show what a version was made from and what was made from it."""
    from aiaas.registry import cli_output

    with opened(registry_uri, artifact_root) as registry:
        found = registry.lineage(uri)
    if json_output:
        cli_output.print_json(found.to_dict())
    else:
        cli_output.console.print(cli_output.lineage_tree(found))


@models_app.command()
@plain_errors
def search(
    tag: Tags = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="e.g. 'accuracy>0.97'; repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only this model.")] = None,
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Find versions by tags and metric thresholds (all must hold)."""
    from aiaas.registry import cli_output, parsing

    tags = parsing.parse_tags(tag or [])
    filters = [parsing.parse_metric_filter(item) for item in metric or []]
    with opened(registry_uri, artifact_root) as registry:
        found = registry.search(tags, filters, name)
    if json_output:
        cli_output.print_json([version.to_dict() for version in found])
    else:
        cli_output.console.print(cli_output.versions_table(found))


@models_app.command()
@plain_errors
def gc(
    grace_seconds: Annotated[
        float, typer.Option("--grace-seconds", help="Keep blobs younger than this.")
    ] = 3600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    json_output: Json = False,
    registry_uri: RegistryUri = None,
    artifact_root: ArtifactRoot = None,
) -> None:
    """Remove artifact blobs no version refers to."""
    from aiaas.registry import cli_output

    with opened(registry_uri, artifact_root) as registry:
        report = registry.gc(grace_s=grace_seconds, dry_run=dry_run)
    if json_output:
        cli_output.print_json(report.to_dict())
    else:
        verb = "would remove" if dry_run else "removed"
        typer.echo(
            f"{verb} {report.removed_blobs} blobs ({report.removed_bytes} bytes) and "
            f"{report.removed_temporaries} temporary files; kept {report.kept_recent} recent"
        )
