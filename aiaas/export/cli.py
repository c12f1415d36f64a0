"""`aiaas export`: a PyTorch model (or a GGUF language model, `aiaas export llm`) in, a
parity-checked model-repository entry out.

`aiaas export MODEL ...` stays the PyTorch export: a first argument that names no
subcommand goes to `aiaas export model`. Imports typer only; torch loads when the
command runs, so registering the command in `aiaas.cli` costs `aiaas serve` nothing.
Exit codes (`aiaas.exit_codes`): 2 for the user's mistakes (files, flags, shapes), 1 for
an export that failed (parity, unsupported operator), 4 when the registry of --register
cannot be reached.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import click
import typer
from typer.core import TyperGroup

from aiaas.export import inputs

if TYPE_CHECKING:
    from aiaas.export.api import ExportReport

Optimization = Literal["extended", "basic", "none"]
# Options every command that writes a model shares (export, compress).
RegisterName = Annotated[
    str | None, typer.Option("--register", help="Also register under this model name.")
]
RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry URI (default: AIAAS_REGISTRY_URI).")
]
VersionFolder = Annotated[Path, typer.Option("--out", help="REPO/NAME/VERSION folder to create.")]

_MODEL_HELP = (
    "module.path:factory (returns an nn.Module), a torch.export .pt2 program file, or an ONNX "
    "model: a models:/NAME/VERSION URI or an .onnx file"
)


class DefaultToModelGroup(TyperGroup):
    """`aiaas export SPEC` without a subcommand name means `aiaas export model SPEC`, so the
    command keeps its first form while `llm` joins it (`aiaas compress` does the same)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["model", *args]
        return super().parse_args(ctx, args)


