"""`aiaas federated`: simulate, partition, server, client.

Imports typer only; torch and flwr load when a command runs, so registering
this app in `aiaas.cli` costs `aiaas serve` nothing. Every mistake that can be
found without starting Flower (a SPEC error, an impossible partition, a data
file without x and y, more minimum clients than clients) is one `error:` line
and exit code 2, before any process starts.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from aiaas.exit_codes import ExitCode, fail
from aiaas.federated.config import StrategyName

federated_app = typer.Typer(
    help="Federated learning on Flower, from a train SPEC.", no_args_is_help=True
)
Opt = typer.Option
SpecArg = Annotated[Path, typer.Argument(help="SPEC file (TOML), with a [federated] section.")]
Rounds = Annotated[int | None, Opt(help="Federated rounds.")]
Strategy = Annotated[StrategyName | None, Opt(help="Aggregation strategy.")]
Mu = Annotated[float | None, Opt("--proximal-mu", help="FedProx proximal weight.")]
ServerLr = Annotated[float | None, Opt("--server-lr", help="FedAdam server learning rate.")]
Tau = Annotated[float | None, Opt(help="FedAdam adaptivity (tau).")]
Fraction = Annotated[float | None, Opt("--fraction-fit", help="Clients sampled per round.")]
MinAvailable = Annotated[int | None, Opt("--min-available-clients")]
MinFit = Annotated[int | None, Opt("--min-fit-clients")]
LocalEpochs = Annotated[int | None, Opt("--local-epochs", help="Epochs per client per round.")]
DpClip = Annotated[float | None, Opt("--dp-clip", help="DP: clip each update to this L2 norm.")]
DpNoise = Annotated[float | None, Opt("--dp-noise", help="DP: Gaussian noise multiplier.")]
RunDir = Annotated[str | None, Opt("--run-dir", help="Run directory.")]
Seed = Annotated[int | None, Opt(help="Seed (SPEC training.seed).")]
Resume = Annotated[bool, Opt("--resume", help="Continue from the last round's checkpoint.")]
StopAfter = Annotated[int, Opt("--stop-after-round", help="Checkpoint and stop after round N.")]
Registry = Annotated[str | None, Opt("--registry-uri", help="Register here (or env).")]
Export = Annotated[bool | None, Opt("--export/--no-export", help="Export ONNX at the end.")]
Sets = Annotated[list[str] | None, Opt("--set", help="Any SPEC key: --set federated.tau=0.01")]
Clients = Annotated[int, Opt("--clients", help="Number of clients.")]
Scheme = Annotated[str, Opt("--partition", help="iid | dirichlet:ALPHA | shards:K.")]
Baseline = Annotated[
    float | None, Opt("--baseline-accuracy", help="Centralized accuracy, dashed in the plot.")
]
Certs = Annotated[
    Path | None, Opt("--certificates", help="TLS: ca.crt (+ server.pem, server.key on a server).")
]
Insecure = Annotated[bool, Opt("--insecure", help="No TLS (prints a warning).")]
SecAgg = Annotated[
    bool | None, Opt("--secagg/--no-secagg", help="Flower's SecAgg+ secure aggregation.")
]

_FLAGS = {
    "rounds": "federated.rounds",
    "strategy": "federated.strategy",
    "proximal_mu": "federated.proximal_mu",
    "server_lr": "federated.server_lr",
    "tau": "federated.tau",
    "fraction_fit": "federated.fraction_fit",
    "min_available_clients": "federated.min_available_clients",
    "min_fit_clients": "federated.min_fit_clients",
    "local_epochs": "federated.local_epochs",
    "dp_clip": "federated.dp_clip",
    "dp_noise": "federated.dp_noise",
    "run_dir": "run_dir",
    "seed": "training.seed",
    "registry_uri": "export.registry_uri",
    "export": "export.enabled",
    "secagg": "federated.secagg",
}


@federated_app.command()
def simulate(
    spec: SpecArg,
    clients: Clients = 10,
    partition: Scheme = "iid",
    rounds: Rounds = None,
    strategy: Strategy = None,
    proximal_mu: Mu = None,
    server_lr: ServerLr = None,
    tau: Tau = None,
    fraction_fit: Fraction = None,
    min_available_clients: MinAvailable = None,
    min_fit_clients: MinFit = None,
    local_epochs: LocalEpochs = None,
    dp_clip: DpClip = None,
    dp_noise: DpNoise = None,
    run_dir: RunDir = None,
    seed: Seed = None,
    resume: Resume = False,
    stop_after_round: StopAfter = 0,
    registry_uri: Registry = None,
    export: Export = None,
    baseline_accuracy: Baseline = None,
    set_: Sets = None,
    secagg: SecAgg = None,
    workers: Annotated[int, Opt(help="Clients trained at once (threads).")] = 1,
    verbose: Annotated[bool, Opt("--verbose", help="Show Flower's log.")] = False,
) -> None:
    """Run N clients on this machine in Flower's Simulation Runtime."""
    flags = dict(locals())
    from aiaas.federated.config import check_secagg
    from aiaas.federated.partition import parse_scheme
    from aiaas.federated.session import simulate_job

    fjob = _load(spec, flags)
    with _errors():
        scheme = parse_scheme(partition)
        fjob.federated.check_clients(clients)
        check_secagg(fjob.federated, resume=resume, stop_after_round=stop_after_round)
    _quiet_flower(verbose)
    from aiaas.federated.rounds import FederationFailed

    try:
        with _errors():
            result = simulate_job(
                fjob,
                clients=clients,
                scheme=scheme,
                resume=resume,
                stop_after_round=stop_after_round,
                baseline_accuracy=baseline_accuracy,
                workers=workers,
                on_partitioned=_histogram,
            )
    except FederationFailed as error:
        raise fail(str(error), ExitCode.FAILED) from None
    except KeyboardInterrupt:
        raise fail(_interrupted(fjob), ExitCode.INTERRUPTED) from None
    _summary(result.run.root, result.outcome.metrics, result.published)


