"""WebSocket: connections per process against capacity, and connection errors."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, metric, num, pct, ratio
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

_WS_CHECKS = (
    "Per-namespace counts (panel WebSocket Connections): one client reconnecting in a loop?",
    "Connections opened vs. closed: `rate(mystocks_websocket_connections_opened_total[5m])`.",
    "Add API replicas behind the load balancer before the per-process limit is reached.",
)


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    return Group("mystocks-websocket.rules", (
        Record(record="job_instance:mystocks_websocket_active_connections:sum",
               expr=q.agg("sum", "job, instance", "mystocks_websocket_active_connections"),
               why="Open connections per process: capacity is per process, so that is what the alerts compare."),
        Record(record="job_instance:mystocks_workers:count",
               expr=f"count by (job, instance) (\n  count by (job, instance, worker) "
               f"({q.sel(metric('mystocks.db.connections_max'))})\n)",
               why="Worker processes per instance: the library labels its per-worker gauges (the "
               "pool gauges) with each live worker's slot, so the distinct slots are the workers. "
               "One series without a worker label (a single process) counts 1."),
        Record(record="job_instance:mystocks_websocket_active_connections:per_process",
               expr="job_instance:mystocks_websocket_active_connections:sum\n/ on (job, instance)\n(\n  (\n"
               "    job_instance:mystocks_workers:count\n    or on (job, instance)\n"
               "    job_instance:mystocks_websocket_active_connections:sum * 0 + 1\n  ) > 0\n)",
               why="Open connections per worker process on each instance: /metrics adds the workers' "
               "connections up, and each worker holds its own connections in its own event loop, so "
               "the capacity alerts divide by the workers. The kernel spreads accepts over the "
               "workers about evenly, so the mean is each worker's share; an instance with no worker "
               "count (no pool gauges) is judged as one process, as before."),
        Record(record="job_namespace:mystocks_websocket_active_connections:sum",
               expr=q.agg("sum", "job, namespace", "mystocks_websocket_active_connections"),
               why="Open connections by namespace (panel WebSocket Connections)."),
        Record(record="job_direction_type:mystocks_websocket_messages:rate5m",
               expr=q.sum_rate("mystocks_websocket_messages_total", "job, direction, message_type"),
               why="Messages per second (panel WebSocket Messages)."),
        Record(record="job:mystocks_websocket_connections_opened:rate5m",
               expr=q.sum_rate("mystocks_websocket_connections_opened_total", "job"),
               why="Connections accepted per second."),
        Record(record="job:mystocks_websocket_connection_errors:ratio_rate5m",
               expr=ratio(q.sum_rate("mystocks_websocket_connection_errors_total", "job"),
                          "job:mystocks_websocket_connections_opened:rate5m"),
               why="Connection errors per connection opened."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    _CAP = num(t.websocket_connection_capacity)
    warn, crit = (t.websocket_capacity_warning * t.websocket_connection_capacity,
                  t.websocket_capacity_critical * t.websocket_connection_capacity)
    _WS = q.sel("job_instance:mystocks_websocket_active_connections:per_process")
    return (
        Alert(
            name="WebSocketHighConnectionCount",
            expr=f"{_WS} > {num(warn)}", for_="5m",
            severity="warning", category="websocket", priority="P2", team="performance",
            summary="{{ $labels.instance }} holds over " + pct(t.websocket_capacity_warning) + " of its WebSocket capacity.",
            description="{{ $labels.instance }} has {{ $value | humanize }} open WebSocket connections per worker "
            f"process (capacity {_CAP} per process, threshold {num(warn)}).",
            threshold=f"open connections > {pct(t.websocket_capacity_warning)} of capacity ({num(warn)}/process) for 5m",
            why="Every quote broadcast is fanned out to each connection in one event loop; past about "
            f"{_CAP} "
            "per process the broadcast delay grows with every client (measure your capacity and set "
            f"thresholds.websocket_connection_capacity). {pct(t.websocket_capacity_warning)} leaves time to scale out. "
            "Judged per worker process: /metrics sums the workers, and four workers at 240 each are "
            "24% of what each can hold, not 96% of one process.",
            checks=_WS_CHECKS,
        ),
        Alert(
            name="WebSocketCriticalConnectionCount",
            expr=f"{_WS} > {num(crit)}", for_="2m",
            severity="critical", category="websocket", priority="P1", team="performance",
            summary="{{ $labels.instance }} is at its WebSocket capacity.",
            description="{{ $labels.instance }} has {{ $value | humanize }} open WebSocket connections per worker "
            f"process (capacity {_CAP} per process, threshold {num(crit)}).",
            threshold=f"open connections > {pct(t.websocket_capacity_critical)} of capacity ({num(crit)}/process) for 2m",
            why=f"At {pct(t.websocket_capacity_critical)} the next burst (the market open) pushes the process past the point where quotes "
            "arrive late and connections are dropped. Per worker process, like the warning: "
            "capacity is each event loop's, so the sum over an instance's workers is divided by them.",
            checks=_WS_CHECKS,
        ),
        Alert(
            name="WebSocketConnectionErrors",
            expr=f"{q.sel('job:mystocks_websocket_connection_errors:ratio_rate5m')} > {num(t.websocket_error_ratio_warning)}\n"
            f"and on (job) job:mystocks_websocket_connections_opened:rate5m > {num(t.min_rare_event_rate)}",
            for_="10m", severity="warning", category="websocket", priority="P2", team="platform",
            summary=f"More than {pct(t.websocket_error_ratio_warning)} of WebSocket connections end in error.",
            description="{{ $value | humanizePercentage }} WebSocket connection errors per connection opened in "
            "{{ $labels.job }} over the last 5 minutes (threshold " + pct(t.websocket_error_ratio_warning) + ").",
            threshold=f"errors / connections opened > {pct(t.websocket_error_ratio_warning)} for 10m (with ≥ {num(t.min_rare_event_rate)} opened/s)",
            why="Browsers reconnect by themselves, and laptops sleeping or phones changing networks close "
            f"a few connections abnormally; {pct(t.websocket_error_ratio_warning)} for 10 minutes is a server-side "
            f"fault. The floor ({num(t.min_rare_event_rate * 300)} "
            "connections in 5 minutes) ignores one error at night.",
            checks=("Which reason: `sum by (reason) (rate(mystocks_websocket_connection_errors_total[5m]))`.",
             "`exception`: the API logs; `rejected`: authentication or origin checks; `abnormal_close`: proxies' idle timeouts.",
             "The load balancer's WebSocket timeouts and the last deploy."),
        ),
    )
