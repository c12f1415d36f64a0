"""Every input kept in fuzz/corpus/ (seeds, and each input that once found a bug)
replayed through its parser: only our clean errors may come out. Plus a short
hypothesis run of random bytes per parser, for the inputs nobody kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
CASES = [
    pytest.param(target, path, id=f"{target}/{path.name}")
    for target in sorted(TARGETS)
    for path in sorted((CORPUS / target).iterdir())
]


def test_every_target_has_a_corpus():
    assert {path.name for path in CORPUS.iterdir()} == set(TARGETS)
    for target in TARGETS:
        assert any((CORPUS / target).iterdir()), target


@pytest.mark.parametrize(("target", "path"), CASES)
def test_a_kept_input_meets_only_clean_errors(target, path):
    TARGETS[target](path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_random_bytes_meet_only_clean_errors(target):
    run = TARGETS[target]

    @given(st.binary(max_size=512))
    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(data):
        run(data)

    fuzz()
