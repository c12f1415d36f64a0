"""Removing blobs no version refers to, and leftovers of interrupted writes.

Only things older than a grace period go: `register` writes (or re-touches) its
blobs before it commits the row that refers to them, and a blob younger than the
grace period may belong to a `register` still on its way to that commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiaas.registry.artifacts import ArtifactStore
from aiaas.registry.store import AbstractStore

DEFAULT_GRACE_S = 3600.0


@dataclass(frozen=True)
class GcReport:
    removed_blobs: int
    removed_bytes: int
    removed_temporaries: int
    kept_recent: int
    dry_run: bool

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "removed_blobs": self.removed_blobs,
            "removed_bytes": self.removed_bytes,
            "removed_temporaries": self.removed_temporaries,
            "kept_recent": self.kept_recent,
            "dry_run": self.dry_run,
        }


def collect_garbage(
    store: AbstractStore, artifacts: ArtifactStore, *, grace_s: float, dry_run: bool = False
) -> GcReport:
    # Blobs are listed before the references are read: a blob stored after the listing is
    # not considered at all, and one listed but referenced by then is kept.
    blobs = artifacts.blobs()
    temporaries = artifacts.temporaries()
    referenced = store.referenced_blobs()
    removed = removed_bytes = kept = 0
    for blob in blobs:
        if blob.sha256 in referenced:
            continue
        if blob.age_s < grace_s:
            kept += 1
            continue
        if not dry_run:
            artifacts.remove(artifacts.blob_path(blob.sha256))
        removed += 1
        removed_bytes += blob.size_bytes
    stale = [path for path, age_s in temporaries if age_s >= grace_s]
    if not dry_run:
        for path in stale:
            artifacts.remove(path)
    return GcReport(removed, removed_bytes, len(stale), kept, dry_run)
