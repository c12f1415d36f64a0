"""Version swaps under load lose nothing: a short soak (bench/soak_bench.py) against a real
`aiaas serve` in poll mode, MLP over REST and gRPC plus language-model streams, with the
MLP's version folder replaced every few seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak_bench import run_soak
from bench.soak_records import Options
from bench.soak_report import report


@pytest.mark.slow
def test_swaps_under_load_fail_no_request(tmp_path: Path) -> None:
    options = Options(
        minutes=20 / 60,
        fraction=0.5,
        swap_secs=5,
        capacity_secs=4,
        concurrency=4,
        interval_secs=5,
        poll_secs=0.5,
        work=tmp_path / "soak",
    )
    soak = run_soak(options)
    assert soak.swaps, "the swapper never replaced the MLP version"
    assert all(soak.records[kind] for kind in ("rest", "grpc", "llm"))
    failed = {kind: sum(not r.ok for r in rs) for kind, rs in soak.records.items()}
    assert failed == {"rest": 0, "grpc": 0, "llm": 0}
    # more than one version answered: the server really swapped while the load ran
    assert len(soak.versions_seen()) >= 2, soak.versions_seen()
    assert "| zero failed requests | yes |" in report(soak)
