"""The soak's analysis: throughput, p50/p99 and failures per interval, the verdict on
its targets (no failed request, RSS flat after warm-up, p99 stable), the markdown report
and the plot. Functions of a Soak record: nothing here starts a server or sends a request.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.soak_records import Record, Soak

KINDS = ("rest", "grpc", "llm")
P99_TOLERANCE = 1.5
RSS_TOLERANCE_PCT = 5.0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def window(soak: Soak, kinds: tuple[str, ...], lo: float, hi: float) -> list[Record]:
    """Records of `kinds` that ended between lo and hi seconds into the soak."""
    return [r for k in kinds for r in soak.records.get(k, [])
            if lo <= r.end - soak.start < hi]  # fmt: skip


def intervals(soak: Soak) -> list[dict[str, Any]]:
    """One row per interval: (requests/s, p50, p99, failed) per kind, and the server sample
    nearest its end. Records are bucketed in one pass: a full run holds millions."""
    step = soak.options.interval_secs
    count = max(1, math.ceil((soak.end - soak.start) / step - 1e-6))
    buckets: dict[str, list[list[Record]]] = {k: [[] for _ in range(count)] for k in KINDS}
    for kind in KINDS:
        for record in soak.records.get(kind, []):
            index = int((record.end - soak.start) // step)
            if 0 <= index < count:
                buckets[kind][index].append(record)
    rows = []
    for index in range(count):
        at = (index + 1) * step
        row: dict[str, Any] = {"t": at}
        for kind in KINDS:
            records = buckets[kind][index]
            latencies = [r.latency_ms for r in records if r.ok]
            row[kind] = (len(records) / step, percentile(latencies, 50),
                         percentile(latencies, 99), sum(not r.ok for r in records))  # fmt: skip
        row["sample"] = min(soak.samples, key=lambda s: abs(s.at - soak.start - at))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Verdict:
    warmup_s: float
    span_s: float
    rss_warm: float
    rss_end: float
    #: Per window of `span_s` after warm-up: the median of its intervals' p99s (MLP).
    p99_windows: list[float]

    @property
    def rss_growth_pct(self) -> float:
        return (self.rss_end - self.rss_warm) / self.rss_warm * 100

    @property
    def p99_ratio(self) -> float:
        """The worst later window against the first: growth is what instability looks like."""
        first, later = self.p99_windows[0], self.p99_windows[1:] or self.p99_windows
        return max(later) / first


def verdict(soak: Soak) -> Verdict:
    """Warm-up is `warmup_secs` (2 min), or a quarter of a shorter run; p99 is judged on
    windows of 5 minutes after it (halves of what is left, if that is shorter), each by the
    median of its intervals' p99s, so a one-minute bump reads as one, not as the window."""
    length = soak.end - soak.start
    warmup = min(soak.options.warmup_secs, length / 4)
    span = min(300.0, (length - warmup) / 2)
    warm = min(soak.samples, key=lambda s: abs(s.at - soak.start - warmup))
    starts = list(np.arange(warmup, length - span + 1e-6, span))
    if starts[-1] + span < length - 1e-6:  # the last window always ends with the run
        starts.append(length - span)
    windows = [_window_p99(soak, lo, lo + span) for lo in starts]
    return Verdict(warmup, span, warm.rss_mib, soak.samples[-1].rss_mib, windows)


def _window_p99(soak: Soak, lo: float, hi: float) -> float:
    step = soak.options.interval_secs
    p99s = []
    for start in np.arange(lo, hi - step + 1e-6, step):
        latencies = [r.latency_ms for r in window(soak, ("rest", "grpc"), start, start + step)
                     if r.ok]  # fmt: skip
        if latencies:
            p99s.append(percentile(latencies, 99))
    return float(np.median(p99s)) if p99s else float("nan")


