"""The merge: every worker's file of the run, summed into one view at a scrape.

Counters and histograms add up the files of every worker, dead ones included (``max`` for
totals copied from elsewhere); gauges and up-down counters read only live workers, by their
:attr:`MetricSpec.multiprocess` rule. A dead worker's file is read once more, folded into
in-memory totals and closed: a scrape costs the same however many workers were replaced.
"""

from __future__ import annotations

import os
import threading

from ...catalog import LATEST, MAX, MIN, PER_WORKER, Kind
from ..instruments import Instruments
from .fileformat import EXEMPLAR_WIDTH, FileReader, exemplar_at


class RunMerge:
    """Reads every file in ``directory`` and merges them into the recorders' shapes."""

    def __init__(self, directory: str, instruments: Instruments):
        self.directory = directory
        self.specs = {recorder.spec.name: recorder for recorder in instruments}
        self.readers: dict[str, FileReader | None] = {}  # None: a dead worker's file, folded
        self.dead: dict[str, dict] = {}  # dead workers' counters and histograms, merged
        self.dead_exemplars: dict[str, dict] = {}
        self.lock = threading.Lock()

    def close(self) -> None:
        """Let go of every reader (a forked child starts its own merge)."""
        for reader in self.readers.values():
            if reader is not None:
                reader.close()
        self.readers = {}

    def live_readers(self) -> list[FileReader]:
        """Readers of the live workers' files. A file found dead is read one last time,
        folded into the dead workers' totals and closed: its values never change again,
        so a scrape costs the same however many workers have been replaced."""
        for name in os.listdir(self.directory):
            if name.endswith(".db") and name not in self.readers:
                try:
                    self.readers[name] = FileReader(os.path.join(self.directory, name))
                except OSError:
                    continue
        live = []
        for name, reader in self.readers.items():
            if reader is None:
                continue
            if reader.alive():
                reader.refresh()
                live.append(reader)
                continue
            reader.refresh()  # everything it wrote before it died
            self.merge_file(self.dead, self.dead_exemplars, reader, alive=False)
            reader.close()
            self.readers[name] = None  # folded: never opened again
        return live

    def merge_file(self, acc: dict, exemplars: dict, reader: FileReader, alive: bool) -> None:
        for metric, entries in reader.entries.items():
            recorder = self.specs.get(metric)
            if recorder is None:
                continue
            series = acc.setdefault(metric, {})
            kind = recorder.spec.kind
            if kind is Kind.HISTOGRAM:
                _merge_histograms(series, exemplars.setdefault(metric, {}), recorder.width,
                                  reader, entries)
            elif kind is Kind.COUNTER:
                _merge_counters(series, recorder.spec.multiprocess, reader.view, entries)
            elif alive:  # gauges and up-down counters: live workers only
                _merge_gauges(series, recorder.spec.multiprocess, reader, entries)

    def merged(self) -> dict[str, tuple[list, dict | None]]:
        """``{metric: (items, exemplars)}`` over every file, in the shapes the recorders give."""
        with self.lock:
            live = self.live_readers()
            acc = {metric: {key: value[:] if isinstance(value, list) else value
                            for key, value in series.items()}
                   for metric, series in self.dead.items()}
            exemplars = {metric: {key: kept[:] for key, kept in found.items()}
                         for metric, found in self.dead_exemplars.items()}
            for reader in live:
                self.merge_file(acc, exemplars, reader, alive=True)
        merged = {}
        for metric, series in acc.items():
            recorder = self.specs[metric]
            if recorder.spec.kind in (Kind.GAUGE, Kind.UPDOWN):
                items = [(key, value[0]) for key, value in series.items()]
            else:
                items = list(series.items())
            merged[metric] = (items, exemplars.get(metric))
        return merged



def _merge_histograms(series: dict, exemplars: dict, n: int, reader: FileReader, entries) -> None:
    view = reader.view
    for key, at, width in entries:
        values = view[at:at + n + 1].tolist()  # bucket counts, then the sum
        total = series.get(key)
        if total is None:
            series[key] = values
        else:
            for i in range(n + 1):
                total[i] += values[i]
        if width > n + 1:
            _merge_exemplars(exemplars, reader, key, at + n + 1, n)


def _merge_counters(series: dict, rule: str | None, view, entries) -> None:
    get = series.get
    if rule == MAX:  # totals copied from elsewhere: every worker saw the same counter
        for key, at, _ in entries:
            value = view[at]
            previous = get(key)
            series[key] = value if previous is None or value > previous else previous
    else:
        for key, at, _ in entries:
            series[key] = get(key, 0.0) + view[at]


def _merge_gauges(series: dict, rule: str | None, reader: FileReader, entries) -> None:
    """Values are ``(value, write time)`` until the end of the merge."""
    view = reader.view
    for key, at, _ in entries:
        value, when = view[at], view[at + 1]
        if rule == PER_WORKER:
            series[key + (reader.slot,)] = (value, when)
            continue
        previous = series.get(key)
        if previous is None:
            series[key] = (value, when)
        elif rule == MAX:
            series[key] = max(previous, (value, when))
        elif rule == MIN:
            series[key] = min(previous, (value, when))
        elif rule == LATEST:
            series[key] = previous if previous[1] >= when else (value, when)
        else:  # SUM (and a rule left unset)
            series[key] = (previous[0] + value, max(previous[1], when))


def _merge_exemplars(kept: dict, reader: FileReader, key: tuple, at: int, width: int) -> None:
    current = kept.get(key)
    for i in range(width):
        found = exemplar_at(reader, at + EXEMPLAR_WIDTH * i)
        if found is None:
            continue
        if current is None:
            current = kept[key] = [None] * width
        if current[i] is None or current[i][3] < found[3]:
            current[i] = found