def _interrupted(fjob: Any) -> str:
    """Ctrl-C: the last round whose checkpoint is safe, and how to go on from it."""
    from aiaas.federated.rundir import FederatedRunDir

    run = FederatedRunDir(fjob.run_path)
    last = run.latest_round()
    if last is None:
        return "interrupted before the first round ended; run it again to start over"
    return (
        f"interrupted after round {last} of {fjob.federated.rounds}; add --resume to continue "
        f"from its checkpoint ({run.checkpoints / f'round-{last:04d}.pt'})"
    )


@federated_app.command("partition")
def partition_command(
    spec: SpecArg,
    out: Annotated[Path, Opt("--out", help="Folder for client-NNN.npz files.")],
    clients: Clients = 10,
    partition: Scheme = "iid",
    seed: Seed = None,
    set_: Sets = None,
) -> None:
    """Write one .npz (x, y) per client, for `aiaas federated client --data`."""
    flags = dict(locals())
    from aiaas.federated import task
    from aiaas.federated.partition import parse_scheme, partition_indices, write_partitions
    from aiaas.train.data import load_dataset

    fjob = _load(spec, flags)
    with _errors():
        scheme = parse_scheme(partition)
        dataset = load_dataset(fjob.job.data.dataset, fjob.job.data.kwargs, fjob.base)
        inputs, labels = task.arrays_of(dataset)
        parts = partition_indices(labels, clients, scheme, fjob.job.training.seed)
    paths = write_partitions(inputs, labels, parts, out)
    _histogram(labels, parts)
    typer.echo(f"wrote {len(paths)} partitions ({scheme}) to {out}")


@federated_app.command()
def server(
    spec: SpecArg,
    address: Annotated[str, Opt("--address", help="Fleet API HOST:PORT.")],
    clients: Annotated[int | None, Opt("--clients", help="Clients expected.")] = None,
    partition: Annotated[str, Opt("--partition", help="Scheme, for lineage.")] = "unknown",
    certificates: Certs = None,
    insecure: Insecure = False,
    rounds: Rounds = None,
    strategy: Strategy = None,
    proximal_mu: Mu = None,
    server_lr: ServerLr = None,
    tau: Tau = None,
    fraction_fit: Fraction = None,
    min_available_clients: MinAvailable = None,
    min_fit_clients: MinFit = None,
    local_epochs: LocalEpochs = None,
    dp_clip: DpClip = None,
    dp_noise: DpNoise = None,
    run_dir: RunDir = None,
    seed: Seed = None,
    resume: Resume = False,
    stop_after_round: StopAfter = 0,
    registry_uri: Registry = None,
    export: Export = None,
    baseline_accuracy: Baseline = None,
    set_: Sets = None,
    secagg: SecAgg = None,
) -> None:
    """Start a Flower SuperLink and run the federation on the clients that join it."""
    flags = dict(locals())
    from aiaas.federated import deploy
    from aiaas.federated.config import check_secagg
    from aiaas.federated.session import start_run

    fjob = _load(spec, flags)
    expected = clients or fjob.federated.min_available_clients
    with _errors():
        deploy.check_address(address, "--address")
        fjob.federated.check_clients(expected)
        check_secagg(fjob.federated, resume=resume, stop_after_round=stop_after_round)
        tls = _tls(certificates, insecure, server=True)
        run = start_run(
            fjob, mode="deployment", clients=expected, partition=partition, resume=resume
        )
    settings = {
        "spec": str(spec.resolve()),
        "overrides": _overrides(flags),
        "run_dir": str(run.root.resolve()),
        "clients": expected,
        "resume": resume,
        "stop_after_round": stop_after_round,
        "baseline_accuracy": baseline_accuracy,
        "partition": partition,
    }
    from rich.console import Console

    console = Console(stderr=True)
    from aiaas.federated.rounds import progress_line

    try:
        outcome = deploy.serve(
            deploy.ServerProcessSettings(
                address=address,
                run_dir=run.root,
                settings=settings,
                job=fjob.job.to_dict(),
                tls=tls,
                secagg=fjob.federated.secagg,
                on_round=lambda line: console.print(
                    progress_line(line, fjob.federated.rounds)
                    if "round_s" in line
                    else f"round {line['round']} aborted",
                    soft_wrap=True,
                ),
            )
        )
    except deploy.DeploymentFailed as error:
        raise fail(str(error), ExitCode.FAILED) from None
    if outcome["state"] == "stopped":
        typer.echo(f"stopped after round {outcome['last_round']}; continue with --resume")
        return
    metrics = json.loads((run.final / "metrics.json").read_text())
    _summary(run.root, metrics, outcome["published"])


