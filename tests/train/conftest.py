"""The session-wide training runs fixture; the helpers live in train_support.py."""

from __future__ import annotations

import pytest
from train_support import TrainRuns


@pytest.fixture(scope="session")
def train_runs(tmp_path_factory: pytest.TempPathFactory) -> TrainRuns:
    return TrainRuns(tmp_path_factory.mktemp("train"))