export_app = typer.Typer(
    cls=DefaultToModelGroup,
    help="Export a model to ONNX into a model repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@export_app.command("model")
def export(
    model: Annotated[str, typer.Argument(help=_MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Model repository to write into.")],
    weights: Annotated[Path | None, typer.Option("--weights", help="State-dict file.")] = None,
    example_shape: Annotated[
        list[str] | None,
        typer.Option("--example-shape", help="NAME=1x3x224x224:FP32 (repeatable)."),
    ] = None,
    example_npz: Annotated[
        Path | None, typer.Option("--example-npz", help="Inputs under their names (or x).")
    ] = None,
    dynamic_axis: Annotated[
        list[str] | None,
        typer.Option("--dynamic-axis", help="NAME=AXIS beyond the batch axis (repeatable)."),
    ] = None,
    output_name: Annotated[
        list[str] | None, typer.Option("--output-name", help="Output names, in order.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name in the repository.")
    ] = None,
    version: Annotated[int | None, typer.Option("--version", help="Default: next.")] = None,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size")] = 32,
    optimization: Annotated[
        Optimization, typer.Option("--optimization", help="ONNX Runtime graph optimisation.")
    ] = "extended",
    atol: Annotated[float, typer.Option("--atol")] = 1e-4,
    rtol: Annotated[float, typer.Option("--rtol")] = 1e-3,
    register: RegisterName = None,
    registry: RegistryOption = None,
) -> None:
    """Export a PyTorch model to ONNX, check parity with PyTorch, write a repository entry;
    a models:/ URI or an .onnx file is written into the repository as it is."""
    from aiaas.errors import AiaasError
    from aiaas.exit_codes import fail_with

    try:
        with tempfile.TemporaryDirectory(prefix="aiaas-export-") as workdir:
            source = inputs.open_input(model, Path(workdir), weights=weights, registry=registry)
            recipe = {"export": {"model": source.label, "optimization": optimization}}
            record = source.derived_record("export", recipe)
            if source.onnx is not None:
                staged = Path(workdir) / "stamped" / "model.onnx"
                report = _install(source, staged, out, name, version, max_batch_size, record)
            else:
                report = _run(
                    model, out, weights, example_shape or [], example_npz, dynamic_axis or [],
                    output_name or [], name or source.name, version, max_batch_size,
                    optimization, atol, rtol, record,
                )  # fmt: skip
        if register:
            from aiaas.export.registering import register_export

            parents = [source.version_uri] if source.version_uri else []
            uri = register_export(report, register, registry, recipe=recipe, parents=parents)
            typer.echo(f"registered {uri}")
    except AiaasError as error:  # a bad input, a failed export or registry write
        raise fail_with(error) from None


def _install(
    source: inputs.InputModel,
    staged: Path,
    out: Path,
    name: str | None,
    version: int | None,
    max_batch_size: int,
    record: dict[str, Any],
) -> ExportReport:
    """An ONNX model (a registry version, a file) into the repository with its graph
    unchanged and its lineage record: what a bare server needs to say where it came from."""
    from aiaas.export import repository as layout
    from aiaas.export.api import ExportReport
    from aiaas.lineage import stamp_file

    assert source.onnx is not None
    staged.parent.mkdir(parents=True, exist_ok=True)
    stamp_file(source.onnx, record, dest=staged)
    target = layout.install(staged, out, name or source.name, version, max_batch_size)
    typer.echo(f"exported {source.label} to {target} (the ONNX graph unchanged)")
    return ExportReport(path=target, max_abs_error=0.0, max_rel_error=0.0, batch_sizes=())


def _run(
    model_spec: str,
    out: Path,
    weights: Path | None,
    example_shape: list[str],
    example_npz: Path | None,
    dynamic_axis: list[str],
    output_names: list[str],
    name: str,
    version: int | None,
    max_batch_size: int,
    optimization: str,
    atol: float,
    rtol: float,
    record: dict[str, Any],
) -> ExportReport:
    from aiaas.errors import InvalidArgument
    from aiaas.export import examples, loading
    from aiaas.export.api import export_to_repository

    if optimization not in ("extended", "basic", "none"):
        raise InvalidArgument(f"--optimization '{optimization}': use extended, basic or none")
    if bool(example_shape) == (example_npz is not None):
        raise InvalidArgument("give example inputs with --example-shape or --example-npz (one)")
    module = loading.load_model(model_spec, weights)
    inputs = examples.from_npz(example_npz) if example_npz else examples.from_shapes(example_shape)
    report = export_to_repository(
        module, inputs, out, name, version,
        max_batch_size=max_batch_size, output_names=output_names or None,
        dynamic_axes=examples.parse_dynamic_axes(dynamic_axis),
        atol=atol, rtol=rtol, optimization=optimization, lineage=record,
    )  # fmt: skip
    lengths = f" and at {', '.join(report.other_lengths)}" if report.other_lengths else ""
    typer.echo(
        f"exported {report.path} (ONNX Runtime optimisation: {report.optimization}); parity on "
        f"examples and batch sizes {', '.join(map(str, report.batch_sizes))}{lengths}: "
        f"max abs error {report.max_abs_error:.3g}, max rel error {report.max_rel_error:.3g}"
    )
    for note in report.notes:
        typer.echo(f"note: {note}")
    return report


@export_app.command("llm")
def export_llm(
    gguf_file: Annotated[Path, typer.Argument(help="A Llama-architecture .gguf file.")],
    out: VersionFolder,
    context_length: Annotated[
        int | None,
        typer.Option("--context-length", help="Served context (default: min(model's, 2048))."),
    ] = None,
    register: RegisterName = None,
    registry: RegistryOption = None,
) -> None:
    """Convert a GGUF language model to ONNX with a KV cache, its tokenizer and chat template."""
    from aiaas.errors import AiaasError
    from aiaas.exit_codes import fail_with

    try:
        from aiaas.export.llm import export_llm as convert_llm

        report = convert_llm(gguf_file, out, context_length=context_length)
        typer.echo(
            f"exported {report.path} in {report.seconds:.0f}s; parity with PyTorch over "
            f"{report.parity_steps} generation steps: max abs logit error "
            f"{report.max_abs_error:.3g}"
        )
        if register:
            from aiaas.export.registering import register_file

            recipe = {"export": report.recipe, "variant": "fp32"}
            uri = register_file(report.path, register, registry, recipe=recipe)
            typer.echo(f"registered {uri}")
    except AiaasError as error:
        raise fail_with(error) from None
