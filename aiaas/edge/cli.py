"""`aiaas edge`: key pairs and bundles for devices. Imports typer only; the packages
load when a command runs. Exit codes (`aiaas.exit_codes`): 2 for a bad flag, key, model
folder or an --out that is not empty, 3 for a model or version the registry lacks,
4 for a registry that cannot be reached, 1 for a bundle whose run failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from aiaas.edge.bundle import Bundled

from aiaas.exit_codes import ExitCode, PlainTyper, fail, plain_errors

RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry URI (default: AIAAS_REGISTRY_URI).")
]

edge_app = PlainTyper(
    help="Signed, self-contained model bundles for small devices, and the agent that keeps "
    "a device on a registry alias.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@edge_app.command("keygen")
@plain_errors
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Folder for edge.key and edge.pub.")],
) -> None:
    """Make an ed25519 key pair: edge.key (private, mode 0600) and edge.pub."""
    from aiaas.edge.manifest import keygen as make_pair

    pair = make_pair(out)
    typer.echo(f"wrote {pair.private} (keep it secret) and {pair.public}")


@edge_app.command("bundle")
@plain_errors
def bundle(
    uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/N or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to create (new or empty).")],
    variant: Annotated[
        Literal["int8", "int4"] | None,
        typer.Option("--variant", help="int8, or int4 (language models)."),
    ] = None,
    ort_format: Annotated[
        bool, typer.Option("--ort-format", help="Ship ONNX Runtime's ORT format.")
    ] = False,
    sign: Annotated[Path | None, typer.Option("--sign", help="edge.key to sign with.")] = None,
    registry: RegistryOption = None,
    sample: Annotated[
        Path | None, typer.Option("--sample", help="Input (.npy/.npz) for the report's run.")
    ] = None,
    measure: Annotated[
        bool, typer.Option("--measure/--no-measure", help="Run the bundle and report.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Bundle a model version with its runner, manifest and signature; run and measure it."""
    from aiaas.edge.bundle import BundleRequest, build, open_work

    request = BundleRequest(uri, out, variant, ort_format, sign, registry)
    work = open_work(out)
    try:
        try:
            bundled = build(request, work)
        except KeyboardInterrupt:
            raise fail(f"interrupted; nothing was written to {out}", ExitCode.INTERRUPTED) from None
        report = summary(bundled)
        if measure:
            try:
                report |= _measure(bundled, work, sample)
            except KeyboardInterrupt:
                message = f"interrupted while measuring; the bundle {out} is complete"
                raise fail(message, ExitCode.INTERRUPTED) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    typer.echo(json.dumps(report) if as_json else describe(report))


def summary(bundled: Bundled) -> dict[str, object]:
    manifest = bundled.manifest
    return {
        "bundle": str(bundled.path),
        **{key: manifest[key] for key in ("name", "version", "source_uri", "task", "variant")},
        "signed": bundled.signed,
        "files": len(manifest["files"]) + 1 + int(bundled.signed),
    }


def _measure(bundled: Bundled, work: Path, sample: Path | None) -> dict[str, object]:
    from aiaas.edge.measure import measure

    return measure(bundled, work, sample).to_dict()


def describe(report: dict[str, object]) -> str:
    signed = "signed" if report["signed"] else "unsigned"
    lines = [
        f"bundled {report['source_uri']} ({report['task']}, {report['variant']}) into "
        f"{report['bundle']}: {report['files']} files, {signed}"
    ]
    if "size_bytes" in report:
        lines.append(_figures(report))
    return "\n".join(lines)


def _figures(report: dict) -> str:  # type: ignore[type-arg]
    fidelity = ", ".join(f"{key} {value:.6g}" for key, value in report["fidelity"].items())
    speed = f", {report['tokens_per_s']:.1f} tokens/s" if report.get("tokens_per_s") else ""
    return (
        f"size {report['size_bytes'] / 1e6:.2f} MB; on 1 thread: peak RSS "
        f"{report['peak_rss_bytes'] / 1e6:.0f} MB, check+load {report['load_s']:.3f} s, "
        f"first answer {report['first_answer_s']:.3f} s{speed}; fidelity to "
        f"{report['source_uri'] if report['variant'] == 'fp32' else 'the source'}: {fidelity}"
    )


# `aiaas edge agent`: its own module (typer only at import; the server loads when it runs).
from aiaas.edge.agent_cli import agent  # noqa: E402

edge_app.command("agent")(agent)
