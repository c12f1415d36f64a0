"""What a soak run was asked for (Options) and what it measured (Soak): the records the
running part (bench/soak_bench.py) fills in and the analysis (bench/soak_report.py) reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "soak"
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Options:
    minutes: float = 30.0
    fraction: float = 0.8
    swap_secs: float = 60.0
    capacity_secs: float = 20.0
    concurrency: int = 8
    streams: int = 2
    max_tokens: int = 16
    interval_secs: float = 10.0
    warmup_secs: float = 120.0
    poll_secs: float = 1.0
    results: Path = RESULTS
    #: Scratch: the model repository, the server's log, each generator's records and log.
    work: Path = WORK


@dataclass(frozen=True, slots=True)
class Record:
    end: float
    latency_ms: float
    ok: bool
    version: str


@dataclass
class Sample:
    at: float
    rss_mib: float
    threads: int
    fds: int


@dataclass
class Soak:
    """What one run measured: a run that breaks raises instead of returning one."""

    options: Options
    capacity: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    start: float = 0.0
    end: float = 0.0
    records: dict[str, list[Record]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    swaps: list[float] = field(default_factory=list)

    def failures(self) -> int:
        return sum(not r.ok for rs in self.records.values() for r in rs)

    def total(self) -> int:
        return sum(len(rs) for rs in self.records.values())

    def versions_seen(self) -> set[str]:
        return {r.version for k in ("rest", "grpc") for r in self.records.get(k, []) if r.ok}


def read_records(path: Path) -> list[Record]:
    """One load generator's `--out` file (bench/soak_load.py writes its lines)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:  # a line cut short by a killed generator is left out
            records.append(Record(float(parts[0]), float(parts[1]), parts[2] == "1", parts[3]))
    return records
