"""The table: one row per comparison, each with its median, spread, target and verdict.

Every figure is ``median [min, max]``; the last column says over what the spread was taken
(benchmark processes, alternating server rounds, or scrapes). Ratios are taken pair by pair
(same process or same round) and only then summarised.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from .apps import LABELS
from .stats import Summary, paired_ratios


@dataclass(frozen=True)
class Row:
    key: str  # stable id (the smoke test reads it)
    what: str
    ours: str
    against: str
    ratio: Summary
    target: str
    met: bool | None  # None: shown for comparison, no target
    over: str


def size_label(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def _verdict(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


HEADER = ("| id | what | ours | against | ratio | target | met | spread over |\n"
          "|---|---|---|---|---|---|---|---|")


def table(rows: list[Row]) -> str:
    lines = [HEADER]
    for row in rows:
        lines.append(f"| {row.key} | {row.what} | {row.ours} | {row.against} | "
                     f"{row.ratio.text(2, 'x')} | {row.target} | {_verdict(row.met)} | {row.over} |")
    return "\n".join(lines)


# -- the rows, from the raw numbers -------------------------------------------------------------------

def _per_process(processes: list[dict], pick: Callable[[dict], list[float]]) -> list[float]:
    """The median over rounds inside each process, one value per process."""
    return [statistics.median(pick(p)) for p in processes]


def _asgi_rows(processes: list[dict]) -> list[Row]:
    def overhead(variant):
        def pick(p):
            rounds = p["asgi_us"]
            return [v - b for v, b in zip(rounds[variant], rounds["bare"])]
        return _per_process(processes, pick)

    ours = overhead("ours")
    bare = Summary.of(_per_process(processes, lambda p: p["asgi_us"]["bare"]))
    rows = []
    for variant, target in (("instrumentator", 0.25), ("starlette_exporter", None),
                            ("upstream", None)):
        theirs = overhead(variant)
        ratio = Summary.of(paired_ratios(ours, theirs))
        rows.append(Row(
            f"asgi.{variant}",
            f"added per request, GET /ping, direct ASGI (bare {bare.median:.1f} us)",
            Summary.of(ours).text(1, " us"),
            f"{LABELS[variant]} {Summary.of(theirs).text(1, ' us')}",
            ratio,
            f"<= {target}x" if target else "(shown)",
            ratio.median <= target if target else None,
            f"{len(processes)} processes",
        ))
    # MYSTOCKS_OTEL_HTTP_BODY_SIZE=true against off: what the two histograms cost a request
    body = overhead("ours_body_size")
    rows.append(Row(
        "asgi.body_size",
        f"added per request, GET /ping, direct ASGI (bare {bare.median:.1f} us): body sizes on",
        Summary.of(body).text(1, " us"), f"{LABELS['ours']}, body sizes off {Summary.of(ours).text(1, ' us')}",
        Summary.of(paired_ratios(body, ours)), "(shown)", None, f"{len(processes)} processes"))
    return rows


def _record_rows(processes: list[dict]) -> list[Row]:
    def per_call(name):
        return _per_process(processes, lambda p: p["record_us"][name])

    ours = per_call("ours_histogram")
    prom = per_call("prom_histogram")
    sdk = per_call("sdk_histogram")
    ours_s, ratio = Summary.of(ours), Summary.of(paired_ratios(ours, prom))
    over = f"{len(processes)} processes"
    ours_counter, prom_counter = per_call("ours_counter"), per_call("prom_counter")
    return [
        Row("record.histogram", "histogram record, one call", ours_s.text(3, " us"),
            f"prometheus_client labels().observe() {Summary.of(prom).text(3, ' us')}", ratio,
            "<= 1.0 us and <= 0.7x", ours_s.median <= 1.0 and ratio.median <= 0.7, over),
        Row("record.histogram_sdk", "histogram record, one call", ours_s.text(3, " us"),
            f"OTel SDK Histogram.record {Summary.of(sdk).text(3, ' us')}",
            Summary.of(paired_ratios(ours, sdk)), "(shown)", None, over),
        Row("record.counter", "counter add, one call", Summary.of(ours_counter).text(3, " us"),
            f"prometheus_client labels().inc() {Summary.of(prom_counter).text(3, ' us')}",
            Summary.of(paired_ratios(ours_counter, prom_counter)), "(shown)", None, over),
    ]


def _render_rows(processes: list[dict]) -> list[Row]:
    rows = []
    for size in sorted(processes[0]["render"], key=int):
        def ms(name, size=size):
            return _per_process(processes, lambda p: p["render"][size]["ms"][name])

        ours = ms("ours")
        first = Summary.of([p["render"][size]["first_ms"]["ours"] for p in processes])
        for against, label, target in (
                ("prometheus_client", "prometheus_client, _created off", 1.0),
                ("otel_stock", "stock OTel PrometheusMetricReader", None)):
            theirs = ms(against)
            ratio = Summary.of(paired_ratios(ours, theirs))
            rows.append(Row(
                f"render.{size_label(int(size))}.{against}",
                f"/metrics render, {int(size):,} series (our first: {first.median:.1f} ms)",
                Summary.of(ours).text(1, " ms"), f"{label} {Summary.of(theirs).text(1, ' ms')}",
                ratio, f"<= {target}x" if target else "(shown)",
                ratio.median <= target if target else None, f"{len(processes)} processes"))
    return rows


def _memory_rows(memory: dict) -> list[Row]:
    ours = memory["ours"]
    size = memory["series"]
    rows = []
    for against, label, target in (("prometheus_client", "prometheus_client", 1.0),
                                   ("otel_stock", "OTel SDK counters + stock reader", None)):
        theirs = memory[against]
        ratio = Summary.of(paired_ratios(ours, theirs))
        rows.append(Row(
            f"memory.{against}", f"memory per series ({size:,} series, tracemalloc)",
            Summary.of(ours).text(0, " B"), f"{label} {Summary.of(theirs).text(0, ' B')}", ratio,
            f"<= {target}x" if target else "(shown)", ratio.median <= target if target else None,
            f"{len(ours)} alternating processes each"))
    return rows


def _uvicorn_rows(uvicorn: dict) -> list[Row]:
    rows = []
    for workers, runs in sorted(uvicorn.items(), key=lambda item: int(item[0])):
        bare, ours = runs["bare"], runs["ours"]
        over = f"{len(ours)} alternating rounds"
        for metric, label, unit, digits, target, cmp in (
                ("p99_ms", "p99 latency", " ms", 2, "<= 1.10x", lambda r: r <= 1.10),
                ("rps", "throughput", " req/s", 0, ">= 0.90x", lambda r: r >= 0.90)):
            ours_v = [r[metric] for r in ours]
            bare_v = [r[metric] for r in bare]
            ratio = Summary.of(paired_ratios(ours_v, bare_v))
            rows.append(Row(
                f"uvicorn.{workers}w.{metric.split('_')[0]}",
                f"uvicorn --workers {workers}, GET /ping, {runs['connections']} connections "
                f"({runs['generator']}): {label}",
                Summary.of(ours_v).text(digits, unit), f"bare {Summary.of(bare_v).text(digits, unit)}",
                ratio, target, cmp(ratio.median), over))
    return rows


def _scrape_rows(scrape: dict) -> list[Row]:
    """Stalls against the render's own time (server side) when known, else the whole scrape."""
    scrape_ms = Summary.of(scrape["alone"]["scrape_ms"])
    render_ms = scrape["alone"]["render_ms"]
    if render_ms:
        alone = Summary.of(render_ms)
        against = f"the render alone {alone.text(1, ' ms')} (whole scrape {scrape_ms.text(1, ' ms')})"
    else:
        alone = scrape_ms
        against = f"the scrape alone {alone.text(1, ' ms')}"
    stalls = scrape["stall_ms"]
    ratio = Summary.of(stall / alone.median for stall in stalls)
    return [Row(
        f"scrape.{size_label(scrape['series'])}", f"stall: slowest request during a "
        f"{scrape['series']:,}-series scrape ({scrape['bytes']:,} B) minus the quiet median "
        f"({scrape['quiet_p50_ms']:.2f} ms), paced load",
        Summary.of(stalls).text(1, " ms"), against, ratio, "<= 1.0x", ratio.median <= 1.0,
        f"{len(stalls)} scrapes")]


def rows(data: dict) -> list[Row]:
    """The rows of the phases in ``data`` (all of them unless ``--only`` chose some)."""
    found = []
    if "inprocess" in data:
        found += _asgi_rows(data["inprocess"]) + _record_rows(data["inprocess"])
    if "uvicorn" in data:
        found += _uvicorn_rows(data["uvicorn"])
    if "inprocess" in data:
        found += _render_rows(data["inprocess"])
    if "memory" in data:
        found += _memory_rows(data["memory"])
    if "scrape" in data:
        found += _scrape_rows(data["scrape"])
    return found
