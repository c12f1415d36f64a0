"""What a compressed (or otherwise derived) version gained and lost against its parent:
size, latency where known, and every metric both have. Pure functions over records."""

from __future__ import annotations

from dataclasses import dataclass

from aiaas.ui.catalogue import VersionInfo, lower_is_better
from aiaas.ui.live import LiveState


@dataclass(frozen=True, slots=True)
class Change:
    what: str
    parent: float | None
    this: float | None
    unit: str = ""
    #: True when this version is better, False when worse, None when equal or unknown.
    better: bool | None = None

    @property
    def delta(self) -> float | None:
        if self.parent is None or self.this is None:
            return None
        return self.this - self.parent

    @property
    def ratio(self) -> float | None:
        if self.parent is None or self.this is None or self.parent == 0:
            return None
        return self.this / self.parent


@dataclass(frozen=True)
class Tradeoff:
    parent: VersionInfo
    changes: tuple[Change, ...]


def _change(what: str, parent: float | None, this: float | None, unit: str = "") -> Change:
    better = None
    if parent is not None and this is not None and parent != this:
        better = (this < parent) if lower_is_better(what) else (this > parent)
    return Change(what, parent, this, unit, better)


def tradeoff(
    version: VersionInfo,
    parent: VersionInfo,
    live: LiveState | None = None,
    parent_live: LiveState | None = None,
) -> Tradeoff:
    """Size first, then the p50 latency measured on this server when both are served
    here, then the metrics both versions recorded (latency metrics among them)."""
    changes = [_change("size", parent.size_bytes, version.size_bytes, "bytes")]
    if live and parent_live and live.p50_ms is not None and parent_live.p50_ms is not None:
        changes.append(_change("p50 latency here", parent_live.p50_ms, live.p50_ms, "ms"))
    for key in sorted(set(version.metrics) & set(parent.metrics)):
        changes.append(_change(key, parent.metrics[key], version.metrics[key]))
    return Tradeoff(parent, tuple(changes))