@federated_app.command()
def client(
    spec: SpecArg,
    server: Annotated[str, Opt("--server", help="The SuperLink's HOST:PORT.")],
    data: Annotated[Path, Opt("--data", help="This client's .npz with x and y.")],
    partition_id: Annotated[
        int | None, Opt("--partition-id", help="Client id (default: digits in the file name).")
    ] = None,
    certificates: Certs = None,
    insecure: Insecure = False,
    retries: Annotated[int, Opt(help="Connection attempts before giving up.")] = 10,
    max_wait: Annotated[float, Opt("--max-wait", help="Seconds to keep retrying.")] = 60.0,
    set_: Sets = None,
) -> None:
    """Join a federation as one Flower SuperNode that trains on --data only."""
    flags = dict(locals())
    from aiaas.federated import deploy
    from aiaas.federated.partition import check_partition_file

    _load(spec, flags)
    with _errors():
        deploy.check_address(server, "--server")
        check_partition_file(data)
        tls = _tls(certificates, insecure, server=False)
    identity = partition_id if partition_id is not None else _digits(data)
    log = data.with_name(data.stem + ".client.log")
    connected, code = deploy.join(
        deploy.ClientProcessSettings(
            server=server,
            data_path=data,
            partition_id=identity,
            root_certificates=tls.ca if tls else None,
            retries=retries,
            max_wait_s=max_wait,
            log=log,
        )
    )
    if not connected:
        raise fail(
            f"cannot reach the Flower server at {server} after {retries} attempts (log: {log})",
            ExitCode.UNAVAILABLE,
        )
    typer.echo(f"client {identity}: the server closed the federation (log: {log})")


def _load(spec: Path, flags: dict[str, Any]) -> Any:
    from aiaas.federated.config import load_federated_job

    with _errors():
        return load_federated_job(spec, _overrides(flags))


def _overrides(flags: dict[str, Any]) -> list[tuple[str, Any]]:
    import os

    from aiaas.train.spec import parse_override

    overrides: list[tuple[str, Any]] = []
    if flags.get("registry_uri") is None and os.environ.get("AIAAS_REGISTRY_URI"):
        overrides.append(("export.registry_uri", os.environ["AIAAS_REGISTRY_URI"]))
    overrides += [(key, flags[f]) for f, key in _FLAGS.items() if flags.get(f) is not None]
    overrides += [parse_override(text) for text in flags.get("set_") or []]
    return overrides


class _errors:
    """Turn a ConfigError into the one-line, exit-2 failure every command promises."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        from aiaas.train.config import ConfigError

        if isinstance(error, ConfigError):
            raise fail(str(error), ExitCode.BAD_INPUT) from None


def _tls(certificates: Path | None, insecure: bool, *, server: bool) -> Any:
    from aiaas.federated import deploy
    from aiaas.train.config import ConfigError

    if certificates is not None and insecure:
        raise ConfigError("--insecure", "give either --certificates or --insecure, not both")
    if certificates is None and not insecure:
        raise ConfigError("--certificates", "required (or --insecure to run without TLS)")
    if insecure:
        typer.echo("warning: --insecure: traffic to and from the server is not encrypted", err=True)
        return None
    return deploy.certificates(certificates, server=server)  # type: ignore[arg-type]


def _digits(path: Path) -> int:
    found = re.findall(r"\d+", path.stem)
    return int(found[-1]) if found else 0


def _quiet_flower(verbose: bool) -> None:
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.WARNING)


def _histogram(labels: Any, parts: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from aiaas.federated.partition import label_histogram

    classes, counts = label_histogram(labels, parts)
    table = Table(title="samples per client and label")
    for column in ["client", *map(str, classes), "total"]:
        table.add_column(column, justify="right")
    for row, numbers in enumerate(counts):
        table.add_row(str(row), *map(str, numbers.tolist()), str(int(numbers.sum())))
    Console(width=max(80, 8 * (len(classes) + 2))).print(table)


def _summary(run_dir: Path, metrics: dict[str, Any], published: dict[str, Any]) -> None:
    typer.echo(f"run directory: {run_dir}")
    typer.echo(
        "final "
        + "  ".join(
            f"{k} {v:.4g}"
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        )
    )
    for key, value in published.items():
        typer.echo(f"{key}: {value}")
