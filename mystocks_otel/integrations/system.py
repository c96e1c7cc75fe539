"""Process and host gauges through psutil."""

from __future__ import annotations

import time

from ..instruments import gauge

DISK_PATH = "/"


class SystemSampler:
    def __init__(self, disk_path: str = DISK_PATH):
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self.disk_path = disk_path
        # psutil's first cpu_percent() call returns 0.0: prime both now.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def sample(self) -> dict[str, float]:
        psutil, process, now = self._psutil, self._process, time.time()
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
        for scope in ("process", "system"):
            gauge("mystocks.system.cpu_utilization").set(v[f"cpu_{scope}"], scope)
            gauge("mystocks.system.memory_usage").set(v[f"memory_{scope}"], scope)
            gauge("mystocks.system.memory_utilization").set(v[f"memory_{scope}_percent"], scope)
            gauge("mystocks.system.uptime").set(v[f"uptime_{scope}"], scope)
        gauge("mystocks.system.disk_utilization").set(v["disk_percent"], self.disk_path)
        gauge("mystocks.system.disk_free").set(v["disk_free"], self.disk_path)
        gauge("mystocks.system.threads").set(v["threads"])
