"""Process and host gauges through psutil: the one system sampler of the process.

The runtime's poller and ``update_system_metrics`` both call :meth:`SystemSampler.sample`
on the same instance (``state.SYSTEM``). psutil is imported at the first sample, and
the process handle is made again when the process id changes (a pre-fork server's worker
must report itself, not its parent).
"""

from __future__ import annotations

import os
import threading
import time

from .instruments import Instruments

DISK_PATH = "/"


class SystemSampler:
    def __init__(self, instruments: Instruments, disk_path: str = DISK_PATH):
        self.instruments = instruments
        self.disk_path = disk_path
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process the psutil handle belongs to
        self._psutil = None
        self._process = None

    def _handle(self):
        pid = os.getpid()
        if self._pid != pid:
            import psutil

            self._psutil, self._process = psutil, psutil.Process(pid)
            # psutil's first cpu_percent() call returns 0.0: prime both now.
            self._process.cpu_percent(None)
            psutil.cpu_percent(None)
            self._pid = pid
        return self._psutil, self._process

    def sample(self) -> dict[str, float]:
        """Read CPU, memory, disk, uptime and threads, publish them as gauges, return them."""
        with self._lock:  # the poller thread and the app may sample at once
            psutil, process = self._handle()
            now = time.time()
            host_memory = psutil.virtual_memory()
            disk = psutil.disk_usage(self.disk_path)
            with process.oneshot():
                values = {
                    "cpu_process": process.cpu_percent(None) / (psutil.cpu_count() or 1),
                    "memory_process": float(process.memory_info().rss),
                    "memory_process_percent": process.memory_percent(),
                    "uptime_process": now - process.create_time(),
                    "threads": float(process.num_threads()),
                }
            values.update({
                "cpu_system": psutil.cpu_percent(None),
                "memory_system": float(host_memory.used),
                "memory_system_percent": host_memory.percent,
                "disk_percent": disk.percent,
                "disk_free": float(disk.free),
                "uptime_system": now - psutil.boot_time(),
            })
        self._publish(values)
        return values

    def _publish(self, v: dict[str, float]) -> None:
        gauge = self.instruments.gauge
        for scope in ("process", "system"):
            gauge("mystocks.system.cpu_utilization").set(v[f"cpu_{scope}"], scope)
            gauge("mystocks.system.memory_usage").set(v[f"memory_{scope}"], scope)
            gauge("mystocks.system.memory_utilization").set(v[f"memory_{scope}_percent"], scope)
            gauge("mystocks.system.uptime").set(v[f"uptime_{scope}"], scope)
        gauge("mystocks.system.disk_utilization").set(v["disk_percent"], self.disk_path)
        gauge("mystocks.system.disk_free").set(v["disk_free"], self.disk_path)
        gauge("mystocks.system.threads").set(v["threads"])
