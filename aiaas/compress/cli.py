"""`aiaas compress`: prune, distill and quantize a model, measure every variant on held-out
data, keep the fastest within the accuracy budget.

Imports typer only; torch loads when the command runs. Exit codes
(`aiaas.exit_codes`): 2 for the user's mistakes (files, flags, data that does not
fit the model), 1 for a failed step (parity), 4 for a registry that cannot be reached.
"""

from __future__ import annotations

import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from aiaas.export.cli import DefaultToModelGroup, RegisterName, RegistryOption, VersionFolder

Repeat = list[str] | None
# Choices click checks, so a wrong value is one line naming the flag and what it allows.
SelectBy = Literal["batch16", "batch1", "size"]
CalibrationMethod = Literal["minmax", "entropy", "percentile"]


LLMVariant = Literal["int8", "int4"]


class QuantizeMode(StrEnum):
    DYNAMIC = "dynamic"
    STATIC = "static"


compress_app = typer.Typer(
    cls=DefaultToModelGroup,
    help="Make smaller, faster variants of a model and measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@compress_app.command("model")
def compress(
    model: Annotated[
        str,
        typer.Argument(help="module.path:factory, a .pt2, an .onnx file or a models:/ URI"),
    ],
    eval_data: Annotated[
        Path, typer.Option("--eval", help=".npz: inputs by name (or x), labels under y.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Model repository for the chosen variant.")],
    weights: Annotated[Path | None, typer.Option("--weights", help="State-dict file.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name in the repository.")
    ] = None,
    prune: Annotated[
        str | None, typer.Option("--prune", help="structured:0.5 or unstructured:0.8")
    ] = None,
    train: Annotated[Path | None, typer.Option("--train", help=".npz for fine-tuning.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Fine-tuning epochs.")] = 3,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    distill: Annotated[
        str | None,
        typer.Option("--distill", help="Student: module:factory, shrink:FACTOR or current."),
    ] = None,
    student_weights: Annotated[Path | None, typer.Option("--student-weights")] = None,
    temperature: Annotated[float, typer.Option("--temperature")] = 4.0,
    alpha: Annotated[float, typer.Option("--alpha", help="Weight of the soft loss.")] = 0.7,
    distill_epochs: Annotated[int, typer.Option("--distill-epochs")] = 10,
    quantize: Annotated[
        list[QuantizeMode] | None,
        typer.Option("--quantize", help="dynamic or static (repeatable)."),
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help=".npz for static quantization.")
    ] = None,
    calibration_method: Annotated[
        CalibrationMethod, typer.Option("--calibration-method", help="For static quantization.")
    ] = "minmax",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor")] = True,
    exclude_op: Annotated[Repeat, typer.Option("--exclude-op", help="Keep in float.")] = None,
    exclude_node: Annotated[Repeat, typer.Option("--exclude-node", help="Keep in float.")] = None,
    max_accuracy_drop: Annotated[float, typer.Option("--max-accuracy-drop")] = 0.01,
    select_by: Annotated[
        SelectBy, typer.Option("--select-by", help="What fastest means.")
    ] = "batch16",
    threads: Annotated[int, typer.Option("--threads", help="ONNX Runtime threads.")] = 1,
    rounds: Annotated[int, typer.Option("--rounds", help="Latency samples per variant.")] = 30,
    report: Annotated[Path, typer.Option("--report")] = Path("compress-report.json"),
    output_name: Annotated[Repeat, typer.Option("--output-name")] = None,
    dynamic_axis: Annotated[Repeat, typer.Option("--dynamic-axis")] = None,
    atol: Annotated[float, typer.Option("--atol")] = 1e-4,
    rtol: Annotated[float, typer.Option("--rtol")] = 1e-3,
    register: Annotated[
        str | None, typer.Option("--register", help="Register the chosen variant's lineage.")
    ] = None,
    registry: RegistryOption = None,
) -> None:
    """Compress a model and keep the fastest variant within --max-accuracy-drop."""
    from aiaas.compress.command import CompressRequest, run
    from aiaas.errors import AiaasError
    from aiaas.exit_codes import fail_with

    request = CompressRequest(
        model=model, eval_data=eval_data, out=out, weights=weights, name=name, prune=prune,
        train=train, epochs=epochs, lr=lr, distill=distill, student_weights=student_weights,
        temperature=temperature, alpha=alpha, distill_epochs=distill_epochs,
        quantize=[mode.value for mode in quantize or []], calibration=calibration,
        calibration_method=calibration_method,
        per_channel=per_channel, exclude_ops=exclude_op or [], exclude_nodes=exclude_node or [],
        max_accuracy_drop=max_accuracy_drop, select_by=select_by, threads=threads, rounds=rounds,
        report=report, output_names=output_name or [], dynamic_axes=dynamic_axis or [],
        atol=atol, rtol=rtol, register=register, registry=registry,
    )  # fmt: skip
    try:
        run(request)
    except AiaasError as error:
        raise fail_with(error) from None


