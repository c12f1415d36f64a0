"""Registry throughput: registering and resolving versions on SQLite and PostgreSQL,
with baselines measured in the same run (the artifact write alone; one raw-driver
SELECT of a version row), so the registry's own overhead is visible.

Usage: .venv/bin/python bench/registry_bench.py [--versions 1000] [--postgres-uri URI]
Without --postgres-uri a throwaway PostgreSQL cluster is started (initdb/pg_ctl,
durable settings: fsync on), and stopped afterwards. Prints the table and writes it
to bench/results/registry.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "registry")]

import models  # noqa: E402  (tests/models.py: small ONNX graphs built in code)
import onnx  # noqa: E402

from aiaas.registry import Registry  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "registry.md"
NOTES = [
    "- register = read the ONNX signature, write + fsync + read back + rename each blob, then one",
    "  transaction (SQLite: BEGIN IMMEDIATE, WAL, synchronous=NORMAL; PostgreSQL: model row",
    "  locked FOR UPDATE, fsync and synchronous_commit on).",
    "- resolve = one read transaction returning the full version record (files, tags, metrics,",
    "  parents, aliases): six SELECTs through the ORM session, against one raw SELECT in the",
    "  baseline row; that difference is the registry's own overhead.",
    "- The time from an alias move to the first request served by the new version is measured",
    "  with the server (bench/RESULTS.md).",
]
MODEL = "bench-mlp"


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
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aiaas-registry-bench-"))
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


if __name__ == "__main__":
    main()
