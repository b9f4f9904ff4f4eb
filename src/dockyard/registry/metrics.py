"""Prometheus metrics (text exposition, hand-written) and structured access logs.

Why hand-written: the registry needs a handful of counters and one histogram, and the text
format is a few lines; a dependency would cost more than it saves.  Labels are bounded: the
*route kind* (``manifest``, ``blob``, ``upload``…), never the repository name or the path, so a
client cannot blow up the series count.  Each process keeps its own figures (a scrape sees the
process it reached); run one worker per scrape target, or sum by instance.

Access logs are one JSON object per request on the ``dockyard.registry.access`` logger, so
they can be shipped without parsing: time, remote address, method, path, route, status,
bytes, duration, the authenticated subject and the repository.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections import defaultdict
from typing import Any

__all__ = ["AccessLog", "Metrics"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PREFIX = "dockyard_registry"


def _labels(**kv: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Request counts, latency histograms and byte counters of this process."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)       # route, method, status
        self.latency: dict[tuple[str, str], list[int]] = {}                     # route, method -> buckets
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.latency_count: dict[tuple[str, str], int] = defaultdict(int)
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.uploaded_bytes = 0
        self.in_flight = 0
        self.events: dict[tuple[str, str], int] = defaultdict(int)              # endpoint outcome
        self.gc_runs = 0
        self.gc_freed_bytes = 0

    def observe(self, route: str, method: str, status: int, seconds: float, sent: int) -> None:
        self.requests[(route, method, str(status))] += 1
        key = (route, method)
        counts = self.latency.get(key)
        if counts is None:
            counts = self.latency[key] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum[key] += seconds
        self.latency_count[key] += 1
        if sent > 0:
            self.bytes_sent[route] += sent

    def count_upload(self, n: int) -> None:
        self.uploaded_bytes += n

    def count_event(self, outcome: str, n: int = 1) -> None:
        self.events[("webhook", outcome)] += n

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []
        name = f"{PREFIX}_http_requests_total"
        out += [f"# HELP {name} HTTP requests by route kind, method and status.", f"# TYPE {name} counter"]
        for (route, method, status), v in sorted(self.requests.items()):
            out.append(f"{name}{_labels(route=route, method=method, status=status)} {v}")
        name = f"{PREFIX}_http_request_duration_seconds"
        out += [f"# HELP {name} Time to serve a request, by route kind and method.",
                f"# TYPE {name} histogram"]
        for (route, method), counts in sorted(self.latency.items()):
            acc = 0
            for bound, c in zip(BUCKETS, counts):
                acc += c
                out.append(f"{name}_bucket{_labels(route=route, method=method, le=repr(bound))} {acc}")
            acc += counts[-1]
            out.append(f"{name}_bucket{_labels(route=route, method=method, le='+Inf')} {acc}")
            out.append(f"{name}_sum{_labels(route=route, method=method)} {self.latency_sum[(route, method)]:.6f}")
            out.append(f"{name}_count{_labels(route=route, method=method)} {self.latency_count[(route, method)]}")
        name = f"{PREFIX}_http_response_bytes_total"
        out += [f"# HELP {name} Response body bytes by route kind.", f"# TYPE {name} counter"]
        for route, v in sorted(self.bytes_sent.items()):
            out.append(f"{name}{_labels(route=route)} {v}")
        out += [f"# HELP {PREFIX}_uploaded_bytes_total Blob bytes received by uploads.",
                f"# TYPE {PREFIX}_uploaded_bytes_total counter",
                f"{PREFIX}_uploaded_bytes_total {self.uploaded_bytes}",
                f"# HELP {PREFIX}_http_requests_in_flight Requests being served.",
                f"# TYPE {PREFIX}_http_requests_in_flight gauge",
                f"{PREFIX}_http_requests_in_flight {self.in_flight}",
                f"# HELP {PREFIX}_webhook_events_total Webhook event deliveries by outcome.",
                f"# TYPE {PREFIX}_webhook_events_total counter"]
        for (_, outcome), v in sorted(self.events.items()):
            out.append(f"{PREFIX}_webhook_events_total{_labels(outcome=outcome)} {v}")
        out += [f"# HELP {PREFIX}_gc_runs_total Garbage collections run by this process.",
                f"# TYPE {PREFIX}_gc_runs_total counter", f"{PREFIX}_gc_runs_total {self.gc_runs}",
                f"# HELP {PREFIX}_gc_freed_bytes_total Bytes freed by garbage collection.",
                f"# TYPE {PREFIX}_gc_freed_bytes_total counter",
                f"{PREFIX}_gc_freed_bytes_total {self.gc_freed_bytes}",
                f"# HELP {PREFIX}_start_time_seconds When this process started.",
                f"# TYPE {PREFIX}_start_time_seconds gauge",
                f"{PREFIX}_start_time_seconds {self.started:.3f}"]
        return "\n".join(out) + "\n"


class AccessLog:
    """Writes one JSON line per request; costs nothing when the logger is disabled."""

    def __init__(self, enabled: bool = True, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("dockyard.registry.access")
        self.enabled = enabled

    def log(self, **fields: Any) -> None:
        if not self.enabled or not self.logger.isEnabledFor(logging.INFO):
            return
        fields["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        self.logger.info(json.dumps(fields, separators=(",", ":")))
