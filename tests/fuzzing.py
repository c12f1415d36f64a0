"""How much the fuzz tests against a live server run: `make test` a few examples from a
fixed seed, `make fuzz` many (AIAAS_FUZZ_EXAMPLES) from a random one (AIAAS_FUZZ_SEED=random)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

DERANDOMIZE = os.environ.get("AIAAS_FUZZ_SEED", "fixed") == "fixed"


def fuzz_examples(default: int) -> int:
    """AIAAS_FUZZ_EXAMPLES, else the test module's own default."""
    return int(os.environ.get("AIAAS_FUZZ_EXAMPLES", str(default)))


def fuzz_settings(examples: int, **extra: Any) -> settings:
    """No deadline (a round trip's time is the server's), no example database, and no
    health checks: the strategies are large and slow on purpose."""
    return settings(
        max_examples=examples,
        derandomize=DERANDOMIZE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        **extra,
    )
