"""The hosts: CPU, memory and disk per instance, and crash loops."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, metric, num
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

_CPU_CHECKS = (
    "`top`/`py-spy top` on the instance: the API process, or something else on the host?",
    "Request rate and WebSocket connections: a traffic rise needs more replicas.",
    "A hot loop after a deploy (CPU rising at constant traffic): roll back.",
)
_MEM_CHECKS = (
    "Process memory (`mystocks_system_memory_usage_bytes{scope=\"process\"}`): a leak grows steadily.",
    "The in-process cache's size (`mystocks_cache_memory_usage_bytes{cache=\"memory\"}`).",
    "Other processes on the host (`ps aux --sort=-rss | head`).",
)
_DISK_CHECKS = (
    "`du -xh --max-depth=2 <mountpoint> | sort -h | tail`: logs, WAL, dumps?",
    "Log rotation and PostgreSQL WAL archiving (a failing archive_command keeps WAL forever).",
    "Extend the volume or delete old exports; PostgreSQL stops writing on a full disk.",
)


def _resource(name, expr, limit, for_, sev, prio, what, why, checks, unit="%"):
    return Alert(name=name, expr=f"{expr} > {num(limit)}", for_=for_, severity=sev, category="system",
                 priority=prio, team="performance",
                 summary=f"{what} on {{{{ $labels.instance }}}} is above {num(limit)}{unit}.",
                 description=f"{what} on {{{{ $labels.instance }}}}"
                 + (" ({{ $labels.mountpoint }})" if "Disk" in what else "")
                 + f" is {{{{ $value | humanize }}}}% (threshold {num(limit)}%).",
                 threshold=f"> {num(limit)}% for {for_}", why=why.replace("{limit}", f"{num(limit)}%"),
                 checks=checks)


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    return Group("mystocks-system.rules", (
        Record(record="job_instance:mystocks_system_cpu_utilization_percent:host",
               expr=q.agg("max", "job, instance", "mystocks_system_cpu_utilization_percent", 'scope="system"'),
               why="Host CPU per instance: what the CPU alerts and the year-long capacity trend use."),
        Record(record="job_instance:mystocks_system_memory_utilization_percent:host",
               expr=q.agg("max", "job, instance", "mystocks_system_memory_utilization_percent", 'scope="system"'),
               why="Host memory use per instance."),
        Record(record="job_instance_mountpoint:mystocks_system_disk_utilization_percent:max",
               expr=q.agg("max", "job, instance, mountpoint", "mystocks_system_disk_utilization_percent"),
               why="Disk use per data disk."),
        Record(record="severity:alerts_firing:count",
               expr='count by (severity) (ALERTS{alertstate="firing"})',
               why="Firing alerts by severity (panel Active Alerts)."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    _CPU, _MEM = (q.sel(f"job_instance:mystocks_system_{m}_utilization_percent:host") for m in ("cpu", "memory"))
    _DISK = q.sel("job_instance_mountpoint:mystocks_system_disk_utilization_percent:max")
    #: Cumulative counters every run keeps growing: requests, and the health probes that run
    #: every probe interval whatever the traffic.
    _TOTALS = q.any_of(metric("http.server.request.duration", "_count"),
                       metric("mystocks.health.check_duration", "_count"))
    _RESTARTS = f"max by (job, instance) (resets({_TOTALS}[30m]))"
    #: Workers killed under a living server (OOM, SIGKILL): the library counts each worker that
    #: died without marking its shutdown (0 in single-process mode); a target without the series
    #: (an older release, an OTLP-only one) counts server restarts alone.
    _CRASHES = f'sum by (job, instance) (increase({q.sel(metric("mystocks.system.worker_crashes"))}[30m]))'
    return (
        _resource("HighCpuUsage", _CPU, t.cpu_percent_warning, "10m", "warning", "P2", "Host CPU use",
                  "At {limit} a 2-core host has no headroom for the bursts at the market open and latency "
                  "starts to climb. 10 minutes ignores start-up and batch jobs.", _CPU_CHECKS),
        _resource("CriticalCpuUsage", _CPU, t.cpu_percent_critical, "5m", "critical", "P1", "Host CPU use",
                  "At {limit} requests queue behind each other: latency is about to break its SLO.",
                  _CPU_CHECKS),
        _resource("HighMemoryUsage", _MEM, t.memory_percent_warning, "10m", "warning", "P2", "Host memory use",
                  "{limit} leaves the page cache too little room (PostgreSQL and Redis read from it) and "
                  "is the first sign of a leak. 10 minutes ignores a large report.", _MEM_CHECKS),
        _resource("CriticalMemoryUsage", _MEM, t.memory_percent_critical, "5m", "critical", "P1",
                  "Host memory use",
                  "At {limit} the kernel's OOM killer is near and it picks the largest process: the API or "
                  "PostgreSQL.", _MEM_CHECKS),
        _resource("LowDiskSpace", _DISK, t.disk_percent_warning, "15m", "warning", "P2", "Disk use",
                  "{limit} used leaves days, not hours, to clean up at normal growth (logs, WAL, market "
                  "data history). 15 minutes ignores temporary files.", _DISK_CHECKS),
        _resource("CriticalDiskSpace", _DISK, t.disk_percent_critical, "5m", "critical", "P1", "Disk use",
                  "At {limit} a burst of WAL or logs fills the disk within the hour, and PostgreSQL stops "
                  "accepting writes on a full disk.", _DISK_CHECKS),
        Alert(
            name="ApiFrequentRestarts",
            expr=f"({_RESTARTS} + on (job, instance) ({_CRASHES} or on (job, instance) 0 * {_RESTARTS}))"
                 f" >= {t.restarts_in_30m}",
            for_="1m", severity="warning", category="system", priority="P2", team="platform",
            summary="The API on {{ $labels.instance }} keeps restarting.",
            description="The API on {{ $labels.instance }} restarted {{ $value | humanize }} times in 30 "
            f"minutes, the server or its workers (threshold {t.restarts_in_30m}).",
            threshold=f"≥ {t.restarts_in_30m} restarts in 30m",
            why=f"One restart is a deploy; {t.restarts_in_30m} in half an hour is a crash loop (OOM kill, failing start-up "
            "check) that target-down alerts miss because each restart is quick. A restart is counted "
            "where the server's cumulative totals start again from zero: within one run the "
            "library adds every worker's counts up, dead workers' included, so the totals never go "
            "back when gunicorn recycles a worker (`--max-requests`) or replaces a dead one; only a "
            "new server (master) starts them at zero. The process uptime cannot tell: /metrics "
            "merges it as the youngest live worker's, so each recycled worker looked like a "
            "restart. The counters are the request count and the health probes' count (which grows "
            "every probe interval without traffic); the max over their series counts each restart "
            "once. A worker killed again and again under a living server (OOM kills one worker at a "
            "time) resets nothing: the library counts it in mystocks_system_worker_crashes_total "
            "(a worker that never marked its shutdown; recycled and stopped workers do), added here. "
            "A loop too fast to count anything shows as failed scrapes: ApiTargetFlapping "
            "and ApiTargetDown.",
            checks=("The process logs just before each restart (`journalctl`/container logs): traceback or OOM kill?",
             "`dmesg | grep -i oom` and CriticalMemoryUsage.",
             "Start-up dependencies: PostgreSQL and Redis reachable, configuration valid."),
        ),
    )
