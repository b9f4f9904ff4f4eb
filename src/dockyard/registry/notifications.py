"""Webhook notifications: push and delete events POSTed to configured URLs, in the background.

Events have distribution's envelope (``{"events": [...]}``, media type
``application/vnd.docker.distribution.events.v1+json``) so receivers written for the CNCF
registry (or for ACR's webhooks, which share the shape) work unchanged::

    {"id": "...", "timestamp": "2024-...Z", "action": "push" | "delete" | "mount",
     "target": {"repository": "team/app", "digest": "sha256:...", "mediaType": "...",
                "size": 1234, "tag": "v1"},
     "request": {"id": "...", "addr": "127.0.0.1:5555", "host": "...", "method": "PUT",
                 "useragent": "..."},
     "actor": {"name": "alice"}, "source": {"addr": "127.0.0.1:5000", "instanceID": "..."}}

Why a queue per endpoint: a request never waits for a receiver; a slow or dead receiver delays
only its own events.  Each endpoint's worker sends batches (up to 50 events), retrying with
exponential back-off (``backoff``, doubled, ``attempts`` times) on connection errors and
non-2xx answers; then the batch is dropped and logged.  The queue is bounded (``queue_size``):
when full the oldest event is dropped, counted in ``dockyard_registry_webhook_events_total``.
Events are at-most-once per process and are lost if the process dies with them queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from dockyard.registry.config import NotificationsConfig, WebhookEndpoint
from dockyard.registry.metrics import Metrics

if TYPE_CHECKING:
    from dockyard.registry.handlers.context import Call

__all__ = ["EVENTS_MEDIA_TYPE", "Notifier"]

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
BATCH = 50
log = logging.getLogger("dockyard.registry.notifications")


class Notifier:
    """Owns one queue and one worker task per endpoint; ``start`` and ``stop`` bracket its life."""

    def __init__(self, config: NotificationsConfig, metrics: Metrics, source_addr: str) -> None:
        self.endpoints = list(config.endpoints)
        self.metrics = metrics
        self.source = {"addr": source_addr, "instanceID": str(uuid.uuid4())}
        self._queues: list[asyncio.Queue[dict[str, Any]]] = [
            asyncio.Queue(maxsize=max(config.queue_size, 1)) for _ in self.endpoints]
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def emit(self, action: str, target: dict[str, Any], call: Call) -> None:
        """Queue an event for every endpoint (never blocks, never raises)."""
        req = call.request
        event = {
            "id": str(uuid.uuid4()),
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "action": action,
            "target": {k: v for k, v in target.items() if v not in ("", None)},
            "request": {"id": req.headers.get("X-Request-Id", ""), "addr": req.remote or "",
                        "host": req.host, "method": req.method,
                        "useragent": req.headers.get("User-Agent", "")},
            "actor": {"name": call.grant.subject},
            "source": self.source,
        }
        for q in self._queues:
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                self.metrics.count_event("dropped")
            q.put_nowait(event)

    async def start(self) -> None:
        if not self.endpoints:
            return
        self._session = aiohttp.ClientSession()
        for ep, q in zip(self.endpoints, self._queues):
            self._tasks.append(asyncio.create_task(self._worker(ep, q)))

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Give queued events ``flush_timeout`` seconds to go out, then stop the workers."""
        if self._tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), flush_timeout)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _worker(self, endpoint: WebhookEndpoint, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                ok = await self._deliver(endpoint, batch)
                self.metrics.count_event("delivered" if ok else "failed", len(batch))
            finally:
                for _ in batch:
                    queue.task_done()

    async def _deliver(self, endpoint: WebhookEndpoint, batch: list[dict[str, Any]]) -> bool:
        assert self._session is not None
        body = json.dumps({"events": batch}).encode()
        headers = {"Content-Type": EVENTS_MEDIA_TYPE, **endpoint.headers}
        delay = endpoint.backoff
        for attempt in range(1, max(endpoint.attempts, 1) + 1):
            try:
                async with self._session.post(endpoint.url, data=body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=endpoint.timeout)) as r:
                    if 200 <= r.status < 300:
                        return True
                    why = f"HTTP {r.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                why = type(exc).__name__
            if attempt < endpoint.attempts:
                self.metrics.count_event("retried", len(batch))
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("webhook %s: dropping %d event(s) after %d attempts (%s)",
                    endpoint.url, len(batch), endpoint.attempts, why)
        return False