@compress_app.command("llm")
def compress_llm(
    source: Annotated[
        str,
        typer.Argument(
            help="A models:/NAME/VERSION URI or a version folder of `aiaas export llm`."
        ),
    ],
    variant: Annotated[
        LLMVariant, typer.Option("--variant", help="int8 (dynamic) or int4 (MatMulNBits).")
    ],
    out: VersionFolder,
    register: RegisterName = None,
    parent: Annotated[
        str | None,
        typer.Option("--parent", help="Registry URI of the float32 source (default: the URI)."),
    ] = None,
    registry: RegistryOption = None,
) -> None:
    """Quantize a converted language model; report size, decode speed and fidelity to fp32."""
    from aiaas.errors import AiaasError
    from aiaas.exit_codes import fail_with

    try:
        with tempfile.TemporaryDirectory(prefix="aiaas-compress-llm-") as workdir:
            folder, lineage_parent, registry_parent = _llm_source(source, Path(workdir), registry)
            _quantize_llm(
                folder, variant, out, register, parent or registry_parent, registry,
                lineage_parent,
            )  # fmt: skip
    except AiaasError as error:
        raise fail_with(error) from None


def _llm_source(
    source: str, workdir: Path, registry: str | None
) -> tuple[Path, dict[str, str] | None, str | None]:
    """The version folder to quantize, the parent its record names (None: the folder's
    model.onnx by path and sha256) and the registry version it came from."""
    from aiaas.export import inputs

    if not inputs.is_model_uri(source):
        return Path(source), None, None
    downloaded = inputs.from_registry(source, workdir, registry)
    assert downloaded.folder is not None
    return downloaded.folder, downloaded.parents[0], downloaded.version_uri


def _quantize_llm(
    source: Path,
    variant: str,
    out: Path,
    register: str | None,
    parent: str | None,
    registry: str | None,
    lineage_parent: dict[str, str] | None,
) -> None:
    from aiaas.export import llm_fidelity
    from aiaas.export.llm_variants import quantize_version, variant_recipe

    target = quantize_version(source, out, variant, parent=lineage_parent)
    reference = llm_fidelity.measure(source, source)
    measured = llm_fidelity.measure(source, target)
    for label, row in (("fp32", reference), (variant, measured)):
        typer.echo(
            f"{label:5} size {row.size_bytes / 1e6:7.1f} MB  decode "
            f"{row.decode_tokens_per_s:6.1f} tokens/s  greedy agreement "
            f"{row.greedy_agreement:6.1%}  perplexity {row.perplexity:7.2f}"
        )
    typer.echo(f"wrote {target}")
    if register:
        from aiaas.export.registering import register_file

        uri = register_file(
            target, register, registry, parents=[parent] if parent else [],
            recipe=variant_recipe(target), metrics=measured.as_metrics(),
        )  # fmt: skip
        typer.echo(f"registered {uri}")