def targets(soak: Soak, v: Verdict) -> list[tuple[str, bool, str]]:
    failures = soak.failures()
    medians = ", ".join(f"{m:.0f}" for m in v.p99_windows)
    return [
        ("zero failed requests", failures == 0, f"{failures} of {soak.total()}"),
        (f"RSS growth after warm-up < {RSS_TOLERANCE_PCT:g}%", v.rss_growth_pct < RSS_TOLERANCE_PCT,
         f"{v.rss_warm:.1f} -> {v.rss_end:.1f} MiB ({v.rss_growth_pct:+.1f}%)"),
        (f"p99 stable (no later window above {P99_TOLERANCE}x the first)",
         v.p99_ratio <= P99_TOLERANCE,
         f"median 10-s p99 per window: {medians} ms (worst later {v.p99_ratio:.2f}x)"),
    ]  # fmt: skip


def report(soak: Soak) -> str:
    o, v = soak.options, verdict(soak)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores: {o.minutes:g} min"
        f" at {o.fraction:.0%} of capacity, an MLP version swap every {o.swap_secs:g} s"
        f" ({len(soak.swaps)} swaps, versions answered: {len(soak.versions_seen())}).",
        f"Capacity (closed loop, c={o.concurrency} each, {o.capacity_secs:g} s, with"
        f" {o.streams} language-model streams running): "
        + ", ".join(f"{k} {soak.capacity[k]:.1f} req/s" for k in soak.capacity)
        + "; soak rates: " + ", ".join(f"{k} {soak.rates[k]:.1f} req/s" for k in soak.rates)
        + f"; plus {o.streams} closed-loop `/v1/completions` streams of {o.max_tokens} tokens"
        " (tiny random Llama).",
        "",
        "| target | met | figures |",
        "|---|---|---|",
        *(f"| {name} | {'yes' if ok else 'MISSED'} | {figures} |"
          for name, ok, figures in targets(soak, v)),
        "",
        f"Total requests {soak.total()}, failed {soak.failures()}. Warm-up {v.warmup_s:.0f} s;"
        f" p99 windows {v.span_s:.0f} s, each the median of its {o.interval_secs:g}-s p99s"
        " (MLP, REST and gRPC together).",
        "",
        "| t s | REST req/s | REST p50/p99 ms | gRPC req/s | gRPC p50/p99 ms | LLM streams/s"
        " | LLM p99 ms | failed | RSS MiB | threads | fds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in intervals(soak):
        (rr, r50, r99, rf), (gr, g50, g99, gf), (lr, _, l99, lf) = (row[k] for k in KINDS)
        s = row["sample"]
        lines.append(f"| {row['t']:.0f} | {rr:.1f} | {r50:.1f}/{r99:.1f} | {gr:.1f} |"
                     f" {g50:.1f}/{g99:.1f} | {lr:.2f} | {l99:.0f} | {rf + gf + lf} |"
                     f" {s.rss_mib:.1f} | {s.threads} | {s.fds} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(soak: Soak, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = intervals(soak)
    minutes = [row["t"] / 60 for row in rows]
    figure, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    for kind, label in (("rest", "MLP REST"), ("grpc", "MLP gRPC"), ("llm", "LLM streams")):
        top.plot(minutes, [row[kind][0] for row in rows], label=label)
        middle.plot(minutes, [row[kind][2] for row in rows], label=label)
    top.set_ylabel("requests/s")
    middle.set_ylabel("p99 ms")
    middle.set_yscale("log")
    bottom.plot([(s.at - soak.start) / 60 for s in soak.samples],
                [s.rss_mib for s in soak.samples], color="black")  # fmt: skip
    bottom.set_ylabel("server RSS MiB")
    bottom.set_xlabel("minutes")
    for swap in soak.swaps:
        for axis in (top, middle, bottom):
            axis.axvline((swap - soak.start) / 60, color="grey", alpha=0.2, linewidth=0.8)
    top.legend(loc="lower right")
    top.set_title("aiaas soak: throughput, p99 and RSS (grey lines: MLP version swaps)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_results(soak: Soak) -> None:
    """soak.md and soak.png into the run's results folder; the report and verdict printed."""
    results = soak.options.results
    results.mkdir(parents=True, exist_ok=True)
    text = report(soak)
    (results / "soak.md").write_text(text)
    plot(soak, results / "soak.png")
    print("\n" + text)
    for name, ok, figures in targets(soak, verdict(soak)):
        print(f"{'met   ' if ok else 'MISSED'} {name}: {figures}")
