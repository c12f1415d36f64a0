"""Registry throughput: registering and resolving versions on SQLite and PostgreSQL,
with baselines measured in the same run (the artifact write alone; one raw-driver
SELECT of a version row), so the registry's own overhead is visible.

Also: the time from an alias move to the first request answered by the new version,
against a real `aiaas serve --model models:/NAME@production`, with the server's
registry poll interval as the reference.

Usage: .venv/bin/python bench/registry_bench.py [--versions 1000] [--postgres-uri URI]
       .venv/bin/python bench/registry_bench.py --alias-move-only [--moves 7] [--poll-secs 0.5]
Without --postgres-uri a throwaway PostgreSQL cluster is started (initdb/pg_ctl,
durable settings: fsync on), and stopped afterwards. Prints the tables and writes them
to bench/results/registry.md (--alias-move-only replaces just that section).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "registry")]

import httpx  # noqa: E402
import models  # noqa: E402  (tests/models.py: small ONNX graphs built in code)
import onnx  # noqa: E402

from aiaas.registry import Registry  # noqa: E402
from bench.loadgen import Process, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "registry.md"
NOTES = [
    "- register = read the ONNX signature, write + fsync + read back + rename each blob, then one",
    "  transaction (SQLite: BEGIN IMMEDIATE, WAL, synchronous=NORMAL; PostgreSQL: model row",
    "  locked FOR UPDATE, fsync and synchronous_commit on).",
    "- resolve = one read transaction returning the full version record (files, tags, metrics,",
    "  parents, aliases): six SELECTs through the ORM session, against one raw SELECT in the",
    "  baseline row; that difference is the registry's own overhead.",
    "- The time from an alias move to the first request served by the new version: below.",
]
MODEL = "bench-mlp"
ALIAS_BEGIN = "<!-- alias-move -->"
ALIAS_END = "<!-- /alias-move -->"


def make_files(folder: Path, count: int) -> list[Path]:
    """Distinct small ONNX files (a 64x64 layer, ~17 KiB), so no blob is deduplicated."""
    folder.mkdir(parents=True)
    base = models.batch_probe(width=64, depth=0)
    files = []
    for index in range(count):
        base.doc_string = f"variant {index}"
        path = folder / f"m{index}.onnx"
        onnx.save(base, path)
        files.append(path)
    return files


def timed(count: int, operation: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for index in range(count):
        operation(index)
    return count / (time.perf_counter() - start)


def baseline_artifact_write(files: list[Path], target: Path) -> float:
    """What `register` must do at the least: hash, copy, fsync, rename each file."""
    target.mkdir(parents=True)

    def write(index: int) -> None:
        data = files[index].read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        temporary = target / f"{digest}.part"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(target / digest)

    return timed(len(files), write)


def baseline_raw_select(uri: str, count: int) -> float:
    """One SELECT of a version row by (model name, number) through the bare driver."""
    query = (
        "SELECT v.id, v.sha256 FROM model_versions v JOIN registered_models m "
        "ON v.model_id = m.id WHERE m.name = {p} AND v.version = {p}"
    )
    numbers = list(range(1, count + 1))
    random.Random(1).shuffle(numbers)
    if uri.startswith("sqlite"):
        connection = sqlite3.connect(uri.removeprefix("sqlite:///"))
        sql = query.format(p="?")
    else:
        import psycopg

        connection = psycopg.connect(uri.replace("postgresql+psycopg://", "postgresql://"))
        sql = query.format(p="%s")
    try:
        return timed(count, lambda i: connection.execute(sql, (MODEL, numbers[i])).fetchone())
    finally:
        connection.close()


def run_backend(
    label: str, uri: str, files: list[Path], work: Path
) -> list[tuple[str, str, float]]:
    count = len(files)
    rows = []
    with Registry.open(uri, str(work / f"artifacts-{label}")) as registry:
        rate = timed(count, lambda i: registry.register(MODEL, files[i], metrics={"i": i}))
        rows.append((label, f"register {count} versions (distinct files)", rate))
        numbers = list(range(1, count + 1))
        random.Random(0).shuffle(numbers)
        rate = timed(count, lambda i: registry.resolve(f"models:/{MODEL}/{numbers[i]}"))
        rows.append((label, f"resolve models:/{MODEL}/N, {count} random N", rate))
        registry.set_alias(MODEL, "production", count // 2)
        rate = timed(count, lambda i: registry.resolve(f"models:/{MODEL}@production"))
        rows.append((label, f"resolve models:/{MODEL}@production x{count}", rate))
    rate = baseline_raw_select(uri, count)
    rows.append((label, "baseline: raw driver SELECT of one version row", rate))
    return rows


def start_postgres(work: Path) -> tuple[object, str]:
    from pg_cluster import PostgresCluster, find_bin, free_port

    bin_dir = find_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL not found: apt-get install -y postgresql, or --postgres-uri")
    cluster = PostgresCluster(bin_dir, free_port())
    cluster.start(durable=True)
    return cluster, cluster.create_database()


def alias_move_seconds(work: Path, moves: int, poll_secs: float) -> list[float]:
    """Per move: from `set_alias` returning to the first answer computed by the new version.

    Each version answers y = x + its number, so the answer itself says who computed it.
    Moves happen at a random phase of the server's poll cycle, as real ones do.
    """
    work.mkdir(parents=True)
    uri, root = f"sqlite:///{work / 'registry.db'}", str(work / "artifacts")
    with Registry.open(uri, root) as registry:
        for number in range(1, moves + 2):
            path = work / f"v{number}.onnx"
            onnx.save(models.add_constant(number), path)
            registry.register(MODEL, path)
        registry.set_alias(MODEL, "production", 1)
        port = free_port()
        command = [
            sys.executable, "-m", "aiaas.cli", "serve", "--http-port", str(port),
            "--registry-uri", uri, "--artifact-root", root, "--log-level", "warning",
            "--model", f"models:/{MODEL}@production", "--registry-poll-secs", str(poll_secs),
            "--registry-cache-dir", str(work / "cache"),
        ]  # fmt: skip
        if "--grpc-port" in (ROOT / "aiaas" / "cli.py").read_text():
            command += ["--grpc-port", "0"]
        url = f"http://127.0.0.1:{port}"
        server = Process(command, f"{url}/v2/health/ready", work / "server.log")
        try:
            return [_one_move(registry, url, number, poll_secs) for number in range(2, moves + 2)]
        finally:
            server.stop()


def _one_move(registry: Registry, url: str, number: int, poll_secs: float) -> float:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}
    time.sleep(random.Random(number).uniform(0, poll_secs))
    registry.set_alias(MODEL, "production", number)
    moved = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        while True:
            answer = client.post(f"/v2/models/{MODEL}/infer", json=body).json()
            if answer["model_version"] == str(number) and answer["outputs"][0]["data"][0] == number:
                return time.perf_counter() - moved
            time.sleep(0.002)


def render_alias_move(seconds: list[float], poll_secs: float) -> str:
    ms = [value * 1000 for value in seconds]
    return "\n".join(
        [
            ALIAS_BEGIN,
            "Alias move to the first request answered by the new version: `aiaas serve --model "
            f"models:/{MODEL}@production` (SQLite registry), {len(ms)} moves.",
            "",
            "| registry poll interval (reference) | median ms | min ms | max ms |",
            "|---:|---:|---:|---:|",
            f"| {poll_secs * 1000:,.0f} ms | {statistics.median(ms):,.0f} | {min(ms):,.0f} "
            f"| {max(ms):,.0f} |",
            "",
            "- Measured from `set_alias` returning until an infer request is answered by the new",
            "  version (clients poll every 2 ms). It is the wait for the next poll (half the",
            "  interval on average) plus resolving the alias, downloading and verifying the",
            "  artifact, and loading the ONNX session; requests keep being answered by the old",
            "  version meanwhile.",
            "- Command: `.venv/bin/python bench/registry_bench.py --alias-move-only` (also part",
            "  of a full run).",
            ALIAS_END,
        ]
    )


def write_alias_section(section: str) -> None:
    """Replace the alias-move section of the results file, keeping the rest as it is."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if ALIAS_BEGIN in text and ALIAS_END in text:
        before, rest = text.split(ALIAS_BEGIN, 1)
        text = before + section + rest.split(ALIAS_END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


def render(rows: list[tuple[str, str, float]], count: int) -> str:
    lines = [
        f"Registry benchmark: {count} versions of one model, one process, "
        f"{os.cpu_count()} CPUs ({platform.machine()}, Python {platform.python_version()}).",
        "",
        "| backend | operation | ops/s |",
        "|---|---|---:|",
    ]
    lines += [f"| {backend} | {operation} | {rate:,.0f} |" for backend, operation, rate in rows]
    lines += ["", *NOTES]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--postgres-uri", help="an empty database; default: a throwaway cluster")
    parser.add_argument("--alias-move-only", action="store_true")
    parser.add_argument("--moves", type=int, default=7)
    parser.add_argument("--poll-secs", type=float, default=0.5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aiaas-registry-bench-"))
    try:
        section = render_alias_move(
            alias_move_seconds(work / "alias-move", args.moves, args.poll_secs), args.poll_secs
        )
    finally:
        shutil.rmtree(work / "alias-move", ignore_errors=True)
    print(section)
    if args.alias_move_only:
        shutil.rmtree(work, ignore_errors=True)
        write_alias_section(section)
        return
    cluster = None
    try:
        files = make_files(work / "files", args.versions)
        rows = [("-", "baseline: hash + copy + fsync + rename one file", 0.0)]
        rows[0] = ("-", rows[0][1], baseline_artifact_write(files, work / "baseline"))
        rows += run_backend("SQLite", f"sqlite:///{work / 'registry.db'}", files, work)
        postgres_uri = args.postgres_uri
        if postgres_uri is None:
            cluster, postgres_uri = start_postgres(work)
        rows += run_backend("PostgreSQL", postgres_uri, files, work)
    finally:
        if cluster is not None:
            cluster.stop()  # type: ignore[attr-defined]
        shutil.rmtree(work, ignore_errors=True)
    table = render(rows, args.versions)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)
    write_alias_section(section)


if __name__ == "__main__":
    main()
